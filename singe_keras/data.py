"""Data: the forms users pass, for scoring, fine-tuning and evaluation.

Users pass a `tf.data.Dataset` of `(x, y)` or `(x, y, sample_weight)`, a tuple
of arrays, or a `keras.utils.PyDataset`. Inputs-only data (an array `x`, a
tuple `(x,)`, or a dataset of `x`) serves where no labels are needed: BatchNorm
re-estimation, and label-free pruning (targets from a teacher, `Labelled`).
Scoring streams it in batches of one fixed size (the last one padded with
zero-weight rows) so that a compiled scoring step is traced once, and stops
after `samples` examples. Fine-tuning reads it as an endless, deterministic
stream; `fit`/`evaluate` take it as keyword arguments. This is the one module that knows the data forms.
"""

import itertools

import keras
import numpy as np
import tensorflow as tf

from singe_keras import distribute


class Labelled:
    """Inputs-only data whose targets are computed from the inputs.

    Batches are `(x, targets(x))`, with arrays read `batch_size` rows at a
    time (so a large array is never passed to `targets` at once).
    """

    def __init__(self, data, targets, batch_size=256):
        self.data, self.targets, self.batch_size = data, targets, batch_size


def _as_tuple(item):
    return tuple(item) if isinstance(item, (tuple, list)) else (item,)


def _source_batches(data):
    """The user's batches, each a tuple `(x,)`, `(x, y)` or `(x, y, sample_weight)`."""
    if isinstance(data, Labelled):
        for batch in _source_batches(data.data):
            x = np.asarray(batch[0])
            for start in range(0, len(x), data.batch_size):
                chunk = x[start : start + data.batch_size]
                yield (chunk, np.asarray(data.targets(chunk)))
    elif isinstance(data, tf.data.Dataset):
        for item in data.as_numpy_iterator():
            yield _as_tuple(item)
    elif isinstance(data, keras.utils.PyDataset):
        for index in range(len(data)):
            yield _as_tuple(data[index])
    else:
        yield _as_tuple(data)


def _check_structure(batch, argument, targets=True):
    if len(batch) not in ((2, 3) if targets else (1, 2, 3)):
        raise ValueError(
            f"`{argument}` must yield `(x, y)` or `(x, y, sample_weight)` "
            f"tuples" + ("" if targets else ", or inputs `x` alone")
            + f". Received an element with {len(batch)} items."
        )


def has_targets(data):
    """Whether `data` holds targets `y` (not inputs only)."""
    return len(next(iter(_source_batches(data)))) > 1


def _is_array(data):
    return hasattr(data, "shape") and hasattr(data, "dtype")


def check_data(data, model, argument="data", targets=True):
    """Raises a clear error if `data` cannot feed `model` (before any work).

    Args:
        data: a `tf.data.Dataset`, a tuple of arrays `(x, y[, sample_weight])`
            or a `keras.utils.PyDataset`; with `targets=False`, also inputs
            only (`x`, `(x,)`, or a dataset of `x`).
        model: the model the data feeds (single input and output).
        argument: the argument name used in error messages.
        targets: whether `data` must hold targets `y`. Defaults to `True`.

    Raises:
        TypeError: if `data` is not one of these forms.
        ValueError: if it is empty, is not `(x, y[, sample_weight])`, has
            inputs of the wrong shape or parts of different lengths, or the
            model has several inputs or outputs.
    """
    if not (isinstance(data, (tf.data.Dataset, keras.utils.PyDataset, tuple, list, Labelled))
            or _is_array(data)):
        raise TypeError(
            f"`{argument}` must be a tf.data.Dataset, a keras.utils.PyDataset, a "
            f"tuple `(x, y)` of arrays or an array `x` of inputs. Received: "
            f"{argument} of type {type(data).__name__}"
        )
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise ValueError(
            "Scoring and fine-tuning data are supported for single-input, "
            f"single-output models; this model has {len(model.inputs)} inputs and "
            f"{len(model.outputs)} outputs. Tracing, gating, rebuilding and cost "
            "counting work on it; use a magnitude criterion ('l1', 'l2', "
            "'bn_scale') without fine-tuning, or prune a single-output copy."
        )
    first = next(iter(_source_batches(data)), None)
    if first is None:
        raise ValueError(f"`{argument}` is empty.")
    if targets and len(first) == 1:
        raise ValueError(
            f"`{argument}` holds inputs only, but targets are needed here: pass "
            "`(x, y)`. (Label-free pruning is `singe_keras.prune` with inputs-only "
            "`dataset`; to score without labels, pass `(x, teacher.predict(x))` "
            "with a criterion whose loss is a `singe_keras.DistillationLoss`.)"
        )
    _check_structure(first, argument, targets)
    x = np.asarray(first[0])
    expected = tuple(model.input_shape[1:])
    if x.ndim != len(expected) + 1 or any(
        e is not None and e != s for e, s in zip(expected, x.shape[1:])
    ):
        raise ValueError(
            f"`{argument}` must hold batches of inputs of shape (batch,) + "
            f"{expected}. Received inputs of shape {x.shape}. If it is a "
            "tf.data.Dataset of single examples, call `.batch(...)` on it."
        )
    if len(x) == 0:
        raise ValueError(f"`{argument}` is empty.")
    lengths = [len(x)] + [np.shape(part)[0] if np.ndim(part) else 0 for part in first[1:]]
    if len(set(lengths)) > 1:
        names = ("inputs", "labels", "sample weights")
        counts = ", ".join(f"{n} {name}" for n, name in zip(lengths, names))
        raise ValueError(
            f"`{argument}` must hold as many labels (and sample weights) as "
            f"inputs. Received {counts}"
            + (" in its first batch." if is_stream(data) else ".")
        )


