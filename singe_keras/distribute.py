"""The `tf.distribute` strategy of the user's scope: replicas, workers, chief (TensorFlow).

Like Keras's `fit`, `singe_keras` uses the strategy whose scope it is called
in (`with strategy.scope(): ...`): models rebuilt there hold mirrored
variables, fine-tuning goes through `fit` (under a multi-worker strategy,
where `fit` cannot run, through `distributed_training.fit`), and scoring splits each batch over
the replicas. Every worker of a multi-worker strategy reads the same scoring
batches and computes the rows of its own replicas; the per-unit sums are then
added over the workers, so that every worker gets the same relevances, the
same plan and the same pruned model. Every worker runs the same saving code
(saving may run collective ops), but only the chief's files are kept.
"""

import contextlib

import numpy as np
import tensorflow as tf


def current_strategy():
    """The strategy of the enclosing scope, or `None` outside any scope."""
    return tf.distribute.get_strategy() if tf.distribute.has_strategy() else None


def is_multi_worker(strategy=None):
    """Whether `strategy` (by default the enclosing scope's) spans several workers."""
    strategy = strategy or current_strategy()
    # One replica (the default strategy included, which has no worker
    # devices) is one worker.
    return strategy is not None and strategy.num_replicas_in_sync > 1 and (
        strategy.num_replicas_in_sync > len(strategy.extended.worker_devices))


def model_scope(model):
    """The scope of the strategy `model` was created in, as Keras's `fit` uses it."""
    strategy = getattr(model, "distribute_strategy", None)
    return strategy.scope() if strategy is not None else contextlib.nullcontext()


def is_chief():
    """Whether this process writes files: always, except on a multi-worker's non-chief.

    The rule of TensorFlow's multi-worker training: the task `"chief"`, or
    worker 0 of a cluster without one.
    """
    resolver = getattr(current_strategy(), "cluster_resolver", None)
    if resolver is None or resolver.task_type is None:
        return True
    if resolver.task_type in ("chief", "evaluator"):
        return True
    jobs = resolver.cluster_spec().jobs
    return "chief" not in jobs and resolver.task_type == "worker" and resolver.task_id == 0


def whole_batches(function):
    """`function` compiled to run on whole batches on this worker, not split over replicas.

    For computations every worker makes alike from the same data (they
    need no replicas, and their results must not depend on the strategy).
    Returns NumPy values.
    """
    compiled = tf.function(function, reduce_retracing=True)
    return lambda *arguments: tf.nest.map_structure(np.asarray, compiled(*arguments))


class ReplicatedStep:
    """Runs a per-row step with its rows split over the replicas of a strategy.

    Args:
        function: `function(*row_arguments, *shared_arguments)` returning one
            row of results per input row; traced once per shape.
        strategy: a `tf.distribute.Strategy`, or `None` for one device.
        row_axes: per argument, the axis along which its rows lie, or `None`
            for an argument every replica gets whole.

    Attributes:
        replicas: the number of replicas in sync (1 without a strategy); the
            row count of a call must be a multiple of it.
        function: the `tf.function` that runs on the replicas.
    """

    def __init__(self, function, strategy, row_axes):
        self.strategy, self.row_axes = strategy, row_axes
        self.replicas = strategy.num_replicas_in_sync if strategy else 1
        if strategy is None:
            self.function = tf.function(function)
            return

        def replica_function(*arguments):
            context = tf.distribute.get_replica_context()
            return function(*arguments), context.replica_id_in_sync_group

        def run(*arguments):
            results, ids = strategy.run(replica_function, args=arguments)
            local = strategy.experimental_local_results
            return local(results), local(ids)

        self.function = tf.function(run)

    def __call__(self, *arguments):
        """The results of this worker's rows, zero in other workers' rows (NumPy).

        The row count must be a multiple of `replicas`.
        """
        if self.strategy is None:
            return np.asarray(self.function(*arguments))
        rows = next(a.shape[axis] for a, axis in zip(arguments, self.row_axes)
                    if axis is not None)
        share = rows // self.replicas

        def shard(context):
            start = context.replica_id_in_sync_group * share
            return tuple(
                tf.constant(a if axis is None
                            else np.take(a, np.arange(start, start + share), axis=axis))
                for a, axis in zip(arguments, self.row_axes)
            )

        results, ids = self.function(
            *self.strategy.experimental_distribute_values_from_function(shard))
        output = None
        for result, replica in zip(results, ids):
            result = np.asarray(result)
            if output is None:
                output = np.zeros((rows,) + result.shape[1:], result.dtype)
            start = int(replica) * share
            output[start : start + share] = result
        return output

    def sum_over_workers(self, value):
        """`value` (this worker's sum, a NumPy array) summed over all workers."""
        if self.strategy is None:
            return value
        value = np.asarray(value)
        first = min(self.strategy.experimental_local_results(
            self.strategy.experimental_distribute_values_from_function(
                lambda context: context.replica_id_in_sync_group)))
        # One replica per worker brings the worker's sum, the others zeros.
        contributions = self.strategy.experimental_distribute_values_from_function(
            lambda context: tf.constant(
                value if context.replica_id_in_sync_group == first else np.zeros_like(value)
            )
        )
        return self.strategy.reduce(
            tf.distribute.ReduceOp.SUM, contributions, axis=None).numpy()
