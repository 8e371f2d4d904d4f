"""Building a latency model on this host: tables on a grid, then calibration."""

import json
import math
import os
import time

import keras
import numpy as np

from singe_keras import graph as graph_lib
from singe_keras import progress, user_warning
from singe_keras.files import write_atomically
from singe_keras.latency.model import (
    LatencyModel,
    LayerTable,
    channel_counts,
    table_key,
    timed_layers,
)
from singe_keras.latency.timer import _check_timer_options
from singe_keras.plan import Plan
from singe_keras.surgery import layer_from_config, rebuild

DEFAULT_CACHE = os.path.join(os.path.expanduser("~"), ".cache", "singe_keras", "latency")
# Grid: multiples of a power of two >= this, about this many points per dimension.
_FINEST_STEP = 4
_GRID_POINTS = 8
# A grid interval is refined when its latency rises by more than this share of
# the full layer's (a step may hide inside it).
_REFINE_JUMP = 0.05
# The thinned models `build` calibrates `scale` on keep these fractions of
# every group's units; the smallest scale it sets (a layer sum that barely
# moves whole models still ranks units by their tables).
_THINNED = (0.5, 0.25)
_MIN_SCALE = 0.01


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
        progress.report(
            f"Latency table of {node.path} ({description['class_name']}, "
            f"{description['full'][0]} -> {description['full'][1]} channels): "
            f"{len(tables[key].points)} probes, {time.perf_counter() - started:.1f}s", verbose)
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
