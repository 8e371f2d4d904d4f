"""Checks of the user's model that `prune`, `score` and `PruningCallback` share."""

import keras
import numpy as np

# The error names this many broken weights (a diverged model has NaN in all).
_NAMED = 5


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
