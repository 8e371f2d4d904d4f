"""keras-hub backbones built from constructor arguments (no presets, no network)."""

import keras
import numpy as np
import pytest

import singe_keras
import zoo

pytest.importorskip("keras_hub")


@pytest.mark.slow
@pytest.mark.parametrize("name", list(zoo.KERAS_HUB))
def test_keras_hub_backbones_prune_and_rebuild_exactly(name):
    model = zoo.keras_hub_classifier(name)
    pruned = singe_keras.prune(
        model, None, target_flops=0.7, criterion="random", rounds=1, finetune_steps=0,
        verbose=0,
    )
    assert singe_keras.count_flops(pruned) <= 0.7 * singe_keras.count_flops(model)
    graph = singe_keras.trace(model)
    assert graph.prunable_flops_share() >= 0.8
    plan = zoo.random_plan(graph)
    gated = singe_keras.GatedModel(graph)
    gated.set_plan(plan)
    x = zoo.sample_inputs(model, batch=2)
    expected = np.asarray(gated(x))
    actual = np.asarray(singe_keras.rebuild(graph, plan)(x))
    assert np.abs(actual - expected).max() <= 1e-5 * np.abs(expected).max()
    assert np.abs(expected - np.asarray(model(x))).max() > 0


def test_vit_patching_is_a_costed_barrier_that_rebuilds():
    from keras_hub.src.models.vit.vit_layers import ViTPatchingAndEmbedding

    inputs = keras.Input((8, 8, 3))
    x = ViTPatchingAndEmbedding((8, 8), (4, 4), 6, use_patch_bias=False, name="patching")(inputs)
    x = keras.layers.Dense(5, name="hidden")(x)
    model = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.Flatten()(x)))
    zoo.randomize(model)
    with pytest.warns(UserWarning, match="class token and position embedding"):
        graph = singe_keras.trace(model)
    macs = {c.path: c.macs for c in singe_keras.count_costs(graph).layers}["patching"]
    assert macs == 4 * (4 * 4) * 3 * 6  # 4 patches of 4x4x3 to 6 channels
    plan = singe_keras.Plan.full(graph).with_kept("hidden", [0, 3])
    gated = singe_keras.GatedModel(graph)
    gated.set_plan(plan)
    x = zoo.sample_inputs(model)
    np.testing.assert_allclose(singe_keras.rebuild(graph, plan)(x), gated(x), atol=1e-5)


def test_pruned_vit_backbone_reloads_from_a_keras_file(tmp_path):
    # keras-hub 0.32's ViTPatchingAndEmbedding.get_config does not load back.
    model = zoo.keras_hub_classifier("vit")
    pruned = singe_keras.prune(model, None, target_flops=0.7, criterion="random", rounds=1,
                               finetune_steps=0, verbose=0)
    pruned.save(tmp_path / "pruned.keras")
    loaded = keras.saving.load_model(tmp_path / "pruned.keras")
    x = zoo.sample_inputs(model, batch=2)
    np.testing.assert_array_equal(np.asarray(loaded(x)), np.asarray(pruned(x)))
    assert loaded.count_params() == pruned.count_params() < model.count_params()
