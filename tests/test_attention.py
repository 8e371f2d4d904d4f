"""Attention heads as units: `keras.layers.MultiHeadAttention`'s handler."""

import contextlib

import keras
import numpy as np
import pytest

import singe_keras
import zoo
from singe_keras import criteria

L = keras.layers
CE = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def _assert_close_to_scale(actual, expected, tolerance=1e-5):
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert np.abs(actual - expected).max() <= tolerance * np.abs(expected).max()


def _masked_model():
    """Causal self-attention and cross-attention to a memory under a mask."""
    query = keras.Input((6, 16), name="query")
    memory = keras.Input((5, 8), name="memory")
    mask = keras.Input((6, 5), dtype="bool", name="mask")
    x = L.Dense(16, name="embed")(query)
    y = L.MultiHeadAttention(4, 4, name="self")(x, x, use_causal_mask=True)
    x = L.Add(name="add1")([x, y])
    y = L.MultiHeadAttention(2, 3, value_dim=5, name="cross")(x, memory, attention_mask=mask)
    x = L.GlobalAveragePooling1D(name="pool")(L.Add(name="add2")([x, y]))
    model = keras.Model([query, memory, mask], L.Dense(3, name="logits")(x))
    return zoo.randomize(model)


def _masked_inputs(seed=1):
    rng = np.random.default_rng(seed)
    mask = rng.random((4, 6, 5)) > 0.4
    mask[..., 0] = True  # every query attends to something
    return [rng.normal(size=(4, 6, 16)).astype("float32"),
            rng.normal(size=(4, 5, 8)).astype("float32"), mask]


def _head_macs(query, source, heads, key_dim, value_dim, key_width, value_width, out):
    """One head's share of the projections and of QK^T and AV."""
    projections = (query[0] * query[1] * key_dim + source * key_width * key_dim
                   + source * value_width * value_dim + query[0] * value_dim * out)
    return projections + query[0] * source * (key_dim + value_dim)


def test_heads_are_the_units_of_one_group_per_attention_layer():
    graph = singe_keras.trace(zoo.build("transformer"))
    sizes = {g.name: g.size for g in graph.groups}
    assert sizes == {"self": 4, "cross": 3, "mlp1": 32}
    assert graph.group("self").layers == ("self",)
    # The residual width and the attention inputs stay whole.
    assert not graph.barriers


def test_rebuilt_layer_has_the_kept_heads_and_their_weights():
    model = zoo.build("transformer")
    graph = singe_keras.trace(model)
    plan = singe_keras.Plan.full(graph).with_kept("self", [1, 3]).with_kept("cross", [2])
    small = singe_keras.rebuild(graph, plan)
    assert small.get_layer("self").get_config()["num_heads"] == 2
    assert small.get_layer("cross").get_config()["num_heads"] == 1
    before, after = model.get_layer("self"), small.get_layer("self")
    for projection in ("query_dense", "key_dense", "value_dense"):
        old, new = getattr(before, projection), getattr(after, projection)
        np.testing.assert_array_equal(new.kernel, np.asarray(old.kernel)[:, [1, 3]])
        np.testing.assert_array_equal(new.bias, np.asarray(old.bias)[[1, 3]])
    np.testing.assert_array_equal(
        after.output_dense.kernel, np.asarray(before.output_dense.kernel)[[1, 3]]
    )
    np.testing.assert_array_equal(after.output_dense.bias, before.output_dense.bias)
    cross = small.get_layer("cross")
    assert cross.get_config()["output_shape"] == (16,) and not cross.get_config()["use_bias"]
    np.testing.assert_array_equal(
        cross.value_dense.kernel, np.asarray(model.get_layer("cross").value_dense.kernel)[:, [2]]
    )


def test_a_head_gate_at_zero_removes_that_head_output():
    model = zoo.build("transformer")
    graph = singe_keras.trace(model)
    gated = singe_keras.GatedModel(graph)
    gates = np.ones(graph.num_units, "float32")
    gates[graph.group_offset("self") + 2] = 0.0
    # The same model with head 2's rows of the output projection at zero.
    silenced = keras.models.clone_model(model)
    silenced.set_weights(model.get_weights())
    output = silenced.get_layer("self").output_dense
    kernel = np.asarray(output.kernel)
    kernel[2] = 0.0
    output.kernel.assign(kernel)
    x = zoo.sample_inputs(model)
    _assert_close_to_scale(gated(x, gates=gates), silenced(x))
    assert np.abs(np.asarray(silenced(x)) - np.asarray(model(x))).max() > 1e-3


