"""singe_keras: structured pruning of Keras 3 models with SInGE.

SInGE (Yvinec, Dapogny, Cord, Bailly, "SInGE: Sparsity via Integrated
Gradients Estimation of Neuron Relevance", NeurIPS 2022) scores each conv
filter or dense neuron by integrating gradients along a path of gates towards
its removal, and removes the least relevant ones. The method as this library
defines and implements it: docs/method.md in the repository.
"""

import sys

from singe_keras import progress

if progress.runs_the_demo(sys.orig_argv):  # a quiet first run: TensorFlow has not loaded yet
    progress.mute_native_stderr()

from singe_keras import criteria, latency  # noqa: E402
from singe_keras.callback import PruningCallback, UnitMask, strip
from singe_keras.distillation import Distillation, DistillationLoss
from singe_keras.cost import LayerCost, ModelCost, count_costs, count_flops
from singe_keras.export import ExportResult, export_tflite
from singe_keras.gating import GatedModel
from singe_keras.graph import CouplingGraph, CouplingGroup, trace
from singe_keras.latency import LatencyModel
from singe_keras.handlers import (
    LayerCall,
    LayerHandler,
    OperationInput,
    UnsupportedLayerError,
    register_handler,
)
from singe_keras.plan import Plan
from singe_keras.pruning import prune
from singe_keras.recalibration import recalibrate_batchnorm
from singe_keras.report import PruningReport
from singe_keras.scoring import Scores, score
from singe_keras.surgery import rebuild

__version__ = "0.1.0"

__all__ = [
    "CouplingGraph",
    "CouplingGroup",
    "Distillation",
    "DistillationLoss",
    "ExportResult",
    "GatedModel",
    "LatencyModel",
    "LayerCall",
    "LayerCost",
    "LayerHandler",
    "ModelCost",
    "OperationInput",
    "Plan",
    "PruningCallback",
    "PruningReport",
    "Scores",
    "UnitMask",
    "UnsupportedLayerError",
    "count_costs",
    "count_flops",
    "criteria",
    "export_tflite",
    "latency",
    "prune",
    "rebuild",
    "recalibrate_batchnorm",
    "register_handler",
    "score",
    "strip",
    "trace",
]