def first_batch_size(data):
    """Rows in the first batch `data` yields (all of them, for arrays)."""
    return len(next(iter(_source_batches(data)))[0])


def fixed_batch_count(data, samples, batch_size):
    """How many batches `fixed_batches` yields; `None` for a stream (not counted)."""
    if isinstance(data, Labelled):
        return fixed_batch_count(data.data, samples, batch_size)
    if is_stream(data):
        return None
    return -(-min(len(_as_tuple(data)[0]), samples) // batch_size)


def fixed_batches(data, samples, batch_size):
    """Yields `(x, y, sample_weight)` NumPy batches of exactly `batch_size` rows.

    The stream stops after `samples` examples (or when `data` ends); the last
    batch is padded with copies of its first row whose sample weight is 0.
    Batches are cut from the user's batches (views of arrays), so at most one
    batch of `batch_size` rows is copied at a time.
    """
    pending, filled, count = [], 0, 0  # pieces of the next batch, their rows
    for batch in _source_batches(data):
        _check_structure(batch, "data")
        x, y = np.asarray(batch[0]), np.asarray(batch[1])
        weight = (
            np.asarray(batch[2], "float32")
            if len(batch) == 3
            else np.ones(len(x), "float32")
        )
        take = min(len(x), samples - count)
        count += take
        start = 0
        while start < take:
            stop = min(take, start + batch_size - filled)
            pending.append((x[start:stop], y[start:stop], weight[start:stop]))
            filled += stop - start
            start = stop
            if filled == batch_size:
                yield tuple(np.concatenate(parts) for parts in zip(*pending))
                pending, filled = [], 0
        if count >= samples:
            break
    if filled:
        x, y, weight = (np.concatenate(parts) for parts in zip(*pending))
        pad = batch_size - filled
        yield (
            np.concatenate([x, np.repeat(x[:1], pad, axis=0)]),
            np.concatenate([y, np.repeat(y[:1], pad, axis=0)]),
            np.concatenate([weight, np.zeros(pad, "float32")]),
        )


def input_batches(data, batch_size=None, limit=None):
    """Yields the model inputs `x` of `data`, batch by batch, as NumPy arrays.

    Takes the forms `check_data` takes (labels unused) and inputs alone: an
    array `(N, ...)`, a dataset of input batches, or a callable returning an
    iterator of `[input_batch]` lists (TFLite's representative-dataset
    convention).

    Args:
        data: the data, in any of these forms.
        batch_size: arrays are read in consecutive slices of this many rows;
            `None` reads them as one batch. Defaults to `None`.
        limit: stop after this many batches; `None` reads them all.
            Defaults to `None`.
    """
    if callable(data) and not is_stream(data):
        batches = (np.asarray(_as_tuple(batch)[0]) for batch in data())
    elif is_stream(data):
        batches = (np.asarray(batch[0]) for batch in _source_batches(data))
    else:
        x = np.asarray(_as_tuple(data)[0])
        size = batch_size or max(len(x), 1)
        batches = (x[start : start + size] for start in range(0, len(x), size))
    return itertools.islice(batches, limit)


def is_stream(data):
    """Whether `data` is a `tf.data.Dataset` or a `PyDataset` (not arrays)."""
    return isinstance(data, (tf.data.Dataset, keras.utils.PyDataset))


def keras_arguments(data, batch_size):
    """`data` as the keyword arguments of `Model.fit` and `Model.evaluate`."""
    if is_stream(data):
        return {"x": data}
    x, *rest = _as_tuple(data)
    return {
        "x": x, "y": rest[0] if rest else None,
        "sample_weight": rest[1] if len(rest) > 1 else None, "batch_size": batch_size,
    }


def training_stream(dataset, batch_size, seed):
    """The training data as an endless, deterministic `tf.data.Dataset`."""
    return epoch(dataset, batch_size, seed).repeat()


def epoch(dataset, batch_size, seed):
    """One epoch of the training data as a `tf.data.Dataset`, reshuffled at each pass.

    Arrays are shuffled (with `seed`) and cut into batches of `batch_size`;
    a dataset is read as it is; a `PyDataset` in its order. Under a
    strategy, every batch is cut to a multiple of the replica count (a batch
    of fewer rows is skipped): a replica without rows fails in Keras's
    BatchNormalization, and equal shares make the mean of the replicas'
    mean losses the batch's mean loss.
    """
    if isinstance(dataset, tf.data.Dataset):
        batches = dataset
    elif isinstance(dataset, keras.utils.PyDataset):
        signature = tuple(
            tf.TensorSpec((None,) + np.shape(part)[1:], tf.as_dtype(np.asarray(part).dtype))
            for part in _as_tuple(dataset[0])
        )
        batches = tf.data.Dataset.from_generator(
            lambda: (_as_tuple(dataset[i]) for i in range(len(dataset))),
            output_signature=signature,
        )
    else:
        arrays = tuple(np.asarray(part) for part in _as_tuple(dataset))
        batches = (
            tf.data.Dataset.from_tensor_slices(arrays)
            .shuffle(len(arrays[0]), seed=seed, reshuffle_each_iteration=True)
            .batch(batch_size)
        )
    strategy = distribute.current_strategy()
    if strategy is None or strategy.num_replicas_in_sync == 1:
        return batches
    replicas = strategy.num_replicas_in_sync

    def whole_shares(*batch):
        rows = tf.shape(tf.nest.flatten(batch)[0])[0]
        kept = tf.nest.map_structure(lambda part: part[: rows - rows % replicas], batch)
        return kept if len(batch) > 1 else kept[0]

    return (batches.map(whole_shares)
            .filter(lambda *batch: tf.shape(tf.nest.flatten(batch)[0])[0] > 0))
