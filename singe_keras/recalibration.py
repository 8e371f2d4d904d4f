"""BatchNormalization re-estimation: moving statistics that match the model again.

Removing channels changes what every later BatchNormalization sees, so its
moving mean and variance (estimated on the unpruned model) no longer match
its inputs, and the pruned model in inference mode can be near chance until
they are re-estimated (benchmarks/README.md, "CIFAR-10: SInGE against the
baselines"). `recalibrate_batchnorm` re-estimates them on a few batches, as an
exact average rather than a moving one.
"""

import keras
import numpy as np

from singe_keras import checks
from singe_keras import data as data_lib
from singe_keras import distribute
from singe_keras import graph as graph_lib
from singe_keras import user_warning


class BatchNormStatistics(keras.Model):
    """Runs a traced model and returns the batch moments of its BatchNormalizations.

    Every BatchNormalization in `layers` normalizes its input with the batch
    mean and variance, as in training mode; every other layer runs in
    inference mode (Dropout and noise layers are identities, random
    augmentation layers do nothing). The output is, per call of such a layer
    in execution order, its input's `(mean, variance)` over all axes but the
    channel axis; the variance is the biased one Keras's BatchNormalization
    uses. No variable changes.

    Args:
        graph: a `CouplingGraph` of the model.
        layers: the BatchNormalization layers to run in training mode.
    """

    def __init__(self, graph, layers, name=None):
        super().__init__(name=name or f"{graph.model.name}_batchnorm_statistics")
        self.graph = graph
        self.traced_layers = [n.layer for n in graph.layer_nodes()]
        self._normalized = {id(layer) for layer in layers}
        self.calls = [n for n in graph.nodes if id(n.layer) in self._normalized]

    def call(self, inputs):
        scope = self.graph.scope
        values = dict(zip(scope.inputs, keras.tree.flatten(inputs)))
        moments = []
        for node in self.graph.nodes:
            if id(node.layer) in self._normalized:
                outputs, mean, variance = _normalize(node.layer, values[node.inputs[0]])
                moments += [mean, variance]
            else:
                outputs = node(values)
            values.update(zip(node.outputs, outputs))
        return moments


def _normalize(layer, inputs):
    """`layer` in training mode, as Keras computes it, and the batch moments."""
    x = keras.ops.cast(inputs, keras.backend.result_type(inputs.dtype, "float32"))
    axis = layer.axis % len(x.shape)
    mean, variance = keras.ops.moments(x, [a for a in range(len(x.shape)) if a != axis])
    outputs = keras.ops.batch_normalization(
        x, mean, variance, axis=axis, offset=layer.beta, scale=layer.gamma,
        epsilon=layer.epsilon,
    )
    return [keras.ops.cast(outputs, layer.compute_dtype)], mean, variance


