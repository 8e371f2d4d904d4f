"""Fine-tuning under a multi-worker strategy, where Keras's `fit` cannot run (TensorFlow).

Keras 3's `fit` fails under `tf.distribute.MultiWorkerMirroredStrategy`
(keras-team/keras#20585, open as of Keras 3.15): before training it reduces
a distributed input batch to build the model, and after every step it
reduces the scalar loss over a batch axis. Neither is part of the training
step itself, so `fit` here runs the step `fit` runs, the model's own
`train_step` (its compiled loss, or a `Distiller`'s, sample weights, the
compiled metrics, BatchNormalization in training mode, the optimizer's
update with gradients summed over all replicas), on every replica with
`strategy.run`, and reads the metrics at the end of each epoch as `fit`
reports them. At the end, the replicas' BatchNormalization moving
statistics (which each replica updates from its own rows) are averaged,
so that every worker holds the same model.

Each worker reads the same batches and keeps its replicas' share of every
batch (`tf.data`'s `AutoShardPolicy.DATA`); `data.epoch` cuts each batch to
a multiple of the replica count. Builds the compiled loss, metrics and
optimizer as `fit` does, through `singe_keras.internals.symbolic_build`.
"""

import keras
import tensorflow as tf

from singe_keras import internals


def fit(model, dataset, epochs=1, verbose=1):
    """Trains `model` on `dataset` like `model.fit`, on the replicas of its strategy.

    Args:
        model: a compiled `keras.Model` created in the strategy's scope.
        dataset: a `tf.data.Dataset` of whole batches (`(x,)`, `(x, y)` or
            `(x, y, sample_weight)`); every worker must read the same one,
            and each batch's rows must be a multiple of the replica count
            (`data.epoch`).
        epochs: passes over `dataset`. Defaults to `1`.
        verbose: 0 (silent) or 1 (a progress bar per epoch). Defaults to `1`.

    Returns:
        A `keras.callbacks.History` whose `history` holds, per epoch, the
        metrics `fit` would report (`loss` and the compiled metrics).

    Example:

    ```python
    strategy = tf.distribute.MultiWorkerMirroredStrategy()  # TF_CONFIG set
    with strategy.scope():
        model = keras.models.load_model("model.keras")
        history = distributed_training.fit(model, data.epoch((x, y), 64, seed=0))
    ```
    """
    strategy = model.distribute_strategy
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    batches = strategy.experimental_distribute_dataset(dataset.with_options(options))
    with strategy.scope():
        # What `fit` builds first (the compiled loss and metrics, the
        # optimizer), from the batch's shapes.
        internals.symbolic_build(model, dataset.element_spec)
    step = tf.function(lambda batch: strategy.run(model.train_step, args=(batch,)),
                       reduce_retracing=True)
    cardinality = int(dataset.cardinality())
    history = keras.callbacks.History()
    history.set_model(model)
    history.on_train_begin()
    for index in range(epochs):
        model.reset_metrics()
        progress = keras.utils.Progbar(cardinality if cardinality >= 0 else None,
                                       verbose=verbose)
        steps = 0
        for batch in batches:
            step(batch)
            steps += 1
            progress.update(steps)
        # Reading the metrics sums them over every replica of every worker.
        logs = {name: float(value) for name, value in model.get_metrics_result().items()}
        progress.update(steps, values=list(logs.items()), finalize=True)
        history.on_epoch_end(index, logs)
    _average_over_replicas(strategy, [
        v for v in model.non_trainable_variables if keras.backend.is_float_dtype(v.dtype)])
    return history


def _average_over_replicas(strategy, variables):
    """Sets every variable, on every replica, to its mean over all replicas.

    BatchNormalization's moving statistics are updated by each replica from
    its own share of every batch (as under `fit` on one host, where the
    first replica's copy is what is read). Their update is linear in the
    batch statistics, so the mean of the replicas' moving averages is the
    moving average of their mean batch statistics, whether averaged after
    every step or once at the end; and it is the same on every worker.
    """
    def average():
        context = tf.distribute.get_replica_context()
        means = context.all_reduce(tf.distribute.ReduceOp.MEAN,
                                   [tf.identity(v.value) for v in variables])
        for variable, mean in zip(variables, means):
            variable.assign(mean)

    if variables:
        tf.function(lambda: strategy.run(average))()
