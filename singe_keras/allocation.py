"""Allocation: from relevance scores and a cost target to a `Plan`.

Units are ranked globally, across groups, by a normalised relevance
(docs/method.md, "Allocation"), and the lowest-ranked are removed until the model
fits the target. Removing more units never costs more, so the number of
units to remove is found by bisection; then the most relevant removed units
that still fit are put back, one group step at a time, so that the result
meets the target and no single removed unit (or `round_to` block) could be
restored without exceeding it. When the last unit the bisection removed
overshoots the target by more than smaller units further in the ranking
would, it is skipped and the removal goes on to those (see `allocate`).

The costs are a vector: FLOPs, parameters and, with a `LatencyModel`, the
predicted latency (`singe_keras.latency`); a plan fits when each is within
its target.
"""

import math

import numpy as np

from singe_keras import cost as cost_lib
from singe_keras.plan import Plan

NORMALIZATIONS = ("none", "mean", "max", "sum", "l2", "gaussian", "flops", "latency")

# Per-group scales: the group's relevances are divided by scale(|kept ones|).
_SCALES = {"mean": np.mean, "max": np.max, "sum": np.sum, "l2": np.linalg.norm}
# Torch-Pruning's epsilon in its "gaussian" normalizer.
_GAUSSIAN_EPSILON = 1e-8
# A plan using this share of its target is not refilled past a unit that
# overshoots it (`allocate`).
_CLOSE_ENOUGH = 0.99


def partial_target(total, target, fraction):
    """The cost `fraction` of the way from `total` to `target` (`None` stays `None`)."""
    return None if target is None else total - (total - target) * fraction


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


def normalize(graph, relevance, normalization, kept_units=None, latency_model=None):
    """Makes relevances comparable across groups.

    Every normalization but `"none"` works group by group; with `r` the
    group's relevances and `k` those of its kept units (the statistics
    ignore units already removed, as Torch-Pruning, which scores only the
    channels a model still has):

    - `"none"`: `r`.
    - `"mean"`: `r / mean(|k|)` (Torch-Pruning's default normalizer).
    - `"max"`: `r / max(|k|)`.
    - `"sum"`: `r / sum(|k|)`.
    - `"l2"`: `r / sqrt(sum(k**2))`.
    - `"gaussian"`: `(r - mean(k)) / (std(k) + 1e-8)`, with `std` the sample
      standard deviation (`ddof=1`, as `torch.std`); a group whose kept
      relevances are all equal (one kept unit included) gets 0 everywhere.
    - `"flops"`: `r / s`, with `s` the FLOPs that removing one more kept unit
      of the group saves (not applied to a group with one kept unit).
    - `"latency"`: `r / s`, with `s` the predicted milliseconds saved per
      unit by removing the fewest kept units of the group that save any
      time (latency is a staircase in channel counts: one unit often saves
      nothing; HALP's relevance per latency saved). Needs `latency_model`.

    Taking absolute values in the scales keeps the order within a group for
    signed relevances (and equals Torch-Pruning's formulas on non-negative
    ones); a zero scale leaves the group as it is. Every normalization is an
    increasing function of `r` within a group, so it changes only how groups
    compare.

    Args:
        graph: the `CouplingGraph`.
        relevance: the `(num_units,)` relevance of every unit.
        normalization: one of `NORMALIZATIONS`.
        kept_units: the units still in the model (a boolean mask; units
            already removed are scaled with their group but neither enter
            its statistics nor cost anything). Defaults to `None` (all).
        latency_model: the `LatencyModel` of `"latency"`. Defaults to `None`.

    Returns:
        The normalised `(num_units,)` relevance.

    Example:

    ```python
    graph = singe_keras.trace(model)
    relevance = singe_keras.criteria.get("l1").score(singe_keras.GatedModel(graph))
    normalized = singe_keras.allocation.normalize(graph, relevance, "mean")
    ```
    """
    relevance = np.asarray(relevance, dtype="float64").copy()
    if normalization == "latency" and latency_model is None:
        raise ValueError(
            "normalization='latency' needs a `latency_model` "
            "(singe_keras.latency.build(model)). Received: latency_model=None"
        )
    if normalization == "none":
        return relevance
    kept_units = np.ones(graph.num_units, bool) if kept_units is None else kept_units
    if normalization in ("flops", "latency"):
        current = Plan.from_mask(graph, kept_units)
        base = cost_lib.count_flops(graph, current) if normalization == "flops" else (
            latency_model.predict(graph, current))
    for group in graph.groups:
        units = slice(graph.group_offset(group.name), graph.group_offset(group.name) + group.size)
        kept = relevance[units][kept_units[units]]
        if normalization == "gaussian":
            if np.ptp(kept) > 0:
                spread = np.std(kept, ddof=1) + _GAUSSIAN_EPSILON
                relevance[units] = (relevance[units] - kept.mean()) / spread
            else:
                relevance[units] = 0.0
        elif normalization == "flops":
            if len(kept) > 1:  # what removing one more unit of the group saves
                fewer = current.with_kept(group.name, current.keep[group.name][1:])
                relevance[units] /= max(base - cost_lib.count_flops(graph, fewer), 1)
        elif normalization == "latency":
            if len(kept) > 1:
                relevance[units] /= _latency_saving(graph, current, group.name, latency_model,
                                                    base)
        else:
            scale = _SCALES[normalization](np.abs(kept))
            relevance[units] /= scale if scale > 0 else 1.0
    return relevance