def recalibrate_batchnorm(
    model: keras.Model, dataset=None, batches: int = 20, batch_size: int = 32, *, data=None
) -> None:
    """Re-estimates the moving statistics of every BatchNormalization of a model.

    Use it after changing a model's weights outside of training (pruning,
    weight surgery, quantization): it sets each BatchNormalization's
    `moving_mean` and `moving_variance`, in place, to the exact average over
    `batches` batches of `dataset` of the per-batch mean and variance of that
    layer's inputs. "Exact" means the arithmetic mean, with equal weight per
    batch, of the same per-batch moments Keras's moving average uses (the
    batch mean, and the biased batch variance over all axes but the channel
    axis), accumulated in float64: what the moving average would converge to
    if the inputs were stationary, with no decay and no dependence on the
    initial values. It is not the variance of all the samples pooled (which
    adds the spread of the batch means), nor Bessel-corrected.

    The BatchNormalizations run in training mode: each sees its inputs
    normalized by the batch statistics of the ones before it, as during
    `fit` (on a pruned ResNet-20 this lifts one-shot pruning at 50% of the
    FLOPs from ~25% to ~57% top-1). Every other layer runs in inference
    mode: Dropout would otherwise inflate the variances that later layers
    see, statistics that inference never meets (the "variance shift" of Li
    et al., "Understanding the Disharmony between Dropout and Batch
    Normalization by Variance Shift", CVPR 2019). Nested models are
    included. A layer called several times averages over all its calls.
    BatchNormalizations with `trainable=False` keep their statistics (Keras
    freezes them in that case); subclasses of BatchNormalization and layers
    with `renorm=True` also keep theirs, with a warning. The momenta are not
    touched, and nothing but the moving statistics changes.

    Args:
        model: a functional or Sequential `keras.Model` (nested models
            included).
        dataset: `x`, `(x,)`, `(x, y)` or `(x, y, sample_weight)` arrays, a
            batched `tf.data.Dataset` or a `keras.utils.PyDataset`; labels
            and weights are not used. Arrays are read in slices of
            `batch_size`, in order.
        batches: how many batches to average over (all of `dataset` if it has
            fewer). Defaults to `20`.
        batch_size: rows per batch when `dataset` holds arrays. Defaults to
            `32`.
        data: the former name of `dataset`, deprecated.

    Raises:
        ValueError: for a missing `dataset`, a non-positive `batches` or `batch_size`, a model
            with several inputs or outputs, or unusable data.
        TypeError: for a model that is not functional or Sequential, or data
            of the wrong type.

    Example:

    ```python
    pruned = singe_keras.prune(model, (x, y), target_flops=0.5, finetune_steps=0,
                               recalibration_batches=0)
    singe_keras.recalibrate_batchnorm(pruned, x_train, batches=50, batch_size=64)
    ```
    """
    dataset = checks.renamed("recalibrate_batchnorm", "dataset", dataset, "data", data)
    if dataset is None:
        raise ValueError("`dataset` is required: the inputs to re-estimate the statistics on.")
    for argument, value in (("batches", batches), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(
                f"`{argument}` must be a positive integer. Received: {argument}={value!r}"
            )
    data_lib.check_data(dataset, model, "dataset", targets=False)
    recalibrate_on(model, data_lib.input_batches(dataset, batch_size, batches))


def recalibrate_on(model, inputs):
    """`recalibrate_batchnorm` on an iterable of input batches, read once.

    For callers that validated the data already: a `tf.data` stream that
    reshuffles draws its order per iterator, so reading it once keeps a
    seeded run deterministic.
    """
    graph = graph_lib.CouplingGraph(model, warn=False)
    layers, skipped = [], []
    for node in graph.nodes:
        layer = node.layer
        if not isinstance(layer, keras.layers.BatchNormalization) or not layer.trainable:
            continue
        if type(layer) is keras.layers.BatchNormalization and not layer.renorm:
            layers.append(layer)
        else:
            skipped.append(node.path)
    if skipped:
        user_warning.warn(
            "These BatchNormalization layers are subclasses or use `renorm`, and "
            f"keep their moving statistics: {sorted(set(skipped))}.",
        )
    layers = list({id(layer): layer for layer in layers}.values())
    if not layers:
        return
    statistics = BatchNormStatistics(graph, layers)
    # Whole batches on this worker, also under a strategy: batch moments of
    # per-replica shares would differ from the batch's.
    moments_of = distribute.whole_batches(statistics)
    sums = {id(layer): [0.0, 0.0, 0] for layer in layers}
    for x in inputs:
        moments = moments_of(x)
        for index, node in enumerate(statistics.calls):
            total = sums[id(node.layer)]
            total[0] = total[0] + np.asarray(moments[2 * index], "float64")
            total[1] = total[1] + np.asarray(moments[2 * index + 1], "float64")
            total[2] += 1
    for layer in layers:
        mean, variance, count = sums[id(layer)]
        layer.moving_mean.assign((mean / count).astype(layer.moving_mean.dtype))
        layer.moving_variance.assign((variance / count).astype(layer.moving_variance.dtype))