@pytest.mark.parametrize("seed", [0, 1])
def test_masked_attention_rebuilds_exactly(seed):
    model = _masked_model()
    graph = singe_keras.trace(model)
    plan = zoo.random_plan(graph, seed)
    gated = singe_keras.GatedModel(graph)
    gated.set_plan(plan)
    small = singe_keras.rebuild(graph, plan)
    x = _masked_inputs()
    _assert_close_to_scale(small(x), gated(x))
    # The mask reaches the gated and the rebuilt layers.
    unmasked = x[:2] + [np.ones_like(x[2])]
    assert np.abs(np.asarray(gated(unmasked)) - np.asarray(gated(x))).max() > 1e-3
    _assert_close_to_scale(small(unmasked), gated(unmasked))


def test_costs_drop_by_the_removed_heads_macs():
    model = _masked_model()
    graph = singe_keras.trace(model)
    plan = singe_keras.Plan.full(graph).with_kept("self", [0]).with_kept("cross", [1])
    full = {c.path: c.macs for c in singe_keras.count_costs(graph).layers}
    pruned = {c.path: c.macs for c in singe_keras.count_costs(graph, plan).layers}
    self_head = _head_macs((6, 16), 6, 4, 4, 4, 16, 16, 16)
    cross_head = _head_macs((6, 16), 5, 2, 3, 5, 8, 8, 16)
    assert full["self"] == 4 * self_head and full["cross"] == 2 * cross_head
    assert full["self"] - pruned["self"] == 3 * self_head
    assert full["cross"] - pruned["cross"] == cross_head
    rebuilt = {c.path: c.macs for c in singe_keras.count_costs(singe_keras.rebuild(graph, plan)).layers}
    assert rebuilt["self"] == pruned["self"] and rebuilt["cross"] == pruned["cross"]


def test_every_attention_layer_keeps_at_least_one_head():
    inputs = keras.Input((8, 16))
    x = L.MultiHeadAttention(4, 8, name="attention")(inputs, inputs)
    x = L.Dense(8, name="hidden")(L.Add(name="add")([inputs, x]))
    model = zoo.randomize(keras.Model(inputs, L.Dense(2, name="logits")(L.Flatten()(x))))
    pruned = singe_keras.prune(
        model, None, target_flops=0.3, criterion="random", rounds=1, finetune_steps=0,
        verbose=0,
    )
    assert pruned.get_layer("attention").get_config()["num_heads"] == 1
    with pytest.raises(ValueError, match="at least one unit"):
        singe_keras.Plan.full(singe_keras.trace(model)).with_kept("attention", [])


def test_head_scores_are_per_head():
    model = zoo.build("transformer")
    output = model.get_layer("self").output_dense
    kernel = np.asarray(output.kernel)
    kernel[1] = 0.0  # head 1 no longer reaches the output
    output.kernel.assign(kernel)
    model.compile(loss=CE)
    rng = np.random.default_rng(3)
    data = (zoo.sample_inputs(model, batch=16), rng.integers(0, 3, 16))
    gated = singe_keras.GatedModel(singe_keras.trace(model))
    for criterion in (criteria.Taylor(), criteria.IntegratedGradients(steps=8, path="group")):
        heads = np.abs(singe_keras.score(gated, data, criterion)["self"])
        assert heads.shape == (4,)
        assert heads[1] == 0.0
        assert (np.delete(heads, 1) > 0).all()


def test_attention_returning_scores_is_a_costed_barrier():
    inputs = keras.Input((5, 6))
    x, scores = L.MultiHeadAttention(2, 3, name="mha")(inputs, inputs, return_attention_scores=True)
    x = L.Concatenate(name="both")([L.Flatten()(x), L.Flatten()(scores)])
    model = keras.Model(inputs, L.Dense(2, name="logits")(x))
    with pytest.warns(UserWarning, match="return_attention_scores=True"):
        graph = singe_keras.trace(model)
    assert "mha" in graph.barriers and not graph.groups
    macs = {c.path: c.macs for c in singe_keras.count_costs(graph).layers}["mha"]
    assert macs == 2 * _head_macs((5, 6), 5, 2, 3, 3, 6, 6, 6)


def test_gated_attention_is_a_barrier():
    inputs = keras.Input((5, 6))
    x = L.MultiHeadAttention(2, 3, use_gate=True, name="mha")(inputs, inputs)
    model = keras.Model(inputs, L.Dense(2)(L.Flatten()(x)))
    with pytest.warns(UserWarning, match="use_gate=True"):
        graph = singe_keras.trace(model)
    assert "mha" in graph.barriers


def test_magnitude_of_a_head_is_its_projection_kernels():
    model = zoo.build("transformer")
    graph = singe_keras.trace(model)
    layer = model.get_layer("self")
    kernels = [np.asarray(getattr(layer, p).kernel)
               for p in ("query_dense", "key_dense", "value_dense")]
    expected = [sum(np.abs(k[:, h]).sum() for k in kernels)
                + np.abs(np.asarray(layer.output_dense.kernel)[h]).sum() for h in range(4)]
    scores = singe_keras.score(singe_keras.GatedModel(graph), None, "l1")
    np.testing.assert_allclose(scores["self"], expected, rtol=1e-6)


