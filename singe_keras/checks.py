"""Checks of the user's arguments, made before any work starts.

`prune`, `score` and `PruningCallback` share their options and their model
checks; every check raises a `ValueError` naming the argument and the value
received.
"""

import keras
import numpy as np

from singe_keras import latency as latency_lib
from singe_keras import user_warning
from singe_keras.allocation import NORMALIZATIONS, absolute_target

# The error names this many broken weights (a diverged model has NaN in all).
_NAMED = 5


def check_options(
    target_flops, target_params, normalization, verbose, max_pruning_ratio=None,
    target_latency=None, **integers
):
    """Validates the options `prune` and `PruningCallback` share.

    Raises:
        ValueError: naming the first bad option and the value received.
    """
    for name, target in (("target_flops", target_flops), ("target_params", target_params)):
        absolute_target(name, target, 1)
    latency_lib.target_milliseconds(target_latency, None)
    if target_flops is None and target_params is None and target_latency is None:
        raise ValueError(
            "Give `target_flops` or `target_params` (a fraction in (0, 1] of "
            "the model's, or an absolute count > 1), or `target_latency`. "
            "Received none."
        )
    if normalization == "latency" and target_latency is None:
        raise ValueError(
            "normalization='latency' (relevance per millisecond saved) needs "
            "`target_latency`. Received: target_latency=None"
        )
    for name, value in integers.items():
        if value is None and name == "recalibration_batches":
            continue  # `prune`'s default: only where no fine-tuning follows
        low = 0 if name in ("finetune_steps", "final_epochs", "start_epoch",
                             "recalibration_batches") else 1
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise ValueError(
                f"`{name}` must be an integer >= {low}. Received: {name}={value!r}"
            )
    if normalization not in (*NORMALIZATIONS, "auto"):
        raise ValueError(
            f"`normalization` must be one of {[*NORMALIZATIONS, 'auto']}. "
            f"Received: normalization={normalization!r}"
        )
    if max_pruning_ratio is not None and (
        isinstance(max_pruning_ratio, bool)
        or not isinstance(max_pruning_ratio, (int, float, np.number))
        or not 0 < max_pruning_ratio < 1
    ):
        raise ValueError(
            "`max_pruning_ratio` must be a number in (0, 1) or None. "
            f"Received: max_pruning_ratio={max_pruning_ratio!r}"
        )
    check_verbose(verbose, (0, 1, 2))


def check_verbose(verbose, choices):
    """Raises `ValueError` unless `verbose` is one of `choices` (ints)."""
    if isinstance(verbose, bool) or verbose not in choices:
        raise ValueError(
            f"`verbose` must be one of {list(choices)}. Received: verbose={verbose!r}"
        )


def renamed(function, new, value, old, old_value, default=None):
    """The value of an argument given by its name `new` or by its deprecated name `old`.

    Raises:
        TypeError: if both names are given.
    """
    if old_value is None:
        return value
    if value is not default:
        raise TypeError(
            f"`{function}` got both `{new}` and its deprecated name `{old}`. Pass `{new}` "
            f"only. Received: {new}={value!r}, {old}={old_value!r}"
        )
    user_warning.warn(f"`{function}({old}=...)` is deprecated: pass `{new}=` instead.",
                      DeprecationWarning)
    return old_value


def check_finite_weights(model: keras.Model) -> None:
    """Raises `ValueError` if a weight of `model` holds NaN or infinity.

    A model whose weights are not finite has diverged: its relevances, and
    any model pruned from it, would be meaningless. One pass over the
    weights with NumPy, run before any scoring or pruning.

    Args:
        model: a `keras.Model`.

    Raises:
        ValueError: naming every layer and weight with non-finite values,
            and how many values each holds.

    Example:

    ```python
    singe_keras.checks.check_finite_weights(model)  # quiet when all are finite
    ```
    """
    broken = []
    for layer in model.layers:
        for weight in layer.weights:
            value = np.asarray(keras.ops.convert_to_numpy(weight))
            if value.dtype.kind in "biu":  # integer counters cannot be NaN
                continue
            count = int(value.size - np.count_nonzero(np.isfinite(value)))
            if count:
                broken.append(f"layer {layer.name!r}, weight {weight.path!r} "
                              f"({count} of {value.size} values)")
    if broken:
        more = f"; and {len(broken) - _NAMED} more weights" if len(broken) > _NAMED else ""
        raise ValueError(
            "`model` must have finite weights, but some hold NaN or infinity: "
            f"{'; '.join(broken[:_NAMED])}{more}. Its relevances and any model pruned from it "
            "would be meaningless. Load weights saved before the training "
            "diverged (or retrain, e.g. with a lower learning rate), then prune."
        )
