"""singe_keras: structured pruning of Keras 3 models with SInGE.

SInGE (Yvinec, Dapogny, Cord, Bailly, "SInGE: Sparsity via Integrated
Gradients Estimation of Neuron Relevance", NeurIPS 2022) scores each conv
filter or dense neuron by integrating gradients along a path of gates towards
its removal, and removes the least relevant ones. The method as this library
defines and implements it: docs/method.md in the repository.
"""

import importlib.util

# Where each public name is defined. The modules import TensorFlow (through
# Keras), which takes seconds: they load on first use (PEP 562), so that
# `import singe_keras` and `python -m singe_keras.demo --help` stay fast.
_DEFINED_IN = {
    "CouplingGraph": "graph",
    "CouplingGroup": "graph",
    "Distillation": "distillation",
    "DistillationLoss": "distillation",
    "ExportResult": "export",
    "GatedModel": "gating",
    "LayerCall": "handlers",
    "LayerCost": "cost",
    "LayerHandler": "handlers",
    "ModelCost": "cost",
    "Plan": "plan",
    "PruningCallback": "callback",
    "PruningReport": "report",
    "Scores": "scoring",
    "UnitMask": "callback",
    "UnsupportedLayerError": "handlers",
    "count_costs": "cost",
    "count_flops": "cost",
    "export_tflite": "export",
    "prune": "pruning",
    "rebuild": "surgery",
    "recalibrate_batchnorm": "recalibration",
    "register_handler": "handlers",
    "score": "scoring",
    "strip": "callback",
    "trace": "graph",
}

__version__ = "0.1.0"

__all__ = [
    "CouplingGraph",
    "CouplingGroup",
    "Distillation",
    "DistillationLoss",
    "ExportResult",
    "GatedModel",
    "LayerCall",
    "LayerCost",
    "LayerHandler",
    "ModelCost",
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
    "prune",
    "rebuild",
    "recalibrate_batchnorm",
    "register_handler",
    "score",
    "strip",
    "trace",
]


def __getattr__(name):
    """Loads a public name, or a submodule (`singe_keras.criteria`), on first use."""
    if name in _DEFINED_IN:
        value = getattr(importlib.import_module(f"{__name__}.{_DEFINED_IN[name]}"), name)
    elif not name.startswith("__") and importlib.util.find_spec(f"{__name__}.{name}"):
        value = importlib.import_module(f"{__name__}.{name}")
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
