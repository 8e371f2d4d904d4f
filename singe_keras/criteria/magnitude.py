"""Data-free criteria: weight magnitudes (`l1`, `l2`, `group_l1`, `group_l2`), `bn_scale`, `random`."""

import numpy as np

from singe_keras.criteria.base import Criterion, register_criterion


def _per_unit(graph, per_node, combine):
    """Folds per-channel values of traced layers into per-unit values.

    `per_node(node)` returns `(tensor, values)` pairs: one value per channel
    of the node's output (or hidden axis) `tensor`. Each layer counts once
    however often it is called. Units that no layer gives a value to are
    `nan`.
    """
    sums, counts = np.zeros(graph.num_units), np.zeros(graph.num_units)
    for node in graph.layer_nodes():
        for tensor, values in per_node(node):
            units = graph.unit_indices(tensor)
            prunable = units >= 0
            np.add.at(sums, units[prunable], values[prunable])
            np.add.at(counts, units[prunable], 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return combine(sums, counts)


def _kernel_slices(node, transform):
    """The summed `transform` of each unit's output slices (and hidden units' weights)."""
    handler, layer = node.handler, node.layer
    slices = list(zip(node.hidden, handler.hidden_weights(layer)))
    weights = handler.output_weights(layer)
    if weights is not None:
        slices.append((node.outputs[0], weights))
    return [(t, transform(w.reshape(-1, w.shape[-1])).sum(axis=0)) for t, w in slices]


@register_criterion("l1")
class L1Norm(Criterion):
    """L1 norm of the unit's output slices in all its producers (Li et al. 2017).

    "Pruning Filters for Efficient ConvNets", ICLR 2017. A unit made by
    several producers (the two sides of a residual `Add`) takes the norm of
    all its slices together. An attention head takes the norm of its slices
    of the query, key, value and output projection kernels.
    """

    def score(self, gated, data=None):
        return _per_unit(
            gated.graph, lambda n: _kernel_slices(n, np.abs), lambda s, c: s
        )


@register_criterion("l2")
class L2Norm(Criterion):
    """L2 norm of the unit's output slices in all its producers (Li et al. 2017)."""

    normalization = "gaussian"

    def score(self, gated, data=None):
        return _per_unit(
            gated.graph, lambda n: _kernel_slices(n, np.square), lambda s, c: np.sqrt(s)
        )


@register_criterion("bn_scale")
class BatchNormScale(Criterion):
    """|gamma| of the unit's BatchNormalization, averaged over several (Liu et al.).

    "Learning Efficient Convolutional Networks through Network Slimming",
    ICCV 2017.

    Raises:
        ValueError: from `score`, if some group has no BatchNormalization
            with a scale.
    """

    def score(self, gated, data=None):
        graph = gated.graph

        def gamma(node):
            scale = node.handler.channel_scale(node.layer)
            return [] if scale is None else [(node.outputs[0], np.abs(scale))]

        relevance = _per_unit(graph, gamma, lambda s, c: s / c)
        missing = [
            g.name
            for g in graph.groups
            if np.isnan(relevance[graph.group_offset(g.name):][: g.size]).any()
        ]
        if missing:
            raise ValueError(
                "The `bn_scale` criterion needs a BatchNormalization (with "
                f"`scale=True`) on every prunable group; these have none: {missing}. "
                "Use another criterion, or pass them in `ignored_layers`."
            )
        return relevance


def _group_magnitude(graph, p):
    """Per unit, the mean over its coupled parameter slices of sum(|w|**p)."""
    sums, members = np.zeros(graph.num_units), np.zeros(graph.num_units)
    for node in graph.layer_nodes():
        handler, layer = node.handler, node.layer
        slices = [(node.outputs[0], w) for w in (handler.output_weights(layer),
                                                 handler.channel_scale(layer)) if w is not None]
        slices += [(node.inputs[0], w) for w in handler.input_weights(layer)]
        slices += zip(node.hidden, handler.hidden_weights(layer))
        for tensor, weights in slices:
            units = graph.unit_indices(tensor)
            values = (np.abs(weights.reshape(-1, weights.shape[-1])) ** p).sum(axis=0)
            prunable = units >= 0
            np.add.at(sums, units[prunable], values[prunable])
            members[np.unique(units[prunable])] += 1
    return sums / np.maximum(members, 1)


@register_criterion("group_l1")
class GroupL1Norm(Criterion):
    """Group L1 norm: the mean L1 norm of every parameter slice coupled with the unit.

    Torch-Pruning's `GroupMagnitudeImportance(p=1)` (G. Fang et al.,
    "DepGraph: Towards Any Structural Pruning", CVPR 2023): a unit's slices
    are its output slice in every producer kernel (not the bias), its
    BatchNormalization gammas, and the slice that reads it in every consumer
    (the next conv's or Dense's input channel, all the rows a `Flatten`
    gives it, a depthwise kernel's filters, a separable conv's depthwise and
    pointwise rows). The relevance is sum(|w|) of each slice, averaged over
    the slices (Torch-Pruning's default `group_reduction="mean"`), so a unit
    that feeds a well-used consumer counts as relevant even if its own
    kernel is small. (Torch-Pruning 1.6.1 leaves depthwise kernels out.)
    Units no slice reaches score 0. Its default allocation normalization is
    `"gaussian"`, the best measured for it.

    Example:

    ```python
    pruned = singe_keras.prune(model, target_flops=0.5, criterion="group_l1",
                               normalization="mean", finetune_steps=0)
    ```
    """

    normalization = "gaussian"

    def score(self, gated, data=None):
        return _group_magnitude(gated.graph, p=1)


@register_criterion("group_l2")
class GroupL2Norm(Criterion):
    """Group L2: the mean squared L2 norm of the unit's coupled parameter slices.

    Torch-Pruning's default importance, `GroupMagnitudeImportance(p=2)`: as
    `GroupL1Norm` with sum(w**2) per slice (no square root, as there).
    """

    def score(self, gated, data=None):
        return _group_magnitude(gated.graph, p=2)


@register_criterion("random")
class Random(Criterion):
    """Uniformly random relevance: the floor every criterion must beat.

    Args:
        seed: seed of the NumPy generator. Defaults to `0`.
    """

    def __init__(self, seed=0):
        self.seed = seed

    def get_config(self):
        return {"seed": self.seed}

    def score(self, gated, data=None):
        return np.random.default_rng(self.seed).random(gated.graph.num_units)
