"""Latency model of the deployment runtime: per-layer LiteRT latency tables.

Half the FLOPs is not half the time (docs/latency.md): a
channel removed from a narrow layer often saves no time, because the kernels
work on blocks of channels (the SIMD width). Following HALP (Shen et al.,
"Structural Pruning via Latency-Saliency Knapsack", NeurIPS 2022), the
latency of a model is predicted from per-layer lookup tables measured in the
runtime the model is deployed with:

    latency(plan) = constant + scale * sum over timed layers of table(kept in, kept out)

A *timed layer* is a layer call with a single input and output whose cost
depends on pruned channels and that has multiply-accumulates (convolutions,
Dense). Each is converted alone to .tflite (a *probe*: `keras.Input` and the
layer with fewer channels, random weights) and timed in LiteRT, with the
delegate, thread count and precision of deployment. The other layers
(normalisation, activations, additions, pooling: fused into the convolutions
or cheap) and the interpreter's own overhead make the constant. Layers timed
alone are not layers in a model (caches, the untimed layers' share of the
time, kernels whose time a whole model hides): `scale` corrects that. Both
are calibrated on whole models: the prediction for the unpruned model equals
its measured latency, and `scale` is fit (least squares through that point)
to two uniformly thinned models, where every coupling group keeps 1/2 and
1/4 of its units.

A table is sampled on a grid of channel counts per dimension (multiples of a
power of two, about 8 points), refined where the latency jumps, and read as a
staircase: a count costs what the next grid count at or above it costs, so
removing units saves time only when a count crosses down a step, and the
allocation settles on the cheap side of the steps by itself. Two channel
dimensions are combined as `t0 + (A(in) - t0) (B(out) - t0) / (T - t0)`, with
`A` the latency over input counts at full outputs, `B` over output counts at
full inputs, `T` the full layer and `t0` the smallest probe: exact on both
sweeps and multiplicative like the MACs between them (the prediction error on
whole models is measured in benchmarks/latency_target.py).

Tables are cached as JSON files keyed by the layer's configuration and input
shape, the runtime version, delegate, threads and precision. For a phone or
an NPU, `write_probes` writes the probe files and a manifest, the device-side
toolkit (`export/litert_bench.py probe`) times them there without
TensorFlow, and `from_measurements` reads its JSON.
"""

from singe_keras.latency.device import from_measurements, write_probes
from singe_keras.latency.model import (
    FORMAT,
    LatencyModel,
    LayerTable,
    table_key,
    timed_layers,
)
from singe_keras.latency.tables import DEFAULT_CACHE, build, grid
from singe_keras.latency.target import (
    check_latency_model,
    corrected_plan,
    get,
    measured_record,
    measures_here,
    target_milliseconds,
)
from singe_keras.latency.timer import DELEGATES, PRECISIONS, LiteRTTimer, litert_version

__all__ = [
    "DEFAULT_CACHE",
    "DELEGATES",
    "FORMAT",
    "PRECISIONS",
    "LatencyModel",
    "LayerTable",
    "LiteRTTimer",
    "build",
    "check_latency_model",
    "corrected_plan",
    "from_measurements",
    "get",
    "grid",
    "litert_version",
    "measured_record",
    "measures_here",
    "table_key",
    "target_milliseconds",
    "timed_layers",
    "write_probes",
]
