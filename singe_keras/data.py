"""Data: the forms users pass, for scoring, fine-tuning and evaluation.

Users pass a `tf.data.Dataset` of `(x, y)` or `(x, y, sample_weight)`, a tuple
of arrays, or a `keras.utils.PyDataset`. Scoring streams it in batches of one
fixed size (the last one padded with zero-weight rows) so that a compiled
scoring step is traced once, and stops after `samples` examples. Fine-tuning
reads it as an endless, deterministic stream; `fit`/`evaluate` take it as
keyword arguments. This is the one module that knows the data forms.
"""

import keras
import numpy as np
import tensorflow as tf


def _source_batches(data):
    """The user's batches, each a tuple `(x, y)` or `(x, y, sample_weight)`."""
    if isinstance(data, tf.data.Dataset):
        yield from data.as_numpy_iterator()
    elif isinstance(data, keras.utils.PyDataset):
        for index in range(len(data)):
            yield data[index]
    else:
        yield tuple(data)


def _check_structure(batch, argument):
    if not isinstance(batch, (tuple, list)) or len(batch) not in (2, 3):
        raise ValueError(
            f"`{argument}` must yield `(x, y)` or `(x, y, sample_weight)` "
            f"tuples. Received an element of type {type(batch).__name__}"
            + (f" with {len(batch)} items" if isinstance(batch, (tuple, list)) else "")
            + "."
        )


def check_data(data, model, argument="data"):
    """Raises a clear error if `data` cannot feed `model` (before any work).

    Args:
        data: a `tf.data.Dataset`, a tuple of arrays `(x, y[, sample_weight])`
            or a `keras.utils.PyDataset`.
        model: the model the data feeds (single input and output).
        argument: the argument name used in error messages.
    """
    if not isinstance(data, (tf.data.Dataset, keras.utils.PyDataset, tuple, list)):
        raise TypeError(
            f"`{argument}` must be a tf.data.Dataset, a keras.utils.PyDataset or "
            f"a tuple `(x, y)` of arrays. Received: {argument} of type "
            f"{type(data).__name__}"
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
    _check_structure(first, argument)
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


def input_batches(data):
    """Yields the model inputs of `data`, batch by batch, as NumPy arrays.

    Takes the forms `check_data` takes, and inputs alone: an array
    `(N, ...)`, a `tf.data.Dataset` of input batches, or a callable returning
    an iterator of `[input_batch]` lists (TFLite's representative-dataset
    convention).

    Args:
        data: the data, in any of these forms.
    """
    if isinstance(data, (tuple, list)):
        batches = [data]
    elif callable(data) and not is_stream(data):
        batches = data()
    elif is_stream(data):
        batches = _source_batches(data)
    else:
        batches = [data]
    for batch in batches:
        yield np.asarray(batch[0] if isinstance(batch, (tuple, list)) else batch)


def first_batch_size(data):
    """Rows in the first batch `data` yields (all of them, for arrays)."""
    return len(next(iter(_source_batches(data)))[0])


def fixed_batches(data, samples, batch_size):
    """Yields `(x, y, sample_weight)` NumPy batches of exactly `batch_size` rows.

    The stream stops after `samples` examples (or when `data` ends); the last
    batch is padded with copies of its first row whose sample weight is 0.
    """
    buffer, count = [], 0
    for batch in _source_batches(data):
        _check_structure(batch, "data")
        x, y = np.asarray(batch[0]), np.asarray(batch[1])
        weight = (
            np.asarray(batch[2], "float32")
            if len(batch) == 3
            else np.ones(len(x), "float32")
        )
        take = min(len(x), samples - count)
        buffer.append((x[:take], y[:take], weight[:take]))
        count += take
        while sum(len(b[0]) for b in buffer) >= batch_size:
            rows = [np.concatenate(parts) for parts in zip(*buffer)]
            yield tuple(r[:batch_size] for r in rows)
            buffer = [tuple(r[batch_size:] for r in rows)]
        if count >= samples:
            break
    rows = [np.concatenate(parts) for parts in zip(*buffer)] if buffer else []
    if rows and len(rows[0]):
        pad = batch_size - len(rows[0])
        x, y, weight = rows
        yield (
            np.concatenate([x, np.repeat(x[:1], pad, axis=0)]),
            np.concatenate([y, np.repeat(y[:1], pad, axis=0)]),
            np.concatenate([weight, np.zeros(pad, "float32")]),
        )


def is_stream(data):
    """Whether `data` is a `tf.data.Dataset` or a `PyDataset` (not arrays)."""
    return isinstance(data, (tf.data.Dataset, keras.utils.PyDataset))


def keras_arguments(data, batch_size):
    """`data` as the keyword arguments of `Model.fit` and `Model.evaluate`."""
    if is_stream(data):
        return {"x": data}
    x, y, *weight = data
    return {
        "x": x, "y": y, "sample_weight": weight[0] if weight else None,
        "batch_size": batch_size,
    }


def training_stream(dataset, batch_size, seed):
    """The training data as an endless, deterministic `tf.data.Dataset`."""
    if isinstance(dataset, tf.data.Dataset):
        return dataset.repeat()
    if isinstance(dataset, keras.utils.PyDataset):
        signature = tuple(
            tf.TensorSpec((None,) + np.shape(part)[1:], tf.as_dtype(np.asarray(part).dtype))
            for part in dataset[0]
        )
        return tf.data.Dataset.from_generator(
            lambda: (dataset[i % len(dataset)] for i in range(2**62)),
            output_signature=signature,
        )
    arrays = tuple(np.asarray(part) for part in dataset)
    return (
        tf.data.Dataset.from_tensor_slices(arrays)
        .shuffle(len(arrays[0]), seed=seed, reshuffle_each_iteration=True)
        .batch(batch_size)
        .repeat()
    )
