import keras
import numpy as np
import pytest
import tensorflow as tf

import singe_keras
import zoo

EXACT = [name for name in zoo.ZOO if name != "dense_on_sequence"]


def _rebuilt(name, seed=0):
    model = zoo.build(name)
    graph = singe_keras.trace(model)
    plan = zoo.random_plan(graph, seed)
    return model, graph, plan, singe_keras.rebuild(graph, plan)


def _assert_close_to_scale(actual, expected, tolerance=1e-5):
    actual, expected = np.asarray(actual), np.asarray(expected)
    scale = max(np.abs(expected).max(), 1e-12)
    assert np.abs(actual - expected).max() <= tolerance * scale


@pytest.mark.parametrize("name", EXACT)
@pytest.mark.parametrize("seed", [0, 1])
def test_rebuild_matches_gated_model(name, seed):
    model, graph, plan, small = _rebuilt(name, seed)
    assert graph.groups, "the zoo model must have something to prune"
    gated = singe_keras.GatedModel(graph)
    gated.set_plan(plan)
    x = zoo.sample_inputs(model)
    expected = gated(x)
    _assert_close_to_scale(small(x), expected)
    # The plan really removed something: the gated output differs from the model.
    assert np.abs(np.asarray(expected) - np.asarray(model(x))).max() > 0


def _layer_names(model):
    return [
        layer.name
        for layer in model.layers
        if not isinstance(layer, keras.layers.InputLayer)
    ]


@pytest.mark.parametrize("name", list(zoo.ZOO))
def test_rebuild_keeps_signature_and_names(name):
    model, graph, plan, small = _rebuilt(name)
    assert small.input_shape == model.input_shape
    assert small.output_shape == model.output_shape
    assert _layer_names(small) == _layer_names(model)
    assert small.count_params() < model.count_params()


@pytest.mark.parametrize("name", ["residual", "nested", "concat"])
def test_input_model_is_not_modified(name):
    model = zoo.build(name)
    before_config = model.get_config()
    before = [keras.ops.convert_to_numpy(w) for w in model.weights]
    graph = singe_keras.trace(model)
    small = singe_keras.rebuild(graph, zoo.random_plan(graph))
    # Training the rebuilt model must not touch the original's variables.
    for weight in small.trainable_weights:
        weight.assign(np.zeros(weight.shape, weight.dtype))
    assert model.get_config() == before_config
    for weight, value in zip(model.weights, before):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(weight), value)


def test_full_plan_rebuilds_an_identical_model():
    model = zoo.build("residual")
    graph = singe_keras.trace(model)
    small = singe_keras.rebuild(graph, singe_keras.Plan.full(graph))
    x = zoo.sample_inputs(model)
    np.testing.assert_array_equal(small(x), model(x))


def test_nested_models_stay_nested():
    model, _, _, small = _rebuilt("nested")
    backbone = small.get_layer("backbone")
    assert isinstance(backbone, keras.Model)
    assert backbone.get_layer("inner_conv").filters < 6


def test_flatten_dense_rows_follow_kept_channels():
    model, graph, plan, small = _rebuilt("flatten_dense")
    kept = np.asarray(plan.keep["c1"])
    original = model.get_layer("fc").kernel.numpy().reshape(4, 4, 4, 7)
    expected = original[:, :, kept, :].reshape(-1, 7)
    np.testing.assert_array_equal(
        small.get_layer("fc").kernel.numpy(), expected[:, np.asarray(plan.keep["fc"])]
    )


@pytest.mark.parametrize(
    "name", ["residual", "nested", "squeeze_excitation", "concat", "operations", "vit"]
)
def test_rebuilt_model_survives_keras_round_trip(name, tmp_path):
    model, _, _, small = _rebuilt(name)
    path = tmp_path / "small.keras"
    small.save(path)
    loaded = keras.models.load_model(path)
    x = zoo.sample_inputs(model)
    np.testing.assert_array_equal(loaded(x), small(x))


@pytest.mark.parametrize(
    "name", ["residual", "depthwise_separable", "squeeze_excitation", "operations", "vit"]
)
def test_rebuilt_model_converts_to_tflite(name):
    model, _, _, small = _rebuilt(name)
    x = zoo.sample_inputs(model, batch=1)
    _assert_close_to_scale(_tflite_output(small, x), small(x), tolerance=1e-4)


def _tflite_output(model, x):
    """The output of the model converted to TFLite, run by LiteRT."""
    litert = pytest.importorskip("ai_edge_litert.interpreter")
    content = tf.lite.TFLiteConverter.from_keras_model(model).convert()
    interpreter = litert.Interpreter(model_content=content)
    interpreter.allocate_tensors()
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x)
    interpreter.invoke()
    return interpreter.get_tensor(interpreter.get_output_details()[0]["index"])


