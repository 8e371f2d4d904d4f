"""Latency model of the deployment runtime: per-layer LiteRT latency tables.

Half the FLOPs is not half the time (README, "Pruning to a latency target"): a
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

import hashlib
import json
import math
import os
import tempfile
import time
import weakref

import keras
import numpy as np

from singe_keras import distribute
from singe_keras import export as export_lib
from singe_keras import graph as graph_lib
from singe_keras import user_warning
from singe_keras.files import JsonRecord, write_atomically
from singe_keras.plan import Plan
from singe_keras.surgery import layer_from_config, rebuild

FORMAT = "singe_keras.latency/1"
DELEGATES = ("xnnpack", "none")
PRECISIONS = ("float32", "int8")
DEFAULT_CACHE = os.path.join(os.path.expanduser("~"), ".cache", "singe_keras", "latency")
# Grid: multiples of a power of two >= this, about this many points per dimension.
_FINEST_STEP = 4
_GRID_POINTS = 8
# A grid interval is refined when its latency rises by more than this share of
# the full layer's (a step may hide inside it).
_REFINE_JUMP = 0.05
_CALIBRATION_SAMPLES = 16
# The thinned models `build` calibrates `scale` on keep these fractions of
# every group's units; the smallest scale it sets (a layer sum that barely
# moves whole models still ranks units by their tables).
_THINNED = (0.5, 0.25)
_MIN_SCALE = 0.01
# A last plan's latency budget is corrected on measurements (at most this
# many times) until the model measures within this fraction of the target.
_CORRECTIONS = 5
_LATENCY_TOLERANCE = 0.05


def _check_choice(name, value, choices):
    if value not in choices:
        raise ValueError(f"`{name}` must be one of {list(choices)}. Received: {name}={value!r}")


def _check_positive_int(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"`{name}` must be a positive integer. Received: {name}={value!r}")


def litert_version():
    """The installed ai-edge-litert version, or `None`."""
    from importlib import metadata

    try:
        return metadata.version("ai-edge-litert")
    except metadata.PackageNotFoundError:
        return None


class LiteRTTimer:
    """Times a Keras model as a .tflite file in LiteRT: the median latency in ms.

    The model is converted with `singe_keras.export`'s converter
    (`from_keras_model`; `"int8"` is full-integer quantization calibrated on
    random normal inputs, enough for timing), loaded in ai-edge-litert's
    `Interpreter` with `threads` threads and the XNNPACK delegate (or none),
    run `warmup` times, then timed over `runs` invocations, in a new
    interpreter each call. A model timed again is not converted again (the
    timer keeps its .tflite bytes while the model lives).

    Args:
        threads: CPU threads of the interpreter. Defaults to `1`.
        delegate: `"xnnpack"` (LiteRT's default CPU delegate) or `"none"`
            (the builtin kernels). Defaults to `"xnnpack"`.
        precision: `"float32"` or `"int8"`. Defaults to `"float32"`.
        runs: timed invocations; the median is returned. Defaults to `50`.
        warmup: untimed invocations first. Defaults to `5`.

    Raises:
        ValueError: for a bad argument.

    Example:

    ```python
    timer = singe_keras.latency.LiteRTTimer(threads=4, precision="int8")
    milliseconds = timer(model)
    ```
    """

    def __init__(self, threads=1, delegate="xnnpack", precision="float32", runs=50, warmup=5):
        _check_positive_int("threads", threads)
        _check_choice("delegate", delegate, DELEGATES)
        _check_choice("precision", precision, PRECISIONS)
        _check_positive_int("runs", runs)
        if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 0:
            raise ValueError(f"`warmup` must be an integer >= 0. Received: warmup={warmup!r}")
        self.threads, self.delegate, self.precision = threads, delegate, precision
        self.runs, self.warmup = runs, warmup
        self._converted = weakref.WeakKeyDictionary()  # a model timed again: converted once

    @property
    def runtime(self):
        """What the measurements depend on (part of every cache key)."""
        return {
            "runtime": f"ai-edge-litert {litert_version()}",
            "delegate": self.delegate,
            "threads": self.threads,
            "precision": self.precision,
        }

    def convert(self, model):
        """The .tflite bytes of `model` in this timer's precision."""
        if self.precision == "float32":
            return export_lib.convert(model)
        shape = (_CALIBRATION_SAMPLES,) + tuple(model.inputs[0].shape[1:])
        samples = np.random.default_rng(0).normal(size=shape).astype("float32")
        return export_lib.convert(model, "int8", samples)

    def time_file(self, path):
        """The median latency in ms of a .tflite file."""
        from ai_edge_litert import interpreter as litert

        options = {"model_path": os.fspath(path), "num_threads": self.threads}
        if self.delegate == "none":
            options["experimental_op_resolver_type"] = (
                litert.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
            )
        with export_lib.quiet():
            interpreter = litert.Interpreter(**options)
            interpreter.allocate_tensors()
        for detail in interpreter.get_input_details():
            dtype = np.dtype(detail["dtype"])
            zeros = np.zeros(detail["shape"], dtype)
            interpreter.set_tensor(detail["index"], zeros)
        for _ in range(self.warmup):
            interpreter.invoke()
        timings = []
        for _ in range(self.runs):
            start = time.perf_counter()
            interpreter.invoke()
            timings.append(time.perf_counter() - start)
        return 1e3 * float(np.median(timings))

    def __call__(self, model):
        with tempfile.TemporaryDirectory() as directory:
            path = os.path.join(directory, "probe.tflite")
            if model not in self._converted:
                self._converted[model] = self.convert(model)
            with open(path, "wb") as f:
                f.write(self._converted[model])
            return self.time_file(path)


class LayerTable:
    """The measured latency of one layer configuration over its channel counts.

    Attributes:
        key: the cache key (a hash of the layer's configuration, input shape
            and the runtime).
        full: `(input channels, output channels)` of the unpruned layer.
        tied: whether the output count follows the input count (depthwise
            convolutions): then only `(n, n * full[1] // full[0])` is measured.
        points: `{(input channels, output channels): ms}` measured.
    """

    def __init__(self, key, full, tied, points):
        self.key = key
        self.full = tuple(int(c) for c in full)
        self.tied = bool(tied)
        self.points = {(int(a), int(b)): float(ms) for (a, b), ms in points.items()}
        # Tied: the points are (n, n * ratio), one sweep over the inputs.
        inputs = sorted(
            (a, b) for a, b in self.points if self.tied or b == self.full[1])
        outputs = sorted(b for a, b in self.points if a == self.full[0])
        if self.full not in self.points or not inputs or not outputs:
            raise ValueError(
                f"The latency table {key} needs the full layer {self.full} and sweeps "
                f"over inputs and outputs. Received points: {sorted(self.points)}"
            )
        # Read as nondecreasing staircases: measurement noise must not make a
        # larger layer look faster (the allocation's bisection relies on it).
        self._inputs = np.array([a for a, _ in inputs])
        self._input_ms = np.maximum.accumulate([self.points[p] for p in inputs])
        self._outputs = np.array(outputs)
        self._output_ms = np.maximum.accumulate([self.points[(self.full[0], b)] for b in outputs])
        self._smallest = float(min(self.points.values()))

    @staticmethod
    def _step(grid, values, count):
        """What `count` channels cost: the value at the next grid count >= count."""
        return float(values[min(np.searchsorted(grid, count), len(grid) - 1)])

    def latency(self, inputs, outputs):
        """The predicted latency in ms with `inputs` and `outputs` channels kept."""
        along_inputs = self._step(self._inputs, self._input_ms, inputs)
        if self.tied:
            return along_inputs
        along_outputs = self._step(self._outputs, self._output_ms, outputs)
        full = max(self._input_ms[-1], self._output_ms[-1])
        base = min(self._smallest, along_inputs, along_outputs)
        if full <= base:
            return max(along_inputs, along_outputs)
        return base + (along_inputs - base) * (along_outputs - base) / (full - base)

    def to_dict(self):
        return {
            "key": self.key, "full": list(self.full), "tied": self.tied,
            "points": [[a, b, ms] for (a, b), ms in sorted(self.points.items())],
        }

    @classmethod
    def from_dict(cls, data):
        return cls(data["key"], data["full"], data["tied"],
                   {(a, b): ms for a, b, ms in data["points"]})


class LatencyModel(JsonRecord):
    """Predicts the latency of a model pruned by a `Plan`, from layer tables.

    Made by `build` (measured on this host) or `from_measurements` (measured
    on a device by the export/ toolkit). `prune(..., target_latency=...)`
    builds one unless given one.

    Attributes:
        tables: `{key: LayerTable}`.
        layers: `{layer path: table key}` of the timed layers.
        constant: ms of everything else, so that the unpruned model's
            prediction equals its measured latency.
        scale: the factor from the tables' layer latencies to their share of
            whole models (fit on thinned models; `1.0` for a device's tables).
        runtime: `{"runtime", "delegate", "threads", "precision"}`.
        timer: the timer that measured the tables on this host (measures the
            pruned model after `prune`), or `None` for a device's tables.

    `save(path)` and `LatencyModel.load(path)` write and read it as JSON
    (without the timer).
    """

    def __init__(self, tables, layers, constant, runtime, timer=None, scale=1.0):
        self.tables, self.layers = tables, dict(layers)
        self.constant, self.runtime, self.timer = float(constant), dict(runtime), timer
        self.scale = float(scale)

    def layer_latencies(self, graph, plan=None):
        """`{layer path: predicted ms}` of the timed layers of `graph` under `plan`.

        A layer's predicted share of the model: its table's latency times
        `scale`.

        `graph` may be the traced unpruned model or a pruned one: layers are
        found by path, and counts are the channels `plan` keeps.
        """
        latencies = {}
        for path, counts in channel_counts(graph, self.layers, plan):
            latencies[path] = (latencies.get(path, 0.0)
                               + self.scale * self.tables[self.layers[path]].latency(*counts))
        return latencies

    def predict(self, graph, plan=None):
        """The predicted latency in ms of the model `plan` makes of `graph`.

        Args:
            graph: a `CouplingGraph` of the model the tables were built for, or
                of a model pruned from it (same layer names).
            plan: a `Plan` of `graph`. Defaults to `None` (the model as it is).

        Returns:
            Milliseconds, a float.
        """
        return self.constant + sum(self.layer_latencies(graph, plan).values())

    def measure(self, model):
        """The latency of `model` measured with this model's timer, in ms.

        Raises:
            ValueError: if the tables were measured elsewhere (no timer here).
        """
        if self.timer is None:
            raise ValueError(
                "These latency tables were measured on another device: measure the "
                "pruned model there (`litert_bench.py bench`)."
            )
        return float(self.timer(model))

    def to_dict(self):
        return {
            "format": FORMAT, "runtime": self.runtime, "constant_ms": self.constant,
            "scale": self.scale, "layers": self.layers,
            "tables": [t.to_dict() for t in self.tables.values()],
        }

    @classmethod
    def from_dict(cls, data):
        _check_format(data)
        tables = [LayerTable.from_dict(t) for t in data["tables"]]
        return cls({t.key: t for t in tables}, data["layers"], data["constant_ms"],
                   data["runtime"], scale=data.get("scale", 1.0))

    def __repr__(self):
        return (
            f"LatencyModel({len(self.layers)} timed layers, {len(self.tables)} tables, "
            f"constant {self.constant:.3f} ms, scale {self.scale:.3f}, {self.runtime})"
        )


def channel_counts(graph, paths, plan=None):
    """`[(path, (kept inputs, kept outputs))]` of the layer calls in `paths` under `plan`."""
    kept = np.ones(graph.num_units, bool) if plan is None else plan.mask(graph).astype(bool)
    return [(node.path, tuple(len(graph.kept_channels(t, kept))
                              for t in (node.inputs[0], node.outputs[0])))
            for node in graph.nodes if node.path in paths]


def _check_format(data):
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ValueError(
            f"Not a singe_keras latency file: expected format {FORMAT!r}. Received: "
            f"format={data.get('format') if isinstance(data, dict) else None!r}"
        )


def timed_layers(graph):
    """The traced calls that get a latency table, with their table descriptions.

    Returns:
        A list of `(node, description)`; `description` holds the class, the
        config without the name, the input shape and whether the output count
        follows the input count (`tied`).
    """
    timed = []
    for node in graph.nodes:
        layer = node.layer
        if (
            not isinstance(layer, keras.layers.Layer)
            or len(node.inputs) != 1 or len(node.outputs) != 1
            or not node.handler.costed
            or node.handler.macs(layer, node.call) <= 0
            or not graph.any_prunable(node.inputs + node.outputs)
        ):
            continue
        config = {k: v for k, v in layer.get_config().items() if k != "name"}
        timed.append((node, {
            "class_name": type(layer).__name__,
            "config": config,
            "input_shape": [int(d) for d in node.call.input_shapes[0][1:]],
            "full": [int(node.call.input_shapes[0][-1]), int(node.call.output_shapes[0][-1])],
            "tied": bool(node.handler.passes_channels(layer, node.call)),
            "prunable": [bool((graph.unit_indices(t) >= 0).any())
                         for t in (node.inputs[0], node.outputs[0])],
        }))
    return timed


def table_key(description, runtime):
    """The cache key of a layer's table: a hash of its description and runtime."""
    text = json.dumps({"layer": description, "runtime": runtime}, sort_keys=True, default=str)
    return hashlib.sha1(text.encode()).hexdigest()[:20]


def grid(size):
    """The coarse grid of channel counts of a dimension of `size` channels.

    Multiples of the smallest power of two >= max(4, size / 8), `size`, and
    4 (so that refinement can find steps below the first multiple).
    """
    step = max(_FINEST_STEP, 2 ** math.ceil(math.log2(max(size / _GRID_POINTS, 1))))
    return sorted(set(range(step, size, step)) | {min(_FINEST_STEP, size), size})


def probe(node, inputs, outputs):
    """The single-layer Keras model of `node` with `inputs`/`outputs` channels.

    Its weights are random: latency does not depend on their values.
    """
    layer = node.layer
    config = node.handler.rebuild_config(
        layer, node.call, layer.get_config(), [np.arange(inputs)], [np.arange(outputs)])
    x = keras.Input(shape=tuple(node.call.input_shapes[0][1:-1]) + (inputs,))
    return keras.Model(x, layer_from_config(layer, config)(x))


def _probe_points(description):
    """The coarse points of a table: both sweeps (one if tied) and the corner."""
    full_in, full_out = description["full"]
    if description["tied"]:
        return [(a, a * full_out // full_in) for a in grid(full_in)]
    inputs = grid(full_in) if description["prunable"][0] else [full_in]
    outputs = grid(full_out) if description["prunable"][1] else [full_out]
    return sorted({(a, full_out) for a in inputs} | {(full_in, b) for b in outputs}
                  | {(inputs[0], outputs[0])})


def _measure_table(node, description, key, timer):
    """Times the probes of one layer, refining the grid where latency jumps."""
    full_in, full_out = description["full"]
    points = {p: float(timer(probe(node, *p))) for p in _probe_points(description)}

    def refine(sweep, point_of):
        """Bisects the intervals of a sweep whose latency rises by a large step."""
        counts = sorted(sweep)
        pending = list(zip(counts, counts[1:]))
        while pending:
            low, high = pending.pop()
            middle = (low + high) // 2 // _FINEST_STEP * _FINEST_STEP
            jump = points[point_of(high)] - points[point_of(low)]
            if middle <= low or jump <= _REFINE_JUMP * points[(full_in, full_out)]:
                continue
            points[point_of(middle)] = float(timer(probe(node, *point_of(middle))))
            pending += [(low, middle), (middle, high)]

    ratio = full_out // full_in if description["tied"] else None
    if description["tied"]:
        refine([a for a, _ in points], lambda a: (a, a * ratio))
    else:
        if description["prunable"][0]:
            refine([a for a, b in points if b == full_out], lambda a: (a, full_out))
        if description["prunable"][1]:
            refine([b for a, b in points if a == full_in], lambda b: (full_in, b))
    return LayerTable(key, (full_in, full_out), description["tied"], points)


def build(
    model,
    ignored_layers=None,
    *,
    threads=1,
    delegate="xnnpack",
    precision="float32",
    timer=None,
    cache_dir=DEFAULT_CACHE,
    verbose=0,
):
    """Measures the latency tables of a model on this host.

    Every timed layer (see the module docstring) gets a table, measured once
    per distinct configuration and reused from `cache_dir` when a table of
    the same layer, input shape and runtime was measured before. The
    constant and the scale are calibrated on whole models (see the module
    docstring): the unpruned model is timed before the tables and twice
    after them, and the two thinned models twice, interleaved with it
    (medians).

    Args:
        model: a functional or Sequential `keras.Model` with a fixed input size.
        ignored_layers: as in `prune` (layers whose outputs are never
            pruned get no output sweep). Defaults to `None`.
        threads: CPU threads of the interpreter. Defaults to `1`.
        delegate: `"xnnpack"` or `"none"`. Defaults to `"xnnpack"`.
        precision: `"float32"` or `"int8"` (probes quantized to int8).
            Defaults to `"float32"`.
        timer: a callable taking a Keras model and returning its latency in
            ms, instead of a `LiteRTTimer(threads, delegate, precision)`; a
            `runtime` attribute (a dict) names it in the cache keys. Defaults
            to `None`.
        cache_dir: folder of the cached tables, or `None` for no cache.
            Defaults to `~/.cache/singe_keras/latency`.
        verbose: 0 or 1 (one line per measured table). Defaults to `0`.

    Returns:
        A `LatencyModel`.

    Raises:
        ValueError: for a bad argument, `timer` with other timer settings, or
            a model without timed layers.
        TypeError: if `timer` is not callable.

    Example:

    ```python
    latency_model = singe_keras.latency.build(model, threads=4)
    latency_model.predict(singe_keras.trace(model))  # = the measured latency
    ```
    """
    timer = _check_timer_options(timer, threads, delegate, precision)
    if verbose not in (0, 1):
        raise ValueError(f"`verbose` must be 0 or 1. Received: verbose={verbose!r}")
    runtime = getattr(timer, "runtime", None) or {"runtime": type(timer).__name__}
    graph = graph_lib.trace(model, ignored_layers)
    timed = timed_layers(graph)
    if any(graph.any_prunable(node.hidden) for node in graph.nodes):
        user_warning.warn(
            "The latency tables do not time attention heads: their time is part "
            "of the constant, so removing a head saves no predicted millisecond "
            "and a latency target alone prunes no head (FLOPs and parameter "
            "targets do).")
    if not timed:
        raise ValueError(
            "The model has no layer whose latency depends on prunable channels "
            "(convolutions or Dense layers with a prunable input or output)."
        )
    # The whole models are timed before and after the tables, interleaved:
    # medians, less at the mercy of the load at one moment than one timing.
    whole = [float(timer(model))]
    tables, layers = {}, {}
    for node, description in timed:
        key = table_key(description, runtime)
        layers[node.path] = key
        if key in tables:
            continue
        cached = os.path.join(cache_dir, key + ".json") if cache_dir else None
        if cached and os.path.exists(cached):
            with open(cached) as f:
                tables[key] = LayerTable.from_dict(json.load(f))
            continue
        started = time.perf_counter()
        tables[key] = _measure_table(node, description, key, timer)
        if verbose:
            print(f"Latency table of {node.path} ({description['class_name']}, "
                  f"{description['full'][0]} -> {description['full'][1]} channels): "
                  f"{len(tables[key].points)} probes, "
                  f"{time.perf_counter() - started:.1f}s", flush=True)
        if cached:
            os.makedirs(cache_dir, exist_ok=True)
            write_atomically(cached, json.dumps(tables[key].to_dict()).encode())
    thinned = [_thinned_plan(graph, fraction) for fraction in _THINNED]
    thinned_models = [rebuild(graph, plan) for plan in thinned]
    thinned_ms = [[] for _ in thinned]
    for _ in range(2):
        whole.append(float(timer(model)))
        for timings, thinned_model in zip(thinned_ms, thinned_models):
            timings.append(float(timer(thinned_model)))
    sums = [_layer_sum(tables, layers, channel_counts(graph, layers, plan))
            for plan in [None] + thinned]
    measured = [np.median(timings) for timings in [whole] + thinned_ms]
    constant, scale = _calibration(sums, measured)
    return LatencyModel(tables, layers, constant, runtime, timer, scale)


def _layer_sum(tables, layers, counts):
    """The unscaled sum of the tables' latencies at `counts` (`channel_counts`)."""
    return sum(tables[layers[path]].latency(*count) for path, count in counts)


def _thinned_plan(graph, fraction):
    """Every group keeps `fraction` of its units (a multiple of 4 where it can; >= 1)."""
    keep = {}
    for group in graph.groups:
        count = -(-max(1, round(fraction * group.size)) // _FINEST_STEP) * _FINEST_STEP
        keep[group.name] = np.arange(min(group.size, count))
    return Plan(keep, {group.name: group.size for group in graph.groups})


def _calibration(sums, measured):
    """`(constant, scale)`: `measured = constant + scale * sums`, exact at the first point.

    The unpruned model (first) is timed most often; the scale is the least
    squares slope of the others through it, kept >= `_MIN_SCALE`.
    """
    sums, measured = np.asarray(sums, float), np.asarray(measured, float)
    d_sum, d_measured = sums[1:] - sums[0], measured[1:] - measured[0]
    squares = float(np.sum(d_sum ** 2))
    scale = float(np.sum(d_sum * d_measured)) / squares if squares > 0 else 1.0
    scale = max(scale, _MIN_SCALE)
    return float(measured[0] - scale * sums[0]), scale


def write_probes(model, directory, ignored_layers=None, *, precision="float32"):
    """Writes the probe .tflite files of a model, to time them on a device.

    The folder gets one .tflite file per probe, the whole model
    (`model.tflite`) and the two thinned models that calibrate the scale
    (see the module docstring), and `manifest.json`; copy it to the device and run
    `python litert_bench.py probe DIR --threads N --json table.json` there
    (export/README.md), then read the result with `from_measurements`.
    Probes are the coarse grid only (refinement needs timings).

    Args:
        model: the model to prune.
        directory: an existing folder for the files.
        ignored_layers: as in `prune`. Defaults to `None`.
        precision: `"float32"` or `"int8"`. Defaults to `"float32"`.

    Returns:
        The path of the manifest.

    Raises:
        ValueError: for a bad `precision` or a missing folder.

    Example:

    ```python
    singe_keras.latency.write_probes(model, "probes", precision="int8")
    ```
    """
    _check_choice("precision", precision, PRECISIONS)
    if not os.path.isdir(directory):
        raise ValueError(f"`directory` must be an existing folder. Received: {directory!r}")
    converter = LiteRTTimer(precision=precision)
    graph = graph_lib.trace(model, ignored_layers)
    runtime = {"precision": precision}
    entries, layers, written = [], {}, set()
    for node, description in timed_layers(graph):
        key = table_key(description, runtime)
        layers[node.path] = {"key": key, "full": description["full"],
                             "tied": description["tied"]}
        if key in written:
            continue
        written.add(key)
        for inputs, outputs in _probe_points(description):
            name = f"{key}_{inputs}_{outputs}.tflite"
            write_atomically(os.path.join(directory, name),
                             converter.convert(probe(node, inputs, outputs)))
            entries.append({"file": name, "table": key, "channels": [inputs, outputs]})
    write_atomically(os.path.join(directory, "model.tflite"), converter.convert(model))
    thinned = []
    for fraction in _THINNED:
        plan = _thinned_plan(graph, fraction)
        name = f"model_keep{fraction}.tflite"
        write_atomically(os.path.join(directory, name),
                         converter.convert(rebuild(graph, plan)))
        thinned.append({"file": name, "channels": [
            [path, *count] for path, count in channel_counts(graph, layers, plan)]})
    manifest = {"format": FORMAT, "precision": precision, "model": "model.tflite",
                "thinned": thinned, "layers": layers, "probes": entries}
    path = os.path.join(directory, "manifest.json")
    write_atomically(path, json.dumps(manifest, indent=1).encode())
    return path


def from_measurements(path):
    """A `LatencyModel` from the JSON of `litert_bench.py probe` (a device's timings).

    Args:
        path: the JSON file the toolkit wrote.

    Returns:
        A `LatencyModel` without a timer (`measure` is for the device).

    Raises:
        ValueError: if the file is not such a table.

    Example:

    ```python
    latency_model = singe_keras.latency.from_measurements("phone_table.json")
    pruned = singe_keras.prune(model, data, target_latency=0.5,
                               latency_model=latency_model)
    ```
    """
    with open(path) as f:
        data = json.load(f)
    _check_format(data)
    points = {}
    for entry in data["measurements"]:
        points.setdefault(entry["table"], {})[tuple(entry["channels"])] = entry["median_ms"]
    tables, layers = {}, {}
    for path_name, layer in data["layers"].items():
        key = layer["key"]
        layers[path_name] = key
        if key not in tables:
            tables[key] = LayerTable(key, layer["full"], layer["tied"], points.get(key, {}))
    whole = [(data["model_ms"], [(path, tables[key].full) for path, key in layers.items()])]
    # Thinned models: timed by toolkits that know them (scale 1 without).
    whole += [(entry["median_ms"], [(path, (a, b)) for path, a, b in entry["channels"]])
              for entry in data.get("thinned", [])]
    constant, scale = _calibration(
        [_layer_sum(tables, layers, counts) for _, counts in whole], [ms for ms, _ in whole])
    runtime = {"runtime": data["runtime"].get("runtime"), "delegate": data["delegate"],
               "threads": data["threads"], "precision": data["precision"],
               "device": data["runtime"].get("machine")}
    return LatencyModel(tables, layers, constant, runtime, scale=scale)


def target_milliseconds(target_latency, original_ms):
    """A `target_latency` in ms: a fraction in (0, 1] of `original_ms`, or `"<x>ms"`.

    Raises:
        ValueError: for any other value.
    """
    if target_latency is None:
        return None
    value = None
    if isinstance(target_latency, str) and target_latency.endswith("ms"):
        try:
            value = float(target_latency[:-2])
        except ValueError:
            value = None
        value = value if value is not None and np.isfinite(value) and value > 0 else None
    elif not isinstance(target_latency, bool) and isinstance(
        target_latency, (int, float, np.number)
    ) and 0 < target_latency <= 1:
        value = float(target_latency) * (1.0 if original_ms is None else original_ms)
    if value is None:
        raise ValueError(
            "`target_latency` must be a fraction in (0, 1] of the model's latency, or "
            f"milliseconds as a string such as '2.5ms'. Received: "
            f"target_latency={target_latency!r}"
        )
    return value


def check_latency_model(latency_model):
    """Validates `prune`'s `latency_model`: `None`, a dict of `build` options, or one."""
    if latency_model is None or isinstance(latency_model, LatencyModel):
        return
    if isinstance(latency_model, dict):
        options = {"threads", "delegate", "precision", "timer", "cache_dir"}
        unknown = sorted(set(latency_model) - options)
        if unknown:
            raise ValueError(
                f"`latency_model` options must be among {sorted(options)}. "
                f"Received unknown options: {unknown}"
            )
        _check_timer_options(latency_model.get("timer"), **{
            k: v for k, v in latency_model.items() if k in ("threads", "delegate", "precision")})
        return
    raise TypeError(
        "`latency_model` must be None, a dict of `singe_keras.latency.build` options "
        "or a `LatencyModel`. Received: "
        f"latency_model={latency_model!r} of type {type(latency_model).__name__}"
    )


def _check_timer_options(timer, threads=1, delegate="xnnpack", precision="float32"):
    """The timer `build` uses: `timer`, or a `LiteRTTimer` of the options (checked)."""
    if timer is None:
        return LiteRTTimer(threads, delegate, precision)
    if not callable(timer):
        raise TypeError(f"`timer` must be callable. Received: timer={timer!r}")
    if (threads, delegate, precision) != (1, "xnnpack", "float32"):
        raise ValueError(
            "Give `timer` or `threads`/`delegate`/`precision` (the settings of the "
            f"default LiteRT timer), not both. Received: timer={timer!r}, "
            f"threads={threads!r}, delegate={delegate!r}, precision={precision!r}"
        )
    return timer


def get(latency_model, model, ignored_layers=None, verbose=0):
    """The `LatencyModel` `prune` uses: `latency_model` itself, or one built."""
    if isinstance(latency_model, LatencyModel):
        return latency_model
    return build(model, ignored_layers, verbose=verbose, **(latency_model or {}))


def measures_here(latency_model):
    """Whether plans can be corrected on measurements (`corrected_plan`).

    Where this process can time models (the tables were not measured
    elsewhere) and every worker would measure alike (one worker).
    """
    return (latency_model is not None and latency_model.timer is not None
            and not distribute.is_multi_worker())


def corrected_plan(allocate, graph, latency_model, max_latency, original, original_ms,
                   verbose, kept=None):
    """A last plan, corrected until its rebuilt model measures at `max_latency`.

    `allocate(budget)` is the plan of a latency budget (ms), for `graph`,
    whose units in `kept` (a `Plan`; all by default) are the ones not
    pruned yet; `prune` calls this in its last round, `PruningCallback` at
    its last event (both only where `measures_here`).

    The tables can be far from the measurement of a strongly pruned model
    (README, "Pruning to a latency target"), and the allocation seeks out
    the units whose predicted savings are largest, errors included. So the
    rebuilt model is timed against the `original` model (alternately, three
    times each: load and drift fall on both), and while the ratio misses
    the target's ratio to `original_ms` by more than `_LATENCY_TOLERANCE` of
    it, the allocation's latency budget is corrected (`_next_budget`, at
    most `_CORRECTIONS` times). The plan kept is the slowest one measured
    under the target plus the tolerance, else the fastest one (with a
    warning).

    Returns:
        `(plan, rebuilt model, its measured ms, trials)`, the trials as
        `report.latency["corrections"]`.
    """
    target = max_latency / original_ms
    current_ms = latency_model.predict(graph, kept)  # a larger budget prunes nothing more
    budget, trials = max_latency, []
    for _ in range(1 + _CORRECTIONS):
        try:
            plan = allocate(budget)
        except ValueError:  # a corrected budget below the smallest reachable model
            if not trials:
                raise
            break
        model = rebuild(graph, plan)
        timings = np.array([(latency_model.measure(original), latency_model.measure(model))
                            for _ in range(3)])
        ratio = float(np.median(timings[:, 1]) / np.median(timings[:, 0]))
        trials.append({"budget_ms": budget, "predicted_ms": latency_model.predict(graph, plan),
                       "measured_ms": float(np.median(timings[:, 1])),
                       "measured_ratio": ratio, "plan": plan, "model": model})
        if abs(ratio - target) <= _LATENCY_TOLERANCE * target:
            break
        budget = min(_next_budget(trials, target), current_ms)
    fitting = [t for t in trials if t["measured_ratio"] <= (1 + _LATENCY_TOLERANCE) * target]
    best = (max(fitting, key=lambda t: t["measured_ratio"]) if fitting
            else min(trials, key=lambda t: t["measured_ratio"]))
    if not fitting:
        user_warning.warn(
            f"The pruned model measures {best['measured_ratio']:.3f} of the unpruned "
            f"model's latency against a target of {target:.3f}, after "
            f"{len(trials) - 1} corrections of the latency budget. The machine may be "
            "busy, or the target is too close to the smallest model: measure again, "
            "or lower `target_latency`.")
    corrections = [{k: v for k, v in t.items() if k not in ("plan", "model")} for t in trials]
    if verbose and len(trials) > 1:
        print("Latency budget corrected on measurements: " + ", ".join(
            f"{t['budget_ms']:.3f} ms budget -> {t['measured_ratio']:.3f} of the unpruned "
            "latency measured" for t in corrections) + f" (target {target:.3f})", flush=True)
    return best["plan"], best["model"], best["measured_ms"], corrections


def _next_budget(trials, target):
    """The next latency budget: the last one scaled by target / measured, kept in the bracket.

    Plans change by jumps with the budget, and their measurements are noisy:
    a scaled budget outside the bracket of the trials so far (the largest
    budget that measured under the target, the smallest that measured over
    it) is replaced by the bracket's middle.
    """
    last = trials[-1]
    proposal = last["budget_ms"] * target / last["measured_ratio"]
    under = [t["budget_ms"] for t in trials if t["measured_ratio"] <= target]
    over = [t["budget_ms"] for t in trials if t["measured_ratio"] > target]
    if under and over and not max(under) < proposal < min(over):
        return (max(under) + min(over)) / 2
    return proposal


def measured_record(latency_model, model, predicted, target_ms, measured=None):
    """A pruned model's prediction next to one measurement (`report.latency`).

    Measures `model` once with the latency model's timer (none if the tables
    were measured elsewhere: then `measured_ms` is `None`) and warns, through
    `check_prediction`, if the prediction is off by more than 10%. A given
    `measured` (ms) is used as it is, without a warning: its caller already
    acted on it.
    """
    record = {"target_ms": float(target_ms), "predicted_ms": predicted, "measured_ms": None,
              "prediction_error": None, "runtime": latency_model.runtime}
    if measured is not None:
        record["measured_ms"] = float(measured)
        record["prediction_error"] = float((predicted - measured) / measured)
    elif latency_model.timer is not None:
        record["measured_ms"] = latency_model.measure(model)
        record["prediction_error"] = float(
            check_prediction(predicted, record["measured_ms"]))
    return record


def check_prediction(predicted, measured):
    """Warns if a prediction misses the measured latency by more than 10%.

    Returns:
        The relative error `(predicted - measured) / measured`.
    """
    error = (predicted - measured) / measured
    if abs(error) > 0.1:
        user_warning.warn(
            f"The latency model predicted {predicted:.3f} ms for the pruned model; "
            f"LiteRT measured {measured:.3f} ms ({error:+.0%}). The machine may be "
            "busy (measure again), or the tables miss an effect of this model; see "
            "README, 'Pruning to a latency target'.",
        )
    return error
