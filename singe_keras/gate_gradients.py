"""Per-sample gradients of the loss with respect to the gates (TensorFlow).

The only module that uses `tf.GradientTape` and `tf.function`; other Keras
backends would add their own version of `attribution_step`.

One step evaluates a batch of `B` samples at `P` points of a gate path at once:
the batch is tiled `P` times, each copy of each sample runs with its own gate
vector (a per-sample gate tensor, so a row's loss depends only on its own
gates), and the gradient of the summed loss with respect to the gate rows is
each row's own gradient. The step then weights and masks these gradients
(the quadrature of the path integral) and returns, per sample and unit, their
sum over the `P` points. Path positions are tensors: changing them never
retraces. Under a `tf.distribute` strategy, the samples of a step are split
over the replicas (`singe_keras.distribute`).
"""

import json
import weakref

import keras
import tensorflow as tf

from singe_keras import distribute

_STEPS = weakref.WeakKeyDictionary()


def attribution_step(gated, loss_fn):
    """The compiled step of `gated` and `loss_fn`, traced once per batch shape.

    The step runs on the replicas of the strategy of the current scope (one
    device outside any scope).

    Args:
        gated: a `GatedModel`.
        loss_fn: `loss_fn(y_true, y_pred)` returning one loss per sample.

    Returns:
        A `singe_keras.distribute.ReplicatedStep`
        `step(x, y, sample_weight, gates, weights, masks)` where `gates` and
        `masks` are `(P, B, num_units)` and `weights` is `(P,)`; it returns
        the `(B, num_units)` NumPy sum over points of
        `weights[p] * masks[p, b] * dloss(x_b)/dgates[p, b]` (zero in the
        rows of other workers). `B` must be a multiple of `step.replicas`.
    """
    cache = _STEPS.setdefault(gated, {})
    strategy = distribute.current_strategy()
    # Equal Keras losses share a step; other callables are told apart by identity.
    key = (
        json.dumps(keras.losses.serialize(loss_fn), sort_keys=True, default=str)
        if isinstance(loss_fn, keras.losses.Loss)
        else loss_fn,
        id(strategy),  # the step holds the strategy: its id stays its own
    )
    if key not in cache:
        cache[key] = distribute.ReplicatedStep(
            _make_step(gated, loss_fn), strategy, row_axes=(0, 0, 0, 1, None, 1)
        )
    return cache[key]


def _make_step(gated, loss_fn):
    # A weak reference: the cache's value must not keep its key alive.
    gated = weakref.ref(gated)

    def step(x, y, sample_weight, gates, weights, masks):
        points, batch = tf.shape(gates)[0], tf.shape(gates)[1]
        tile = lambda t: tf.tile(t, [points] + [1] * (len(t.shape) - 1))
        rows = tf.reshape(gates, [points * batch, -1])  # point-major, like `tile`
        with tf.GradientTape() as tape:
            tape.watch(rows)
            predictions = gated()(keras.tree.map_structure(tile, x), gates=rows, training=False)
            losses = per_sample(loss_fn, tile(y), predictions) * tile(sample_weight)
            total = tf.reduce_sum(losses)
        gradients = tape.gradient(total, rows)
        gradients = tf.reshape(gradients, [points, batch, -1])
        return tf.einsum("p,pbu,pbu->bu", weights, gradients, masks)

    return step


def per_sample(loss_fn, y_true, y_pred):
    """`loss_fn`'s value per sample, averaged over any axes after the batch."""
    losses = tf.convert_to_tensor(loss_fn(y_true, y_pred))
    if losses.shape.rank == 0:
        raise ValueError(
            "The loss must return one value per sample, but it returned a "
            "scalar. Pass a Keras loss (its reduction is turned off for "
            "scoring) or a function `loss(y_true, y_pred)` without reduction, "
            "e.g. `keras.losses.sparse_categorical_crossentropy`."
        )
    if losses.shape.rank > 1:
        losses = tf.reduce_mean(losses, axis=list(range(1, losses.shape.rank)))
    return tf.cast(losses, "float32")