def test_report_of_rounds_re_derives_the_pruned_heads():
    model = zoo.build("vit")
    pruned, report = singe_keras.prune(
        model, None, target_flops=0.5, criterion="random", rounds=2, finetune_steps=0,
        seed=0, return_report=True, verbose=0,
    )
    heads = report.layers["attention"]["kept_hidden"][0]
    assert pruned.get_layer("attention").get_config()["num_heads"] == len(heads) < 4
    graph = singe_keras.trace(model)
    again = singe_keras.rebuild(graph, report.to_plan(graph))
    x = zoo.sample_inputs(model)
    np.testing.assert_allclose(again(x), pruned(x), atol=1e-5)


def test_einsum_dense_on_other_axes_is_a_costed_barrier():
    inputs = keras.Input((6, 8))
    x = L.EinsumDense("abc,cde->abde", (6, 2, 4), name="split")(L.Dense(8, name="hidden")(inputs))
    model = keras.Model(inputs, L.Dense(2, name="logits")(L.Flatten()(x)))
    with pytest.warns(UserWarning, match="only a Dense on the last axis"):
        graph = singe_keras.trace(model)
    assert not graph.groups  # `hidden` feeds the barrier
    macs = {c.path: c.macs for c in singe_keras.count_costs(graph).layers}["split"]
    assert macs == 6 * 2 * 4 * 8


def test_keras_masks_of_the_inputs_reach_the_gated_heads():
    tokens = keras.Input((6,), dtype="int32")
    x = L.Embedding(10, 16, mask_zero=True, name="embedding")(tokens)
    y = L.MultiHeadAttention(2, 8, name="attention")(x, x)
    x = L.GlobalAveragePooling1D(name="pool")(L.Add(name="add")([x, y]))
    model = zoo.randomize(keras.Model(tokens, L.Dense(2, name="logits")(x)))
    with pytest.warns(UserWarning, match="Embedding"):
        graph = singe_keras.trace(model)
    x = np.array([[1, 2, 3, 0, 0, 0], [4, 5, 0, 0, 0, 0]])  # padded: masked keys
    gated = singe_keras.GatedModel(graph)
    np.testing.assert_allclose(gated(x), model(x), atol=1e-6)
    plan = singe_keras.Plan.full(graph).with_kept("attention", [1])
    gated.set_plan(plan)
    _assert_close_to_scale(singe_keras.rebuild(graph, plan)(x), gated(x))


@pytest.mark.parametrize("case", ["cross", "key", "axes", "scores_returned"])
def test_costs_and_scoring_passes_count_the_tensors_inside_attention(case):
    # Scores and softmax (the largest tensors of a transformer), projections
    # and the heads' outputs count beside the output, so that automatic
    # passes are sized for transformers; MACs are those of the projections
    # and of the two products. Checked against the layer's own tensors.
    shapes, options, call = {
        "cross": ([(6, 16), (5, 8)], {"value_dim": 7}, {}),
        "key": ([(6, 16), (5, 8), (5, 12)], {"value_dim": 3}, {}),
        "axes": ([(3, 4, 8), (3, 5, 8)], {"attention_axes": (2,)}, {}),
        "scores_returned": ([(6, 16), (5, 8)], {}, {"return_attention_scores": True}),
    }[case]
    inputs = [keras.Input(shape) for shape in shapes]
    layer = L.MultiHeadAttention(2, 4, name="mha", **options)
    outputs = layer(*inputs, **call)
    model = keras.Model(inputs, outputs)
    q, v, *k = [np.ones((1, *shape), "float32") for shape in shapes]
    k = k[0] if k else v
    projected = [layer.query_dense(q), layer.key_dense(k), layer.value_dense(v)]
    heads, scores = layer._compute_attention(*projected, return_attention_scores=True)
    output = layer(q, v, key=k)
    barrier = pytest.warns(UserWarning, match="return_attention_scores=True")
    with barrier if case == "scores_returned" else contextlib.nullcontext():
        graph = singe_keras.trace(model)
    inside = [*projected, scores, scores, heads, output]  # scores: before and after softmax
    assert graph.values_per_sample() == sum(np.size(t) for t in inside)
    projections = (np.size(projected[0]) * q.shape[-1] + np.size(projected[1]) * k.shape[-1]
                   + np.size(projected[2]) * v.shape[-1]
                   + np.size(output) * heads.shape[-2] * heads.shape[-1])
    products = np.size(scores) * (layer.key_dim + layer.value_dim)
    macs = {c.path: c.macs for c in singe_keras.count_costs(graph).layers}["mha"]
    assert macs == projections + products


def test_attention_over_an_unknown_length_leaves_scoring_passes_at_their_default():
    inputs = keras.Input((None, 16))
    model = keras.Model(inputs, L.MultiHeadAttention(2, 4)(inputs, inputs))
    graph = singe_keras.trace(model)
    assert graph.values_per_sample() is None and criteria.pass_rows(graph) == 16
