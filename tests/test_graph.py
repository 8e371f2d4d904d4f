import re
import warnings

import keras
import numpy as np
import pytest

import singe_keras
import zoo

L = keras.layers


def _groups(model, **kwargs):
    graph = singe_keras.trace(model, **kwargs)
    return {g.name: g for g in graph.groups}


def test_chain_has_one_group_per_conv_and_keeps_outputs():
    groups = _groups(zoo.build("chain"))
    assert {name: g.size for name, g in groups.items()} == {"a_conv": 6, "b_conv": 5}
    assert groups["a_conv"].layers == ("a_conv", "a_bn", "a_act", "b_conv")
    assert all("logits" not in g.producers for g in groups.values())


def test_residual_add_couples_its_producers():
    groups = _groups(zoo.build("residual"))
    assert set(groups["stem_conv"].producers) == {"stem_conv", "b1b_conv"}
    assert set(groups["proj"].producers) == {"proj", "b2b_conv"}
    assert groups["b1a_conv"].producers == ("b1a_conv",)


def test_concatenate_keeps_segments_apart():
    groups = _groups(zoo.build("concat"))
    assert {"a_conv", "b_conv", "c_conv", "d_conv"} <= set(groups)
    for name in ("a_conv", "b_conv", "c_conv"):
        assert groups[name].producers == (name,)
        assert "cat_bn" in groups[name].layers


def test_squeeze_excitation_gate_is_coupled_with_the_feature_map():
    groups = _groups(zoo.build("squeeze_excitation"))
    assert set(groups["stem_conv"].producers) == {"stem_conv", "se_expand"}
    assert groups["se_reduce"].size == 3


def test_broadcast_map_is_not_coupled():
    groups = _groups(zoo.build("spatial_attention"))
    assert "att" not in groups  # one channel broadcast over six: fixed
    assert groups["feat_conv"].size == 6


def test_shared_layer_couples_the_inputs_of_its_calls():
    groups = _groups(zoo.build("shared_layer"))
    assert set(groups["pa"].producers) == {"pa", "pb"}
    assert groups["shared"].size == 5


def test_nested_models_are_traced_through():
    groups = _groups(zoo.build("nested"))
    assert set(groups["stem_conv"].producers) == {"stem_conv", "backbone/inner_conv"}
    assert "backbone/inner_out_conv" in groups
    assert "block/seq_conv" in groups


def test_depthwise_multiplier_follows_its_input_channel():
    groups = _groups(zoo.build("depthwise_separable"))
    assert {"dw", "dw_bn", "sep"} <= set(groups["stem_conv"].layers)
    assert groups["sep"].size == 7


def test_ignored_layers_are_never_pruned():
    model = zoo.build("chain")
    assert "a_conv" not in _groups(model, ignored_layers=["a_conv"])
    assert "b_conv" not in _groups(model, ignored_layers=[model.get_layer("b_conv")])


def test_unknown_ignored_layer_is_rejected():
    with pytest.raises(ValueError, match="not in the model.*nope"):
        singe_keras.trace(zoo.build("chain"), ignored_layers=["nope"])


class _Custom(L.Layer):
    """Uses a weight of its own: not traced through, a barrier."""

    def build(self, input_shape):
        self.scale = self.add_weight(shape=(), initializer="ones", name="scale")

    def call(self, x):
        return x * self.scale


class _SubclassedConv(L.Conv2D):
    pass


def _sandwich(middle):
    inputs = keras.Input((6, 6, 3))
    x = L.Conv2D(4, 3, padding="same", name="before")(inputs)
    x = middle(x)
    x = L.Conv2D(5, 3, padding="same", name="after")(x)
    return keras.Model(inputs, zoo.head(x))


@pytest.mark.parametrize(
    "middle, reason",
    [
        (_Custom(name="middle"), "it has weights of its own"),
        (_SubclassedConv(4, 1, name="middle"), "it has weights of its own"),
        (L.Lambda(lambda x: x * 2.0, name="middle"), "no handler registered for Lambda"),
        (L.Softmax(name="middle"), "softmax over the channel axis"),
        (L.Activation("softmax", name="middle"), "softmax over the channel axis"),
        (L.Conv2D(4, 1, groups=2, name="middle"), "grouped convolution"),
        (L.GroupNormalization(groups=2, name="middle"), "groups=2"),
        (L.LayerNormalization(axis=1, name="middle"), r"only the last \(channel\) axis"),
    ],
)
def test_barrier_layers_stop_pruning_with_a_warning(middle, reason):
    model = _sandwich(middle)
    with pytest.warns(UserWarning, match=f"middle.*{reason}") as record:
        graph = singe_keras.trace(model)
    assert {w.filename for w in record if "middle" in str(w.message)} == {__file__}
    names = {g.name for g in graph.groups}
    assert "before" not in names and "after" in names
    assert re.search(reason, graph.barriers["middle"])


def test_barrier_warning_under_prune_names_the_line_that_called_prune():
    model = _sandwich(L.Softmax(name="middle"))
    with pytest.warns(UserWarning, match="middle.*softmax over the channel axis") as record:
        singe_keras.prune(model, target_flops=0.8, criterion="l1", rounds=1,
                          finetune_steps=0, verbose=0)
    assert {w.filename for w in record if "middle" in str(w.message)} == {__file__}


def test_channels_first_is_a_barrier():
    inputs = keras.Input((3, 6, 6))
    x = L.Conv2D(4, 3, data_format="channels_first", name="cf")(inputs)
    x = L.Flatten()(x)
    model = keras.Model(inputs, L.Dense(2)(x))
    with pytest.warns(UserWarning, match="channels_first"):
        graph = singe_keras.trace(model)
    assert graph.groups == []