def test_inexact_layers_are_reported():
    graph = singe_keras.trace(zoo.build("dense_on_sequence"))
    assert graph.inexact_layers == ["ln"]
    for name in EXACT:
        assert singe_keras.trace(zoo.build(name)).inexact_layers == []


def test_plan_of_another_model_is_rejected():
    graph = singe_keras.trace(zoo.build("chain"))
    plan = singe_keras.Plan.full(singe_keras.trace(zoo.build("residual")))
    with pytest.raises(ValueError, match="does not match"):
        singe_keras.rebuild(graph, plan)


_APPLICATIONS = {
    "ResNet50": 64, "MobileNetV3Small": 64, "MobileNetV3Large": 64, "ConvNeXtTiny": 64,
    "EfficientNetB0": 64, "EfficientNetV2B0": 64, "InceptionResNetV2": 75,
    "DenseNet121": 64, "NASNetMobile": 64, "MobileNetV2": 64, "ResNet50V2": 64,
}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(_APPLICATIONS))
def test_keras_applications_prune_and_rebuild_exactly(name, tmp_path):
    size = _APPLICATIONS[name]
    keras.utils.set_random_seed(0)
    model = getattr(keras.applications, name)(
        weights=None, input_shape=(size, size, 3), classes=10
    )
    model = zoo.randomize_statistics(model)
    pruned = singe_keras.prune(
        model, None, target_flops=0.7, criterion="random", rounds=1, finetune_steps=0,
        verbose=0,
    )
    assert singe_keras.count_flops(pruned) <= 0.7 * singe_keras.count_flops(model)
    path = tmp_path / "pruned.keras"
    pruned.save(path)
    x = zoo.sample_inputs(model, batch=2)
    np.testing.assert_array_equal(keras.models.load_model(path)(x), pruned(x))
    graph = singe_keras.trace(model)
    plan = zoo.random_plan(graph)
    gated = singe_keras.GatedModel(graph)
    gated.set_plan(plan)
    expected = gated(x)
    if not graph.inexact_layers:  # ConvNeXt prunes through LayerNormalization
        _assert_close_to_scale(singe_keras.rebuild(graph, plan)(x), expected)
    assert np.abs(np.asarray(expected) - np.asarray(model(x))).max() > 0


@pytest.mark.slow
def test_backbone_used_as_a_layer_rebuilds_exactly():
    backbone = keras.applications.MobileNetV2(
        weights=None, include_top=False, input_shape=(32, 32, 3)
    )
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.GlobalAveragePooling2D()(backbone(inputs))
    model = zoo.randomize(keras.Model(inputs, keras.layers.Dense(4)(x)))
    graph = singe_keras.trace(model)
    assert any(g.name.startswith(backbone.name + "/") for g in graph.groups)
    plan = zoo.random_plan(graph)
    gated = singe_keras.GatedModel(graph)
    gated.set_plan(plan)
    x = zoo.sample_inputs(model, batch=2)
    # About 50 layers of random weights: the round-off depends on the CPU's
    # kernels (1.1e-5 of the scale on an AMD EPYC); a missing gate is O(1).
    _assert_close_to_scale(singe_keras.rebuild(graph, plan)(x), gated(x), tolerance=1e-4)


def test_a_custom_block_called_twice_is_rebuilt_once_and_exactly():
    inputs = keras.Input((8, 8, 3))
    x = zoo.conv_bn(inputs, 6, "stem")
    block = zoo.ResidualBlock(6, name="block")
    y = keras.layers.Concatenate()([block(x), block(keras.layers.Conv2D(6, 1, name="side")(x))])
    model = zoo.randomize(keras.Model(inputs, zoo.head(y)))
    graph = singe_keras.trace(model)
    assert set(graph.group("stem_conv").producers) == {"stem_conv", "block/conv", "side"}
    plan = zoo.random_plan(graph)
    gated = singe_keras.GatedModel(graph)
    gated.set_plan(plan)
    small = singe_keras.rebuild(graph, plan)
    x = zoo.sample_inputs(model)
    _assert_close_to_scale(small(x), gated(x))
    assert [layer.name for layer in small.layers].count("block") == 1


@pytest.mark.slow
def test_pruned_mobilenet_v3_converts_to_tflite():
    keras.utils.set_random_seed(0)
    model = zoo.randomize_statistics(
        keras.applications.MobileNetV3Small(weights=None, input_shape=(64, 64, 3), classes=10)
    )
    pruned = singe_keras.prune(
        model, None, target_flops=0.7, criterion="random", rounds=1, finetune_steps=0,
        verbose=0,
    )
    x = zoo.sample_inputs(model, batch=1)
    _assert_close_to_scale(_tflite_output(pruned, x), pruned(x), tolerance=1e-4)
