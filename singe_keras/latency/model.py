"""The latency model: per-layer tables and their prediction for a plan."""

import hashlib
import json

import keras
import numpy as np

from singe_keras.files import JsonRecord

FORMAT = "singe_keras.latency/1"


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
