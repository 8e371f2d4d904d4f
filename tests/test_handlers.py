import keras
import numpy as np
import pytest

import singe_keras
import zoo

L = keras.layers


@keras.saving.register_keras_serializable(package="singe_keras_tests")
class ChannelScale(L.Layer):
    """A per-channel scale: a custom layer a user might have."""

    def build(self, input_shape):
        self.scale = self.add_weight(shape=(input_shape[-1],), name="scale")

    def call(self, x):
        return x * self.scale


class ChannelScaleHandler(singe_keras.LayerHandler):
    def slice_weights(self, layer, call, weights, in_keep, out_keep):
        return {"scale": weights["scale"][out_keep[0]]}


def _model():
    inputs = keras.Input((6, 6, 3))
    x = L.Conv2D(5, 3, padding="same", name="conv")(inputs)
    x = ChannelScale(name="scale")(x)
    x = L.Conv2D(4, 3, padding="same", name="after")(x)
    return zoo.randomize(keras.Model(inputs, zoo.head(x)))


def test_registered_custom_layer_is_pruned_through_exactly():
    singe_keras.register_handler(ChannelScale, ChannelScaleHandler())
    model = _model()
    graph = singe_keras.trace(model)
    assert "scale" in graph.group("conv").layers
    plan = singe_keras.Plan.full(graph).with_kept("conv", [1, 3])
    small = singe_keras.rebuild(graph, plan)
    gated = singe_keras.GatedModel(graph)
    gated.set_plan(plan)
    x = zoo.sample_inputs(model)
    np.testing.assert_allclose(small(x), gated(x), atol=1e-5)
    np.testing.assert_array_equal(
        small.get_layer("scale").scale.numpy(), model.get_layer("scale").scale.numpy()[[1, 3]]
    )


def test_register_handler_rejects_a_non_layer_class():
    with pytest.raises(TypeError, match="layer_class"):
        singe_keras.register_handler(int, singe_keras.LayerHandler())


def test_register_handler_rejects_a_non_handler():
    with pytest.raises(TypeError, match="handler"):
        singe_keras.register_handler(ChannelScale, object())
