"""Allocation: from relevance scores and a cost target to a `Plan`.

Units are ranked globally, across groups, by a normalised relevance
(SINGE.md, "Allocation"), and the lowest-ranked are removed until the model
fits the target. Removing more units never costs more, so the number of
units to remove is found by bisection: the result meets the target and
keeping one more unit of the ranking would not (the target is reached to
within one unit's cost, never overshot upward).
"""

import numpy as np

from singe_keras import cost as cost_lib
from singe_keras.plan import Plan

NORMALIZATIONS = ("none", "l2", "flops")


def partial_target(total, target, fraction):
    """The cost `fraction` of the way from `total` to `target` (`None` stays `None`)."""
    return None if target is None else total - (total - target) * fraction


def check_options(target_flops, target_params, normalization, verbose, **integers):
    """Validates the options `prune` and `PruningCallback` share.

    Raises:
        ValueError: naming the first bad option and the value received.
    """
    for name, target in (("target_flops", target_flops), ("target_params", target_params)):
        absolute_target(name, target, 1)
    if target_flops is None and target_params is None:
        raise ValueError(
            "Give `target_flops` or `target_params` (a fraction in (0, 1] of "
            "the model's, or an absolute count > 1). Received neither."
        )
    for name, value in integers.items():
        low = 0 if name in ("finetune_steps", "final_epochs", "start_epoch") else 1
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise ValueError(
                f"`{name}` must be an integer >= {low}. Received: {name}={value!r}"
            )
    if normalization not in NORMALIZATIONS:
        raise ValueError(
            f"`normalization` must be one of {list(NORMALIZATIONS)}. "
            f"Received: normalization={normalization!r}"
        )
    if verbose not in (0, 1):
        raise ValueError(f"`verbose` must be 0 or 1. Received: verbose={verbose!r}")


def absolute_target(name, target, total):
    """A target as an absolute count: fractions in (0, 1] are of `total`.

    Raises:
        ValueError: if `target` is not a positive number.
    """
    if target is None:
        return None
    if isinstance(target, bool) or not isinstance(target, (int, float, np.number)) or not (
        np.isfinite(target) and target > 0
    ):
        raise ValueError(
            f"`{name}` must be in (0, 1] or an absolute count > 1. "
            f"Received: {name}={target!r}"
        )
    return float(target) * total if target <= 1 else float(target)


def normalize(graph, relevance, normalization, kept_units=None):
    """Makes relevances comparable across groups.

    Args:
        graph: the `CouplingGraph`.
        relevance: the `(num_units,)` relevance of every unit.
        normalization: `"none"`; `"l2"`, each group's relevances divided by
            their L2 norm; or `"flops"`, each unit's relevance divided by the
            FLOPs its removal saves.
        kept_units: the units still in the model (a boolean mask; units
            already masked out cost nothing). Defaults to `None` (all).

    Returns:
        The normalised `(num_units,)` relevance.
    """
    relevance = np.asarray(relevance, dtype="float64").copy()
    if normalization == "none":
        return relevance
    kept_units = np.ones(graph.num_units, bool) if kept_units is None else kept_units
    current = Plan.from_mask(graph, kept_units)
    base = cost_lib.count_flops(graph, current) if normalization == "flops" else None
    for group in graph.groups:
        units = slice(graph.group_offset(group.name), graph.group_offset(group.name) + group.size)
        kept = current.keep[group.name]
        if normalization == "l2":
            norm = np.linalg.norm(relevance[units])
            relevance[units] /= norm if norm > 0 else 1.0
        elif len(kept) > 1:  # "flops": what removing one more unit of the group saves
            saved = base - cost_lib.count_flops(graph, current.with_kept(group.name, kept[1:]))
            relevance[units] /= max(saved, 1)
    return relevance


