import keras
import numpy as np
import pytest
import tensorflow as tf

import singe_keras
import zoo


@pytest.mark.parametrize("name", list(zoo.ZOO))
def test_gates_at_one_reproduce_the_model_exactly(name):
    model = zoo.build(name)
    gated = singe_keras.GatedModel(singe_keras.trace(model))
    x = zoo.sample_inputs(model)
    np.testing.assert_array_equal(gated(x), model(x))


def test_gate_scales_the_channel_after_its_batch_normalization():
    # docs/method.md: the gate multiplies the channel after conv -> BN, once.
    model = zoo.build("chain")
    graph = singe_keras.trace(model)
    gated = singe_keras.GatedModel(graph)
    gates = np.ones(graph.num_units, "float32")
    offset = graph.group_offset("a_conv")
    gates[offset : offset + 6] = 0.5
    gated.gates.assign(gates)

    scaled = keras.models.clone_model(model)
    scaled.set_weights(model.get_weights())
    bn = scaled.get_layer("a_bn")
    bn.gamma.assign(bn.gamma * 0.5)
    bn.beta.assign(bn.beta * 0.5)
    x = zoo.sample_inputs(model)
    np.testing.assert_allclose(gated(x), scaled(x), rtol=1e-5, atol=1e-6)


def test_changing_gates_does_not_retrace():
    model = zoo.build("residual")
    graph = singe_keras.trace(model)
    gated = singe_keras.GatedModel(graph)
    traces = []

    @tf.function
    def forward(x):
        traces.append(1)
        return gated(x, training=False)

    x = zoo.sample_inputs(model)
    first = forward(x).numpy()
    gated.set_plan(zoo.random_plan(graph))
    second = forward(x).numpy()
    assert len(traces) == 1
    assert np.abs(first - second).max() > 0


def test_per_sample_gates_act_on_their_own_sample():
    model = zoo.build("squeeze_excitation")
    graph = singe_keras.trace(model)
    gated = singe_keras.GatedModel(graph)
    plans = [zoo.random_plan(graph, seed) for seed in range(3)]
    x = zoo.sample_inputs(model, batch=3)
    per_sample = gated(x, gates=np.stack([p.mask(graph) for p in plans]))
    for i, plan in enumerate(plans):
        gated.set_plan(plan)
        np.testing.assert_allclose(per_sample[i], gated(x)[i], rtol=1e-6, atol=1e-6)


def test_gradients_reach_the_gates():
    model = zoo.build("concat")
    graph = singe_keras.trace(model)
    gated = singe_keras.GatedModel(graph)
    x = zoo.sample_inputs(model)
    gates = tf.ones(graph.num_units)
    with tf.GradientTape() as tape:
        tape.watch(gates)
        loss = tf.reduce_sum(gated(x, gates=gates) ** 2)
    gradient = tape.gradient(loss, gates)
    assert gradient.shape == (graph.num_units,)
    assert np.count_nonzero(gradient.numpy()) == graph.num_units


def test_gated_model_trains_the_traced_layers():
    model = zoo.build("chain")
    gated = singe_keras.GatedModel(singe_keras.trace(model))
    assert {id(w) for w in gated.trainable_weights} == {
        id(w) for w in model.trainable_weights
    }
    assert gated.gates.trainable is False
