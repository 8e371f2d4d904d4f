"""`normalization="auto"`: the allocation normalization chosen on held-out examples.

How relevances are compared across groups decides which layers shrink, and
no fixed normalization is best everywhere: relevance per FLOP saved
(`"flops"`) did best for gradient criteria on residual networks and worst
on a plain chain, where the per-group `"mean"` did best
(benchmarks/README.md, "Criteria under a fair allocation"). `"auto"`
allocates the step's target with each of `CANDIDATES`, rebuilds each
distinct plan, re-estimates its BatchNorm statistics on held-out examples
(the ones after the criterion's scoring samples) and keeps the plan with the
lowest loss on them: one forward pass per candidate and example, twice,
which costs less than scoring them with `"singe"`.
"""

import numpy as np

from singe_keras import data as data_lib
from singe_keras import recalibration
from singe_keras.surgery import rebuild

CANDIDATES = ("mean", "flops", "gaussian")
HELD_OUT = 512  # examples the candidates are compared on
BATCH = 64


def held_out_batches(data, skip, count=HELD_OUT, batch_size=BATCH):
    """`(x, y, sample_weight)` batches of the `count` examples after the first `skip`.

    The skipped rows (and the padding of the last batch) get sample weight 0;
    batches with no weight left are dropped. If `data` holds no example past
    `skip`, the first `count` examples are used instead (those that scored).
    """
    batches, seen = [], 0
    for x, y, weight in data_lib.fixed_batches(data, skip + count, batch_size):
        rows = seen + np.arange(len(x))
        seen += len(x)
        weight = np.where(rows >= skip, weight, np.float32(0))
        if weight.any():
            batches.append((x, y, weight))
    if not batches and skip:
        return held_out_batches(data, 0, count, batch_size)
    return batches


def choose(graph, allocate, batches, loss_fn):
    """The normalization of `CANDIDATES` whose plan has the lowest held-out loss.

    Args:
        graph: the `CouplingGraph` the plans are for.
        allocate: `allocate(normalization)` returns the step's `Plan`.
        batches: `held_out_batches`.
        loss_fn: a per-sample loss `loss_fn(y_true, y_pred)`.

    Returns:
        `(normalization, plan, losses)`, with `losses` the held-out loss of
        every candidate (candidates with the same plan share one
        evaluation); ties go to the earlier candidate, a loss that is not
        finite loses.
    """
    losses, plans, evaluated = {}, {}, {}
    for name in CANDIDATES:
        plans[name] = plan = allocate(name)
        key = tuple(sorted(plan.keep.items()))
        if key not in evaluated:
            evaluated[key] = _held_out_loss(rebuild(graph, plan), batches, loss_fn)
        losses[name] = evaluated[key]
    best = min(CANDIDATES, key=lambda name: np.nan_to_num(losses[name], nan=np.inf))
    return best, plans[best], losses


def _held_out_loss(model, batches, loss_fn):
    """The weighted mean loss of `model` after re-estimating its BatchNorm on `batches`."""
    recalibration.recalibrate_on(model, (x for x, _, _ in batches))
    total = weights = 0.0
    for x, y, weight in batches:
        values = np.asarray(loss_fn(y, model(x, training=False)), "float64")
        if values.size == 1:  # a loss that reduces: its batch mean stands for every row
            values = np.full(len(x), values.item())
        per_sample = values.reshape(len(x), -1).mean(axis=1)
        total += float(np.sum(per_sample * weight))
        weights += float(np.sum(weight))
    return total / weights