def allocate(
    graph,
    relevance,
    max_flops=None,
    max_params=None,
    normalization="flops",
    min_units=1,
    round_to=1,
):
    """The plan that removes the least relevant units until the costs fit.

    Args:
        graph: the `CouplingGraph` of the model.
        relevance: `(num_units,)` relevance of every unit (a `Scores.flat()`).
        max_flops: keep at most this many FLOPs. Defaults to `None`.
        max_params: keep at most this many parameters. Defaults to `None`.
        normalization: see `normalize`. Defaults to `"flops"`.
        min_units: every group keeps at least this many units (or all of
            them if it has fewer). Defaults to `1`.
        round_to: every group keeps a multiple of this many units (or all
            of them), for hardware-friendly channel counts. Defaults to `1`.

    Returns:
        A `Plan`.

    Raises:
        ValueError: if the targets cannot be met within `min_units` and
            `round_to`; the message gives the smallest reachable costs.
    """
    order = _removal_order(graph, normalize(graph, relevance, normalization), min_units)
    relevance = np.asarray(relevance, dtype="float64")

    def plan_removing(count):
        kept = np.ones(graph.num_units, bool)
        kept[order[:count]] = False
        keep = {}
        for group in graph.groups:
            start = graph.group_offset(group.name)
            mask = kept[start : start + group.size]
            wanted = min(group.size, -(-int(mask.sum()) // round_to) * round_to)
            # Kept units first, then (rounding up) the most relevant removed ones.
            ranked = np.lexsort((-relevance[start : start + group.size], ~mask))
            keep[group.name] = np.sort(ranked[:wanted])
        return Plan(keep, {g.name: g.size for g in graph.groups})

    def fits(plan):
        cost = cost_lib.count_costs(graph, plan)
        return (max_flops is None or cost.flops <= max_flops) and (
            max_params is None or cost.params <= max_params
        )

    most = plan_removing(len(order))
    if not fits(most):
        smallest = cost_lib.count_costs(graph, most)
        raise _unreachable(smallest, min_units, round_to, max_flops, max_params)
    low, high = 0, len(order)  # fits(plan_removing(high)) holds
    while low < high:
        middle = (low + high) // 2
        if fits(plan_removing(middle)):
            high = middle
        else:
            low = middle + 1
    return plan_removing(high)


def _removal_order(graph, normalized, min_units):
    """Removable units, least relevant first; each group's best are protected."""
    removable = np.ones(graph.num_units, bool)
    for group in graph.groups:
        start = graph.group_offset(group.name)
        best = np.argsort(-normalized[start : start + group.size], kind="stable")
        removable[start + best[: min(min_units, group.size)]] = False
    candidates = np.flatnonzero(removable)
    return candidates[np.argsort(normalized[candidates], kind="stable")]


def check_reachable(graph, max_flops, max_params, min_units=1, round_to=1):
    """Raises the `allocate` error if no plan can meet the targets."""
    smallest = cost_lib.count_costs(graph, _smallest_plan(graph, min_units, round_to))
    if (max_flops is not None and smallest.flops > max_flops) or (
        max_params is not None and smallest.params > max_params
    ):
        raise _unreachable(smallest, min_units, round_to, max_flops, max_params)


def _smallest_plan(graph, min_units, round_to):
    keep = {}
    for group in graph.groups:
        count = min(group.size, -(-min(min_units, group.size) // round_to) * round_to)
        keep[group.name] = range(count)
    return Plan(keep, {g.name: g.size for g in graph.groups})


def _unreachable(smallest, min_units, round_to, max_flops, max_params):
    # A count in (1, 100] is far below any real model's cost: likely a percentage.
    percentages = "".join(
        f" Did you mean {name}={target / 100:g} (a fraction), not {target:g} {unit}?"
        for name, target, unit in (("target_flops", max_flops, "FLOPs"),
                                   ("target_params", max_params, "parameters"))
        if target is not None and 1 < target <= 100
    )
    return ValueError(
        "The target cannot be reached: with min_units="
        f"{min_units} and round_to={round_to}, the smallest reachable model "
        f"has {smallest.flops:,} FLOPs and {smallest.params:,} parameters. "
        f"Received: target_flops={max_flops}, target_params={max_params} "
        "(absolute)." + percentages + " Raise the target, or lower "
        "`min_units`/`round_to`, or remove layers from `ignored_layers`."
    )
