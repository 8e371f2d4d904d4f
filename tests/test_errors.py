"""The README's "Errors" table is what the code raises.

Each row of the table names a bad input and the beginning of its message
(`…` stands for a part that varies, such as a path). Every row has a case
here that triggers it, and every case has a row.
"""

import re
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

import singe_keras
import zoo

README = Path(__file__).resolve().parents[1] / "README.md"
CE = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def _table():
    """`{case: (entry point, message)}` from the README's "Errors" section."""
    section = README.read_text().split("\n## Errors\n", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[0] not in ("Entry point", "---"):
            entry, case, message = cells
            rows[case] = (entry, message)
    return rows


def _chain(compiled=True):
    model = zoo.build("chain")
    if compiled:
        model.compile(optimizer="sgd", loss=CE)
    return model


def _data(n=16):
    return zoo.sample_inputs(_chain(False), batch=n), np.arange(n) % 3


def _prune(model=None, dataset=None, **kwargs):
    arguments = dict(target_flops=0.5, criterion="l1", finetune_steps=0, verbose=0)
    return singe_keras.prune(model or _chain(), dataset, **{**arguments, **kwargs})


def _with_nan_weight():
    model = _chain()
    kernel = model.get_layer("a_conv").kernel
    value = keras.ops.convert_to_numpy(kernel).copy()
    value[0, 0, 0, 0] = np.nan
    kernel.assign(value)
    return model


def _nan_inputs():
    x, y = _data()
    x[:, 0, 0, 0] = np.nan
    return x, y


def _two_outputs():
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3)(inputs))
    model = keras.Model(inputs, [keras.layers.Dense(3)(x), keras.layers.Dense(2)(x)])
    model.compile(loss=["mse", "mse"])
    return model


class _Subclassed(keras.Model):
    def call(self, x):
        return x


def _other_checkpoint(directory):
    _prune(checkpoint_dir=directory, rounds=2)
    _prune(checkpoint_dir=directory, rounds=2, target_flops=0.4)


def _corrupt_checkpoint(directory):
    _prune(checkpoint_dir=directory, rounds=2)
    (directory / "state.json").write_text("{garbage")
    _prune(checkpoint_dir=directory, rounds=2)


def _fit_with(callback, model=None, data=None, epochs=1):
    model = model or _chain()
    model.fit(*(data or _data()), epochs=epochs, callbacks=[callback], verbose=0)


def _export(model=None, **kwargs):
    return lambda tmp: singe_keras.export_tflite(
        model or _chain(False), **{"path": tmp / "m.tflite", **kwargs})


_DETERMINANT = keras.Model(
    inputs := keras.Input((4, 4)), keras.layers.Lambda(lambda t: tf.linalg.det(t))(inputs)
)

CASES = {
    # prune
    "`target_flops=-0.5`": lambda tmp: _prune(target_flops=-0.5),
    "no target": lambda tmp: _prune(target_flops=None),
    "`target_latency=1.5`": lambda tmp: _prune(target_flops=None, target_latency=1.5),
    "`latency_model=3`": lambda tmp: _prune(target_latency=0.5, latency_model=3),
    "`normalization='latency'` without `target_latency`": lambda tmp: _prune(
        normalization="latency"),
    "`rounds=0` (likewise other counts)": lambda tmp: _prune(rounds=0),
    "`normalization='maximum'`": lambda tmp: _prune(normalization="maximum"),
    "`verbose=3`": lambda tmp: _prune(verbose=3),
    "a target below the smallest model": lambda tmp: _prune(target_flops=1e-6),
    "`ignored_layers=['nope']`": lambda tmp: _prune(ignored_layers=["nope"]),
    "a subclassed model": lambda tmp: _prune(_Subclassed()),
    "no `dataset` for `singe` or fine-tuning": lambda tmp: _prune(criterion="singe"),
    "no loss": lambda tmp: _prune(_chain(False), _data(), finetune_steps=1),
    "no optimizer": lambda tmp: _prune(_chain(False), _data(), finetune_steps=1, loss=CE),
    "a NaN weight": lambda tmp: _prune(_with_nan_weight()),
    "a loss that becomes NaN": lambda tmp: _prune(dataset=_nan_inputs(), finetune_steps=1),
    "`checkpoint_dir` of another call": _other_checkpoint,
    "a corrupt checkpoint": _corrupt_checkpoint,
    "`criterion='best'`": lambda tmp: _prune(criterion="best"),
    "`criterion=3`": lambda tmp: _prune(criterion=3),
    "`IntegratedGradients(steps=0)`": lambda tmp: singe_keras.criteria.IntegratedGradients(steps=0),
    # data (`dataset` in prune, score and the callback)
    "`dataset='x'`": lambda tmp: _prune(dataset="x"),
    "inputs of the wrong shape": lambda tmp: _prune(dataset=(np.zeros((4, 9, 9, 3)), np.zeros(4))),
    "an empty dataset": lambda tmp: _prune(dataset=(np.zeros((0, 8, 8, 3)), np.zeros(0))),
    "`(x[:16], y[:3])`": lambda tmp: _prune(dataset=(_data()[0], _data()[1][:3])),
    "a model with two outputs": lambda tmp: _prune(_two_outputs(), _data()),
    # score
    "no `dataset` for `singe`": lambda tmp: singe_keras.score(_chain()),
    "an uncompiled model, `singe`": lambda tmp: singe_keras.score(_chain(False), _data()),
    "a loss without a per-sample value": lambda tmp: singe_keras.score(
        _chain(), _data(), singe_keras.criteria.IntegratedGradients(
            loss=lambda y, p: tf.reduce_mean(p))),
    "`bn_scale` without BatchNormalization": lambda tmp: singe_keras.score(
        zoo.build("sequential"), criterion="bn_scale"),
    # PruningCallback
    "`singe` without `dataset`": lambda tmp: singe_keras.PruningCallback(target_flops=0.5),
    "weights that become NaN in `fit`": lambda tmp: _fit_with(
        singe_keras.PruningCallback(target_flops=0.5, criterion="l1", rounds=2,
                                    verbose=0),
        data=_nan_inputs(), epochs=2),  # event 1 scores, then training diverges
    # export_tflite
    "`path='model.bin'`": _export(path="model.bin"),
    "a missing folder": _export(path="/no/such/folder/m.tflite"),
    "`quantization='int4'`": _export(quantization="int4"),
    "`quantization='int8'` alone": _export(quantization="int8"),
    "`io_dtype='int16'`": _export(io_dtype="int16"),
    "`verification_samples=0`": _export(verification_samples=0),
    "an unbuilt model": _export(keras.Sequential([keras.layers.Dense(2)])),
    "a model with two inputs or outputs": _export(_two_outputs()),
    "inputs of unknown size": _export(keras.Model(
        inputs := keras.Input((None, None, 3)),
        keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(2, 3)(inputs)))),
    "ops outside the TFLite builtins": _export(_DETERMINANT),
}


def test_every_case_has_a_row_and_every_row_a_case():
    assert sorted(_table()) == sorted(CASES)


@pytest.mark.parametrize("case", sorted(CASES))
def test_readme_message_is_the_raised_message(case, tmp_path):
    _, message = _table()[case]
    pattern = ".*".join(re.escape(part) for part in message.split("…"))
    with pytest.raises((ValueError, TypeError)) as error:
        CASES[case](tmp_path)
    assert re.match(pattern, str(error.value), re.DOTALL), str(error.value)
