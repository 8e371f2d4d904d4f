import keras
import numpy as np
import pytest
import tensorflow as tf

import singe_keras
import zoo

L = keras.layers


def _batchnorms(model):
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from _batchnorms(layer)
        elif isinstance(layer, L.BatchNormalization):
            yield layer


def _reference_moments(model, batches):
    """Per BN layer, the NumPy mean over batches of Keras's own training-mode moments.

    A copy of the model runs each batch in training mode with momentum 0, so
    each BN's moving statistics become exactly that batch's moments of its
    inputs (normalized upstream by batch statistics).
    """
    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    for layer in _batchnorms(copy):
        layer.momentum = 0.0
    moments = {layer.name: [] for layer in _batchnorms(copy)}
    for x in batches:
        copy(x, training=True)
        for layer in _batchnorms(copy):
            moments[layer.name].append(
                (np.asarray(layer.moving_mean), np.asarray(layer.moving_variance)))
    return {name: np.mean(values, axis=0) for name, values in moments.items()}


def _assert_statistics(model, expected):
    for layer in _batchnorms(model):
        mean, variance = expected[layer.name]
        np.testing.assert_allclose(layer.moving_mean, mean, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(layer.moving_variance, variance, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ["residual", "preactivation", "nested"])
def test_moving_statistics_are_the_average_of_training_mode_batch_moments(name):
    model = zoo.build(name)
    x = zoo.sample_inputs(model, batch=40, seed=3)
    before = [np.asarray(w) for w in model.trainable_weights]
    # 40 rows in batches of 8: 5 batches, of which only the first 3 count.
    singe_keras.recalibrate_batchnorm(model, x, batches=3, batch_size=8)
    _assert_statistics(model, _reference_moments(model, [x[:8], x[8:16], x[16:24]]))
    for a, b in zip(before, model.trainable_weights):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("form", ["dataset", "dataset_of_inputs", "pydataset", "tuple"])
def test_every_data_form_gives_the_same_statistics(form):
    model = zoo.build("chain")
    x = zoo.sample_inputs(model, batch=24, seed=3)
    y = np.zeros(len(x), "int64")

    data = {
        "dataset": tf.data.Dataset.from_tensor_slices((x, y)).batch(8),
        "dataset_of_inputs": tf.data.Dataset.from_tensor_slices(x).batch(8),
        "pydataset": zoo.Batches(x, y, 8),
        "tuple": (x, y),
    }[form]
    singe_keras.recalibrate_batchnorm(model, data, batches=20, batch_size=8)
    _assert_statistics(model, _reference_moments(model, [x[:8], x[8:16], x[16:]]))


def test_dropout_runs_in_inference_mode():
    inputs = keras.Input((8, 8, 3))
    x = L.Conv2D(4, 3, name="conv")(inputs)
    x = L.Dropout(0.5, name="dropout")(x)
    x = L.BatchNormalization(name="bn")(x)
    model = zoo.randomize(keras.Model(inputs, L.Dense(2)(L.Flatten()(x))))
    x = zoo.sample_inputs(model, batch=16, seed=2)
    singe_keras.recalibrate_batchnorm(model, x, batches=2, batch_size=8)
    features = keras.Model(model.input, model.get_layer("conv").output)
    moments = [(f.mean(axis=(0, 1, 2)), f.var(axis=(0, 1, 2)))
               for f in (np.asarray(features(x[:8])), np.asarray(features(x[8:])))]
    bn = model.get_layer("bn")
    np.testing.assert_allclose(bn.moving_mean, np.mean([m for m, _ in moments], 0),
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(bn.moving_variance, np.mean([v for _, v in moments], 0),
                               rtol=1e-5, atol=1e-6)


class _MyBatchNorm(L.BatchNormalization):
    pass


def test_frozen_subclassed_and_renorm_batchnorms_keep_their_statistics():
    inputs = keras.Input((8, 8, 3))
    x = L.BatchNormalization(name="frozen", trainable=False)(inputs)
    x = _MyBatchNorm(name="subclass")(x)
    x = L.BatchNormalization(name="renorm", renorm=True)(x)
    x = L.BatchNormalization(name="plain")(x)
    model = zoo.randomize(keras.Model(inputs, x))
    before = {layer.name: np.asarray(layer.moving_mean) for layer in model.layers[1:]}
    with pytest.warns(UserWarning, match=r"keep their moving statistics: \['renorm', 'subclass'\]"):
        singe_keras.recalibrate_batchnorm(model, zoo.sample_inputs(model, 8), batches=1)
    for name in ("frozen", "subclass", "renorm"):
        np.testing.assert_array_equal(model.get_layer(name).moving_mean, before[name])
    assert not np.allclose(model.get_layer("plain").moving_mean, before["plain"])


@pytest.mark.parametrize("argument", ["batches", "batch_size"])
@pytest.mark.parametrize("value", [0, 1.5, True])
def test_bad_counts_are_rejected(argument, value):
    model = zoo.build("chain")
    with pytest.raises(ValueError, match=f"`{argument}` must be a positive integer"):
        singe_keras.recalibrate_batchnorm(model, zoo.sample_inputs(model), **{argument: value})


def test_data_of_the_wrong_type_is_rejected():
    with pytest.raises(TypeError, match="or an array `x` of inputs"):
        singe_keras.recalibrate_batchnorm(zoo.build("chain"), {"x": 1})


def test_former_data_argument_still_works_with_a_deprecation_warning():
    model = zoo.build("residual")
    x = zoo.sample_inputs(model, 16)
    expected = keras.models.clone_model(model)
    expected.set_weights(model.get_weights())
    singe_keras.recalibrate_batchnorm(expected, x, batches=2, batch_size=8)
    with pytest.warns(DeprecationWarning, match="pass `dataset=` instead"):
        singe_keras.recalibrate_batchnorm(model, data=x, batches=2, batch_size=8)
    for got, want in zip(model.get_weights(), expected.get_weights()):
        np.testing.assert_array_equal(got, want)


def test_missing_dataset_is_rejected():
    with pytest.raises(ValueError, match="`dataset` is required"):
        singe_keras.recalibrate_batchnorm(zoo.build("chain"))