def test_supported_models_trace_without_warnings():
    for name in zoo.ZOO:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            singe_keras.trace(zoo.build(name))


def test_subclassed_model_is_rejected_with_what_is_supported():
    class Net(keras.Model):
        def __init__(self):
            super().__init__()
            self.dense = L.Dense(2)

        def call(self, x):
            return self.dense(x)

    model = Net()
    model(keras.ops.zeros((1, 3)))
    with pytest.raises(TypeError, match="functional and Sequential"):
        singe_keras.trace(model)


def test_unknown_group_name_is_rejected():
    graph = singe_keras.trace(zoo.build("chain"))
    with pytest.raises(ValueError, match="No coupling group named 'x'"):
        graph.group("x")


def test_a_weightless_layer_reused_on_other_widths_couples_nothing():
    inputs = keras.Input((6, 6, 3))
    relu = L.ReLU(name="relu")
    a = relu(L.Conv2D(4, 3, name="c1")(inputs))
    b = relu(L.Conv2D(8, 3, name="c2")(inputs))
    x = L.Concatenate()([L.GlobalAveragePooling2D()(a), L.GlobalAveragePooling2D()(b)])
    groups = _groups(keras.Model(inputs, L.Dense(2)(x)))
    assert groups["c1"].producers == ("c1",) and groups["c2"].producers == ("c2",)


def test_ignored_layers_may_be_a_single_name():
    assert "a_conv" not in _groups(zoo.build("chain"), ignored_layers="a_conv")


@pytest.mark.parametrize("activation", ["softmax", "log_softmax"])
def test_producer_with_a_channel_mixing_activation_keeps_its_units(activation):
    inputs = keras.Input((5,))
    x = L.Dense(8, activation="relu", name="d0")(inputs)
    x = L.Dense(6, activation=activation, name="d1")(x)
    model = zoo.randomize(keras.Model(inputs, L.Dense(3, name="logits")(x)))
    graph = singe_keras.trace(model)
    assert [g.name for g in graph.groups] == ["d0"]  # its inputs are still pruned
    plan = singe_keras.Plan.full(graph).with_kept("d0", [0, 2, 5])
    gated = singe_keras.GatedModel(graph)
    gated.set_plan(plan)
    x = zoo.sample_inputs(model, batch=8)
    np.testing.assert_allclose(singe_keras.rebuild(graph, plan)(x), gated(x), atol=1e-5)


def _many_customs(count):
    inputs = keras.Input((6, 6, 3))
    x = L.Conv2D(4, 3, padding="same", name="before")(inputs)
    for i in range(count):
        x = _Custom(name=f"custom_{i}")(x)
    x = L.Conv2D(5, 3, padding="same", name="after")(x)
    return keras.Model(inputs, zoo.head(x))


def test_barrier_warnings_come_one_per_cause_with_the_layers_grouped():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        singe_keras.trace(_many_customs(5))
    messages = [str(w.message) for w in caught]
    assert len(messages) == 1
    assert "5 layers of class _Custom (custom_0, custom_1, custom_2, ...)" in messages[0]


def test_summary_shows_the_prunable_share_and_what_blocks_the_rest():
    model = _many_customs(2)
    with pytest.warns(UserWarning):
        graph = singe_keras.trace(model)
    macs = {c.path: c.macs for c in singe_keras.count_costs(graph).layers}
    # "before" writes into the barrier: fixed; "after" makes units that "logits" reads.
    share = (macs["after"] + macs["logits"]) / sum(macs.values())
    assert graph.prunable_flops_share() == pytest.approx(share)
    summary = graph.summary()
    assert f"{100 * share:5.1f}% of the FLOPs are in layers with prunable channels" in summary
    assert "in barriers: 2 layers of class _Custom (custom_0, custom_1)" in summary
    blocked = 100 * macs["before"] / sum(macs.values())
    assert f"{blocked:5.1f}% in 1 layer call(s) that read and write only fixed" in summary
    assert "Not costed (counted as 0 FLOPs): 2 layers of class _Custom" in summary


def test_a_custom_block_is_traced_through_with_its_name_as_prefix():
    groups = _groups(zoo.build("custom_blocks"))
    assert set(groups["stem_conv"].producers) == {"stem_conv", "block/conv", "se/expand"}
    assert groups["se/reduce"].layers == ("se/reduce", "se/expand")


class _Untraceable(L.Layer):
    """TensorFlow's own functions do not take symbolic Keras tensors."""

    def call(self, x):
        import tensorflow as tf

        return tf.math.cumsum(x, axis=1)


def test_a_custom_layer_that_cannot_be_traced_is_a_barrier_with_the_reason():
    with pytest.warns(UserWarning, match="middle.*cannot be traced on symbolic inputs"):
        graph = singe_keras.trace(_sandwich(_Untraceable(name="middle")))
    assert "\n" not in graph.barriers["middle"]
    assert "before" not in {g.name for g in graph.groups}


def test_a_custom_layer_in_ignored_layers_is_kept_whole():
    model = zoo.build("custom_blocks")
    with pytest.warns(UserWarning, match="block.*not traced through"):
        graph = singe_keras.trace(model, ignored_layers=["block"])
    assert not any(path.startswith("block/") for g in graph.groups for path in g.layers)
    assert "se/reduce" in {g.name for g in graph.groups}
