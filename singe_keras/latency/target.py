"""Latency targets of `prune`: milliseconds, the model to use, and the correction on measurements."""


import numpy as np

from singe_keras import distribute, progress, user_warning
from singe_keras.latency.model import LatencyModel
from singe_keras.latency.tables import build
from singe_keras.latency.timer import _check_timer_options
from singe_keras.surgery import rebuild

# A last plan's latency budget is corrected on measurements (at most this
# many times) until the model measures within this fraction of the target.
_CORRECTIONS = 5
_LATENCY_TOLERANCE = 0.05


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
    (docs/latency.md, "Pruning to a latency target"), and the allocation seeks out
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
    if len(trials) > 1:
        progress.report("Latency budget corrected on measurements: " + ", ".join(
            f"{t['budget_ms']:.3f} ms budget -> {t['measured_ratio']:.3f} of the unpruned "
            "latency measured" for t in corrections) + f" (target {target:.3f})", verbose)
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
            "docs/latency.md, 'Pruning to a latency target'.",
        )
    return error
