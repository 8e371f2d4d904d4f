"""Keras operations on symbolic tensors (`x + 3.0`, `ops.pad`, ...) in graphs."""

import keras
import numpy as np
import pytest

import singe_keras
import zoo

L = keras.layers
ops = keras.ops


def _sandwich(operation):
    """conv "before" -> operation -> conv "after" -> head."""
    inputs = keras.Input((6, 6, 4))
    x = L.Conv2D(4, 3, padding="same", name="before")(inputs)
    x = operation(x)
    x = L.Conv2D(5, 3, padding="same", name="after")(x)
    return zoo.randomize(keras.Model(inputs, zoo.head(x)))


def _node(graph, class_name):
    (node,) = [n for n in graph.nodes if type(n.layer).__name__ == class_name]
    return node


def _rebuilt_equals_gated(model, keep):
    graph = singe_keras.trace(model)
    plan = singe_keras.Plan.full(graph).with_kept("before", keep)
    gated = singe_keras.GatedModel(graph)
    gated.set_plan(plan)
    x = zoo.sample_inputs(model)
    np.testing.assert_allclose(singe_keras.rebuild(graph, plan)(x), gated(x), atol=1e-5)
    return graph


@pytest.mark.parametrize(
    "operation, class_name, source",
    [
        (lambda x: x + 3.0, "Add", True),
        (lambda x: x * 2.0, "Multiply", False),
        (lambda x: 3.0 - x, "Subtract", True),
        (lambda x: ops.hard_sigmoid(x), "HardSigmoid", True),
        (lambda x: ops.relu(x), "Relu", False),
        (lambda x: ops.pad(x, [[0, 0], [1, 0], [0, 1], [0, 0]], constant_values=1.0), "Pad", True),
        (lambda x: ops.pad(x, [[0, 0], [1, 0], [0, 1], [0, 0]]), "Pad", False),
        (lambda x: ops.softmax(x, axis=1), "Softmax", True),
    ],
)
def test_an_operation_is_a_gate_source_when_zero_does_not_stay_zero(
    operation, class_name, source
):
    graph = _rebuilt_equals_gated(_sandwich(operation), [0, 2])
    node = _node(graph, class_name)
    assert node.handler.is_source(node.layer, node.call) is source
    assert "before" in {g.name for g in graph.groups}


def test_a_per_channel_constant_is_sliced_with_its_channel():
    scale = np.array([1.0, -2.0, 3.0, 0.5], "float32")
    model = _sandwich(lambda x: x * scale + scale)
    graph = _rebuilt_equals_gated(model, [1, 3])
    small = singe_keras.rebuild(graph, singe_keras.Plan.full(graph).with_kept("before", [1, 3]))
    (multiply,) = [op for op in small.operations if type(op).__name__ == "Multiply"]
    np.testing.assert_array_equal(multiply._inbound_nodes[0].arguments.args[1], scale[[1, 3]])


def test_a_tensor_product_couples_its_inputs():
    inputs = keras.Input((6, 6, 3))
    a = L.Conv2D(4, 3, padding="same", name="a")(inputs)
    b = L.Conv2D(4, 3, padding="same", name="b")(inputs)
    x = L.Conv2D(5, 1, name="after")(ops.maximum(a, b) * b)
    graph = singe_keras.trace(zoo.randomize(keras.Model(inputs, zoo.head(x))))
    assert graph.group("a").producers == ("a", "b")


def test_a_reshape_keeping_channels_last_is_rebuilt_with_fewer_channels():
    inputs = keras.Input((4, 4, 3))
    x = L.Conv2D(6, 1, name="before")(inputs)
    x = L.Dense(5, name="after")(ops.reshape(x, (-1, 16, 6)))
    model = zoo.randomize(keras.Model(inputs, L.Dense(2)(ops.mean(x, axis=1))))
    graph = _rebuilt_equals_gated(model, [0, 4, 5])
    assert "before" in {g.name for g in graph.groups}


@pytest.mark.parametrize(
    "operation, reason",
    [
        (lambda x: ops.mean(x, axis=-1, keepdims=True), "reduces the channel axis"),
        (lambda x: ops.transpose(x, (0, 3, 1, 2)), "moves the channel axis"),
        (lambda x: x[..., :2], "indexes the channel axis"),
        (lambda x: ops.pad(x, [[0, 0], [0, 0], [0, 0], [0, 1]]), "pads the channel axis"),
        (lambda x: ops.softmax(x), "normalizes over the channel axis"),
        (lambda x: 1.0 / x, "inf or nan"),
        (lambda x: ops.reshape(x, (-1, 6, 4, 6)), "moves the channel axis"),
        (lambda x: ops.sort(x, axis=1), "no handler registered for Sort"),
    ],
)
def test_an_operation_on_the_channel_axis_is_a_barrier_with_a_warning(operation, reason):
    with pytest.warns(UserWarning, match=reason):
        graph = singe_keras.trace(_sandwich(operation))
    assert "before" not in {g.name for g in graph.groups}
    assert any(reason in r for r in graph.barriers.values())


def _attention_scores():
    inputs = keras.Input((5, 4))
    q = L.Dense(8, name="q")(inputs)
    k = L.Dense(8, name="k")(inputs)
    v = L.Dense(8, name="v")(inputs)
    scores = ops.einsum("bqd,bkd->bqk", q, k)  # 5 * 5 * 8 MACs
    x = ops.matmul(ops.softmax(scores), v)  # 5 * 8 * 5 MACs
    return keras.Model(inputs, L.Dense(2, name="out")(ops.mean(x, axis=1)))


def test_einsum_and_matmul_count_their_macs_and_stop_pruning():
    model = _attention_scores()
    with pytest.warns(UserWarning, match="contracts"):
        graph = singe_keras.trace(model)
    by_class = {c.class_name: c.macs for c in singe_keras.count_costs(graph).layers}
    assert by_class["Einsum"] == 5 * 5 * 8
    assert by_class["Matmul"] == 5 * 8 * 5
    assert {g.name for g in graph.groups} == set()


def test_einsum_with_an_ellipsis_and_implicit_output():
    inputs = keras.Input((3, 4, 6))
    x = ops.einsum("...ij,...kj", inputs, inputs)  # (3, 4, 4): 3*4*4 outputs x 6
    model = keras.Model(inputs, L.Dense(2)(ops.mean(x, axis=(1,))))
    with pytest.warns(UserWarning, match="contracts"):
        cost = singe_keras.count_costs(singe_keras.trace(model))
    assert cost.layers[0].macs == 3 * 4 * 4 * 6


def test_operations_count_no_params():
    model = zoo.build("operations")
    cost = singe_keras.count_costs(model)
    assert all(c.params == 0 for c in cost.layers if c.path not in {
        layer.name for layer in model.layers
    })
    assert cost.params == model.count_params()
