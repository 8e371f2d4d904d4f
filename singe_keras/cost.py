"""Cost counting: multiply-accumulates and parameters, per layer.

Convention (docs/method.md, "Cost convention"): convolutions and Dense layers count
their multiply-accumulates (MACs); other layers (BatchNormalization, additions,
activations, pooling) count none, as in the usual ResNet-50 = 3.8 GMACs
figure. FLOPs = 2 x MACs. Pruning targets are ratios of the same counter.

The counter reads the traced graph, so it can also count a model that a
`Plan` would give, without building it.
"""

import dataclasses

import keras
import numpy as np

from singe_keras import graph as graph_lib
from singe_keras import user_warning


@dataclasses.dataclass(frozen=True)
class LayerCost:
    """The cost of one layer call."""

    path: str
    class_name: str
    output_shape: tuple
    macs: int
    params: int
    costed: bool = True  # False: no handler knows its MACs; counted as 0


@dataclasses.dataclass(frozen=True)
class ModelCost:
    """The cost of a model, layer call by layer call.

    `str(cost)` is a table a user can print. Parameters of a layer called
    several times are counted at its first call.
    """

    layers: tuple

    @property
    def macs(self) -> int:
        return sum(layer.macs for layer in self.layers)

    @property
    def flops(self) -> int:
        return 2 * self.macs

    @property
    def params(self) -> int:
        return sum(layer.params for layer in self.layers)

    @property
    def uncosted(self) -> tuple:
        """Paths of the layer calls whose MACs are unknown (counted as 0)."""
        return tuple(dict.fromkeys(c.path for c in self.layers if not c.costed))

    def to_dict(self) -> dict:
        return {
            "macs": self.macs,
            "flops": self.flops,
            "params": self.params,
            "uncosted": list(self.uncosted),
            "layers": [dataclasses.asdict(layer) for layer in self.layers],
        }

    def __str__(self):
        rows = [("Layer", "Class", "Output shape", "MACs", "Params")]
        rows += [
            (
                c.path, c.class_name, str(c.output_shape),
                f"{c.macs:,}" if c.costed else "?", f"{c.params:,}",
            )
            for c in self.layers
        ]
        rows.append(("Total", "", "", f"{self.macs:,}", f"{self.params:,}"))
        widths = [max(len(row[i]) for row in rows) for i in range(5)]
        lines = [
            "  ".join(
                cell.ljust(w) if i < 3 else cell.rjust(w)
                for i, (cell, w) in enumerate(zip(row, widths))
            )
            for row in rows
        ]
        lines.insert(1, "-" * len(lines[0]))
        lines.insert(len(lines) - 1, "-" * len(lines[0]))
        lines.append(f"FLOPs (2 x MACs): {self.flops:,}")
        if self.uncosted:
            lines.append(
                f"Not costed (?: no handler, counted as 0): {', '.join(self.uncosted)}"
            )
        return "\n".join(lines)


def count_costs(model: keras.Model | graph_lib.CouplingGraph, plan=None) -> ModelCost:
    """Counts the MACs and parameters of every layer call of a model.

    A layer no handler knows (a custom layer, an unknown Keras operation)
    counts 0 MACs: it is marked in the table and in `cost.uncosted`, and a
    warning names it when `model` is a model.

    Args:
        model: a functional or Sequential `keras.Model` with a fixed input
            size (nested models are counted layer by layer), or its
            `CouplingGraph`.
        plan: a `Plan` of that graph: count the model it would rebuild,
            without building it. Defaults to `None` (the model as it is).

    Returns:
        A `ModelCost`; `print(cost)` shows the per-layer table.

    Raises:
        TypeError: if `model` is not a functional or Sequential model.
        ValueError: if a spatial dimension is unknown (`None`), or if `plan`
            does not match the graph.

    Example:

    ```python
    cost = singe_keras.count_costs(model)
    print(cost)          # per-layer MACs and params
    cost.flops           # 2 x cost.macs
    ```
    """
    given_graph = isinstance(model, graph_lib.CouplingGraph)
    graph = model if given_graph else graph_lib.CouplingGraph(model, warn=False)
    kept = (
        np.ones(graph.num_units, bool) if plan is None else plan.mask(graph).astype(bool)
    )
    seen, layers = set(), []
    for node in graph.nodes:
        in_keep, out_keep = graph.kept(node, kept)
        call = node.resized(in_keep, out_keep)
        if id(node.layer) in seen:
            params = 0
        else:  # from the shapes of the sliced weights: no weight is read
            weights = node.sliced_weights(in_keep, out_keep, values=False)
            params = (
                _count_params(node.layer) if weights is None
                else sum(w.size for w in weights.values())
            )
        seen.add(id(node.layer))
        layers.append(
            LayerCost(
                path=node.path,
                class_name=type(node.layer).__name__,
                output_shape=tuple(call.output_shapes[0]),
                macs=int(node.handler.macs(node.layer, call)),
                params=params,
                costed=node.handler.costed,
            )
        )
    if not given_graph:  # a traced graph has warned about its barriers
        _warn_uncosted(layers)
    return ModelCost(tuple(layers))


def _warn_uncosted(layers):
    """One warning per class of layers whose cost is unknown."""
    by_class = {}
    for c in layers:
        if not c.costed:
            paths = by_class.setdefault(c.class_name, [])
            if c.path not in paths:
                paths.append(c.path)
    for class_name, paths in by_class.items():
        user_warning.warn(
            f"{graph_lib.describe_layers(class_name, paths)} count 0 FLOPs: no "
            "handler knows their cost. Register one with "
            "`singe_keras.register_handler`.",
        )


def _count_params(layer):
    if not isinstance(layer, keras.layers.Layer):
        return 0  # a Keras operation (`x + 3.0`) has no weights
    return layer.count_params() if layer.built else 0


def count_flops(model: keras.Model | graph_lib.CouplingGraph, plan=None) -> int:
    """Counts the FLOPs (2 x multiply-accumulates) of one forward pass.

    Args:
        model: a functional or Sequential `keras.Model` with a fixed input
            size, or its `CouplingGraph`.
        plan: a `Plan` of that graph, to count the model it would rebuild.
            Defaults to `None`.

    Returns:
        The FLOPs of one sample, as an `int`.

    Example:

    ```python
    model = keras.applications.ResNet50(weights=None)
    singe_keras.count_flops(model)  # about 7.7e9
    ```
    """
    return count_costs(model, plan).flops