def allocate(
    graph,
    relevance,
    max_flops=None,
    max_params=None,
    normalization="flops",
    min_units=1,
    round_to=1,
    max_pruning_ratio=None,
    *,
    kept_units=None,
    original_sizes=None,
    max_latency=None,
    latency_model=None,
):
    """The plan that removes the least relevant units until the costs fit.

    Units are removed in the order of their normalised relevance (lowest
    first) until the costs fit (found by bisection). Then, the removed units
    are visited from the most relevant down, and each is put back (with the
    rest of its group's `round_to` block) if the costs still fit. If the
    last unit removed left a gap under the target that the put-back cannot
    fill (a wide layer's filter, when the next units in the ranking are a
    narrow layer's), it is skipped: its group keeps it and its more
    relevant units, and the removal goes on down the ranking; this repeats
    while the result gets closer to the target and is more than 1% under
    it. So a round ends close under its target even when the units the
    ranking puts next are wide ones.

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
        max_pruning_ratio: every group keeps at least
            `ceil((1 - max_pruning_ratio) * size)` units (the larger of this
            and `min_units` holds). `None` sets no such limit. Defaults to
            `None`.
        kept_units: the units still in the model (a boolean mask); the
            others stay removed. Defaults to `None` (all).
        original_sizes: `{group name: units}` before any pruning, which
            `max_pruning_ratio` counts from (`prune` passes the input
            model's, so that rounds do not compound the ratio). Defaults to
            `None` (the graph's own sizes).
        max_latency: keep at most this many milliseconds predicted by
            `latency_model`. Defaults to `None`.
        latency_model: a `singe_keras.latency.LatencyModel`, for
            `max_latency` and the `"latency"` normalization. Defaults to
            `None`.

    Returns:
        A `Plan`.

    Raises:
        ValueError: if the targets cannot be met within `min_units`,
            `round_to` and `max_pruning_ratio` (the message gives the
            smallest reachable costs), or if `max_latency` or the
            `"latency"` normalization come without `latency_model`.

    Example:

    ```python
    graph = singe_keras.trace(model)
    relevance = singe_keras.criteria.get("l1").score(singe_keras.GatedModel(graph))
    plan = singe_keras.allocation.allocate(
        graph, relevance, max_flops=0.5 * singe_keras.count_flops(graph),
        normalization="mean", max_pruning_ratio=0.9)
    ```
    """
    available = np.ones(graph.num_units, bool) if kept_units is None else (
        np.asarray(kept_units, bool))
    limits = _limits(max_flops, max_params, max_latency, latency_model)
    normalized = normalize(graph, relevance, normalization, available, latency_model)
    floors = _floors(graph, min_units, max_pruning_ratio, original_sizes)
    groups = graph.groups
    # Per group, its removable units in the order they go (least relevant first).
    sequences = []
    for group in groups:
        start = graph.group_offset(group.name)
        candidates = start + np.flatnonzero(available[start : start + group.size])
        ranked = candidates[np.argsort(normalized[candidates], kind="stable")]
        sequences.append(ranked[: max(len(ranked) - floors[group.name], 0)])
    counts = [int(available[graph.group_offset(g.name):][: g.size].sum()) for g in groups]
    group_of, position = np.full(graph.num_units, -1), np.zeros(graph.num_units, int)
    for index, sequence in enumerate(sequences):
        group_of[sequence], position[sequence] = index, np.arange(len(sequence))
    order = np.concatenate(sequences + [np.zeros(0, int)])
    order = order[np.argsort(normalized[order], kind="stable")]

    def plan_of(removed):
        """The plan removing the first `removed[g]` units of each group's sequence."""
        keep = {}
        for group, sequence, count, gone in zip(groups, sequences, counts, removed):
            start = graph.group_offset(group.name)
            mask = available[start : start + group.size].copy()
            mask[sequence[:gone] - start] = False
            keep[group.name] = np.flatnonzero(mask)
        return Plan(keep, {g.name: g.size for g in groups})

    def rounded(removed):
        """Removes fewer units where needed to keep a multiple of `round_to`."""
        return [
            count - min(count, -(-(count - gone) // round_to) * round_to)
            for count, gone in zip(counts, removed)
        ]

    def fits(removed):
        return _fits(_costs(graph, plan_of(removed), latency_model), limits)

    def fill(ranking):
        """Removes the shortest prefix of `ranking` that fits, then puts back what fits.

        Returns the units removed per group and the unit whose removal made
        the costs fit (`None` if nothing had to go), or `None` if removing all
        of `ranking` does not fit.
        """
        def removing(prefix):
            removed = np.bincount(group_of[ranking[:prefix]], minlength=len(groups))
            return rounded(removed.tolist())

        if not fits(removing(len(ranking))):
            return None
        low, high = 0, len(ranking)  # fits(removing(high)) holds
        while low < high:
            middle = (low + high) // 2
            if fits(removing(middle)):
                high = middle
            else:
                low = middle + 1
        removed = removing(high)
        # Put back: a group whose next block did not fit never fits later (costs
        # only grow as units come back), so each group is tried until it fails.
        closed = set()
        for unit in ranking[:high][::-1]:
            index = group_of[unit]
            if index in closed or position[unit] >= removed[index]:
                continue  # its group failed, or rounding already put it back
            trial = list(removed)
            trial[index] = removed[index] - 1
            trial = rounded(trial)
            if fits(trial):
                removed = trial
            else:
                closed.add(index)
        return removed, (ranking[high - 1] if high else None)

    def used(removed):
        """How much of the target a plan uses: its largest cost / limit."""
        costs = _costs(graph, plan_of(removed), latency_model)
        return max(costs[name] / limit for name, limit in limits.items())

    filled = fill(order)
    if filled is None:
        smallest = _costs(graph, plan_of(rounded([len(s) for s in sequences])), latency_model)
        raise _unreachable(smallest, limits, min_units, round_to, max_pruning_ratio)
    removed, crossing = filled
    # The unit whose removal made the costs fit may overshoot the target by
    # far more than the next, smaller units in the ranking would (a wide
    # layer's filter next to a narrow one's), and the put-back cannot fill
    # that gap with units that were never removed. Then the unit is skipped:
    # its group keeps it and its more relevant units, and the removal goes on
    # to the next units in the ranking, for as long as that lands closer to
    # the target; not within 1% of it, where keeping the ranking's order is
    # worth more than the last FLOPs (and where every further fill would
    # cost time on a large model for next to nothing).
    caps = np.array([len(sequence) for sequence in sequences])
    share = used(removed)
    while crossing is not None and share < _CLOSE_ENOUGH:
        caps[group_of[crossing]] = position[crossing]
        filled = fill(order[position[order] < caps[group_of[order]]])
        closer = None if filled is None else used(filled[0])
        if closer is None or closer <= share:
            break
        (removed, crossing), share = filled, closer
    return plan_of(removed)


def _limits(max_flops, max_params, max_latency, latency_model):
    """The cost vector's targets: `{"flops"/"params"/"latency": maximum}`."""
    if max_latency is not None and latency_model is None:
        raise ValueError(
            "`max_latency` needs a `latency_model` (singe_keras.latency.build(model)). "
            "Received: latency_model=None"
        )
    limits = {"flops": max_flops, "params": max_params, "latency": max_latency}
    return {name: limit for name, limit in limits.items() if limit is not None}


def _costs(graph, plan, latency_model=None):
    """The cost vector of a plan: FLOPs, parameters and, with a model, latency (ms)."""
    cost = cost_lib.count_costs(graph, plan)
    costs = {"flops": cost.flops, "params": cost.params}
    if latency_model is not None:
        costs["latency"] = latency_model.predict(graph, plan)
    return costs


def _fits(costs, limits):
    return all(costs[name] <= limit for name, limit in limits.items())


def _latency_saving(graph, plan, group, latency_model, base):
    """Predicted ms saved per unit by removing the fewest units of `group` that save time.

    Tries 1, 2, 4, ... units (the steps of a table are a few units apart);
    a group whose removal saves nothing gets a tiny saving, so that its units
    go last.
    """
    kept = plan.keep[group]
    count = 1
    while True:
        count = min(count, len(kept) - 1)
        saving = base - latency_model.predict(graph, plan.with_kept(group, kept[count:]))
        if saving > 0 or count == len(kept) - 1:
            return max(saving, 0.0) / count + 1e-12
        count *= 2


def _floors(graph, min_units, max_pruning_ratio, original_sizes=None):
    """Per group, the fewest units it may keep."""
    floors = {}
    for group in graph.groups:
        floor = min_units
        if max_pruning_ratio is not None:
            size = (original_sizes or {}).get(group.name, group.size)
            # Rounded first: (1 - 0.7) * 10 is 3.0000000000000004 in floats.
            floor = max(floor, math.ceil(round((1 - max_pruning_ratio) * size, 9)))
        floors[group.name] = min(floor, group.size)
    return floors


def check_reachable(
    graph, max_flops, max_params, min_units=1, round_to=1, max_pruning_ratio=None,
    ignored_layers=(), max_latency=None, latency_model=None,
):
    """Raises the `allocate` error if no plan can meet the targets.

    `ignored_layers` (the names the user passed) are suggested for removal.
    """
    limits = _limits(max_flops, max_params, max_latency, latency_model)
    smallest = _costs(
        graph, _smallest_plan(graph, min_units, round_to, max_pruning_ratio), latency_model
    )
    if not _fits(smallest, limits):
        raise _unreachable(smallest, limits, min_units, round_to, max_pruning_ratio,
                           ignored_layers)


def _smallest_plan(graph, min_units, round_to, max_pruning_ratio):
    keep = {}
    floors = _floors(graph, min_units, max_pruning_ratio)
    for group in graph.groups:
        count = min(group.size, -(-floors[group.name] // round_to) * round_to)
        keep[group.name] = range(count)
    return Plan(keep, {g.name: g.size for g in graph.groups})


def _unreachable(smallest, limits, min_units, round_to, max_pruning_ratio, ignored_layers=()):
    max_flops, max_params = limits.get("flops"), limits.get("params")
    # A count in (1, 100] is far below any real model's cost: likely a percentage.
    percentages = "".join(
        f" Did you mean {name}={target / 100:g} (a fraction), not {target:g} {unit}?"
        for name, target, unit in (("target_flops", max_flops, "FLOPs"),
                                   ("target_params", max_params, "parameters"))
        if target is not None and 1 < target <= 100
    )
    latency = (
        f" and a predicted latency of {smallest['latency']:.4g} ms"
        if "latency" in smallest else ""
    )
    latency_target = (
        f", target_latency={limits['latency']:.4g}ms" if "latency" in limits else ""
    )
    ignored = (
        f", or remove layers from `ignored_layers` ({list(ignored_layers)})"
        if ignored_layers else ""
    )
    return ValueError(
        f"The target cannot be reached: with min_units={min_units}, round_to="
        f"{round_to} and max_pruning_ratio={max_pruning_ratio}, the smallest "
        f"reachable model has {smallest['flops']:,} FLOPs and {smallest['params']:,} "
        f"parameters{latency}. Received: target_flops={max_flops}, target_params="
        f"{max_params}{latency_target} (absolute)." + percentages + " Raise the target, or lower "
        f"`min_units`/`round_to`, or raise `max_pruning_ratio`{ignored}."
    )
