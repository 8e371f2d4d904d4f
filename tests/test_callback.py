import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf

import singe_keras
import zoo
from singe_keras import gate_gradients

CE = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def _data(model, n=64):
    rng = np.random.default_rng(0)
    return zoo.sample_inputs(model, batch=n), rng.integers(0, 3, n)


def _fit(model, callback, epochs=3, **compile_options):
    model.compile(optimizer=keras.optimizers.SGD(0.01), loss=CE, **compile_options)
    x, y = _data(model)
    model.fit(x, y, epochs=epochs, batch_size=16, callbacks=[callback], verbose=0)
    return x


@pytest.mark.parametrize("name", ["residual", "concat", "depthwise_separable", "nested"])
def test_stripped_model_equals_the_masked_model(name):
    model = zoo.build(name)
    callback = singe_keras.PruningCallback(target_flops=0.5, criterion="l1",
                                           rounds=2, verbose=0)
    x = _fit(model, callback)
    small = singe_keras.strip(model)
    expected = np.asarray(model(x[:8]))
    assert np.abs(np.asarray(small(x[:8])) - expected).max() <= 1e-5 * np.abs(expected).max()
    assert singe_keras.count_flops(small) <= 0.5 * singe_keras.count_flops(zoo.build(name))


def test_callback_reaches_the_same_flops_as_prune():
    # "l2" normalization: with "flops", l1 scores differ between the paths,
    # since masked kernels still hold the rows that read pruned channels
    # (PruningCallback docstring).
    model = zoo.build("residual")
    pruned = singe_keras.prune(model, target_flops=0.5, criterion="l1", rounds=2,
                               finetune_steps=0, normalization="l2", verbose=0)
    callback = singe_keras.PruningCallback(target_flops=0.5, criterion="l1",
                                           rounds=2, normalization="l2", verbose=0)
    trained = zoo.build("residual")
    trained.compile(optimizer=keras.optimizers.SGD(0.0), loss=CE)  # weights stay put
    x, y = _data(trained)
    trained.fit(x, y, epochs=2, batch_size=16, callbacks=[callback], verbose=0)
    assert singe_keras.count_flops(singe_keras.strip(trained)) == singe_keras.count_flops(pruned)


@pytest.mark.parametrize(
    "compile_options",
    [{"steps_per_execution": 4}, {"jit_compile": True}],
)
def test_masked_units_stay_zero_through_training(compile_options):
    model = zoo.build("chain")
    callback = singe_keras.PruningCallback(target_flops=0.5, criterion="l2",
                                           rounds=1, verbose=0)
    _fit(model, callback, epochs=2, **compile_options)
    kernel = keras.ops.convert_to_numpy(model.get_layer("a_conv").kernel)
    removed = np.all(kernel == 0, axis=(0, 1, 2))
    assert 0 < removed.sum() < 6
    gamma = keras.ops.convert_to_numpy(model.get_layer("a_bn").gamma)
    np.testing.assert_array_equal(gamma[removed], 0)


def test_callback_works_under_a_distribution_strategy():
    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    with strategy.scope():
        model = zoo.build("chain")
        model.compile(optimizer=keras.optimizers.SGD(0.01), loss=CE)
    callback = singe_keras.PruningCallback(target_flops=0.5, criterion="l1",
                                           rounds=1, verbose=0)
    x, y = _data(model)
    model.fit(x, y, epochs=2, batch_size=16, callbacks=[callback], verbose=0)
    small = singe_keras.strip(model)
    np.testing.assert_allclose(small(x[:4]), model(x[:4]), rtol=1e-5, atol=1e-5)


def test_model_saved_mid_training_loads_back_and_continues(tmp_path):
    model = zoo.build("residual")
    arguments = dict(target_flops=0.4, criterion="l1", rounds=3, verbose=0)
    x = _fit(model, singe_keras.PruningCallback(**arguments), epochs=2)
    path = tmp_path / "mid.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    before = singe_keras.count_flops(singe_keras.strip(model))
    assert singe_keras.count_flops(singe_keras.strip(loaded)) == before
    x, y = _data(loaded)
    loaded.fit(x, y, epochs=3, initial_epoch=2, batch_size=16,
               callbacks=[singe_keras.PruningCallback(**arguments)], verbose=0)
    final = singe_keras.count_flops(singe_keras.strip(loaded))
    assert final < before
    assert final <= 0.4 * singe_keras.count_flops(zoo.build("residual"))


def test_unmaskable_units_are_left_alone_with_a_warning():
    model = zoo.build("nonzero_at_zero")
    callback = singe_keras.PruningCallback(target_flops=0.8, criterion="l1",
                                           rounds=1, verbose=0)
    with pytest.warns(UserWarning, match="sig"):
        x = _fit(model, callback, epochs=1)
    small = singe_keras.strip(model)
    assert small.get_layer("c1").filters == 6
    np.testing.assert_allclose(small(x[:4]), model(x[:4]), rtol=1e-5, atol=1e-5)


def _attention_heavy():
    """A transformer block whose FLOPs are mostly its 8 attention heads."""
    inputs = keras.Input((32, 8))
    x = keras.layers.Dense(16, name="embed")(inputs)
    x = keras.layers.Add(name="add")(
        [x, keras.layers.MultiHeadAttention(8, 16, name="attention")(x, x)])
    x = keras.layers.GlobalAveragePooling1D(name="pool")(x)
    return keras.Model(inputs, keras.layers.Dense(3, name="logits")(x))


def test_callback_prunes_attention_heads_exactly():
    # Without heads, 0.4 of these FLOPs cannot be reached (`prune` reaches it).
    model = _attention_heavy()
    callback = singe_keras.PruningCallback(target_flops=0.4, criterion="l1",
                                           rounds=1, verbose=0)
    x = _fit(model, callback, epochs=1)
    small = singe_keras.strip(model)
    assert small.get_layer("attention").get_config()["num_heads"] < 8
    assert singe_keras.count_flops(small) <= 0.4 * singe_keras.count_flops(_attention_heavy())
    expected = np.asarray(model(x[:8]))
    assert np.abs(np.asarray(small(x[:8])) - expected).max() <= 1e-5 * np.abs(expected).max()


def test_callback_takes_the_same_step_as_prune():
    model = zoo.build("residual")
    x, y = _data(model)
    model.compile(loss=CE)
    pruned = singe_keras.prune(model, (x, y), target_flops=0.5, rounds=1, finetune_steps=0,
                               recalibration_batches=0, verbose=0)
    callback = singe_keras.PruningCallback(target_flops=0.5, dataset=(x, y), rounds=1,
                                           recalibration_batches=0, verbose=0)
    trained = keras.models.clone_model(model)
    trained.set_weights(model.get_weights())
    trained.compile(optimizer=keras.optimizers.SGD(0.0), loss=CE)  # weights stay put
    trained.fit(x, y, epochs=1, batch_size=16, callbacks=[callback], verbose=0)
    small = singe_keras.strip(trained)
    kernels = [layer.name for layer in pruned.layers if hasattr(layer, "kernel")]
    assert kernels
    for name in kernels:  # the same units kept, in the same layers
        np.testing.assert_array_equal(small.get_layer(name).kernel, pruned.get_layer(name).kernel)


def test_callback_re_estimates_batchnorm_after_each_event():
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(8, 3, name="conv")(inputs)
    # momentum=1: fit's own passes leave the moving statistics alone.
    x = keras.layers.BatchNormalization(momentum=1.0, name="bn")(x)
    x = keras.layers.Conv2D(8, 3, name="conv2")(keras.layers.ReLU()(x))
    x = keras.layers.BatchNormalization(momentum=1.0, name="bn2")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(3)(x))
    x, y = _data(model)
    callback = singe_keras.PruningCallback(target_flops=0.5, criterion="l1", dataset=(x, y),
                                           rounds=1, verbose=0)
    model.compile(optimizer=keras.optimizers.SGD(0.0), loss=CE)
    model.fit(x, y, epochs=1, batch_size=16, callbacks=[callback], verbose=0)
    expected = keras.models.clone_model(model)
    expected.set_weights(model.get_weights())
    singe_keras.recalibrate_batchnorm(expected, x, batches=20, batch_size=32)
    for name in ("bn", "bn2"):
        moving_mean = np.asarray(model.get_layer(name).moving_mean)
        assert np.abs(moving_mean).max() > 0  # not the initial zeros
        np.testing.assert_allclose(moving_mean, expected.get_layer(name).moving_mean,
                                   rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(model.get_layer(name).moving_variance,
                                   expected.get_layer(name).moving_variance,
                                   rtol=1e-5, atol=1e-6)


def test_strip_does_not_modify_the_model():
    model = zoo.build("chain")
    _fit(model, singe_keras.PruningCallback(target_flops=0.5, criterion="l1",
                                            rounds=1, verbose=0), epochs=1)
    config = model.get_config()
    singe_keras.strip(model)
    assert model.get_config() == config


def test_missing_target_is_rejected():
    with pytest.raises(ValueError, match="Give `target_flops` or `target_params`"):
        singe_keras.PruningCallback(criterion="l1")


def test_gradient_criterion_without_data_is_rejected():
    with pytest.raises(ValueError, match="needs scoring data"):
        singe_keras.PruningCallback(target_flops=0.5)


@pytest.mark.parametrize("option, value", [("rounds", 0), ("frequency", 0),
                                           ("start_epoch", -1), ("normalization", "x"),
                                           ("min_units", 0), ("round_to", 0), ("verbose", 3)])
def test_bad_schedule_is_rejected(option, value):
    with pytest.raises(ValueError, match=f"`{option}` must be"):
        singe_keras.PruningCallback(target_flops=0.5, criterion="l1", **{option: value})


def test_bad_target_is_rejected():
    with pytest.raises(ValueError, match="`target_flops` must be in"):
        singe_keras.PruningCallback(target_flops=-1, criterion="l1")


def test_callback_after_a_warm_up_fit_keeps_pruned_units_at_zero():
    model = zoo.build("chain")
    model.compile(optimizer=keras.optimizers.SGD(0.05), loss=CE)
    x, y = _data(model)
    model.fit(x, y, epochs=1, batch_size=16, verbose=0)  # compiles a train function
    callback = singe_keras.PruningCallback(target_flops=0.5, criterion="l1",
                                           rounds=1, verbose=0)
    model.fit(x, y, epochs=2, batch_size=16, callbacks=[callback], verbose=0)
    np.testing.assert_allclose(singe_keras.strip(model)(x[:4]), model(x[:4]), rtol=1e-5, atol=1e-5)


def test_too_few_epochs_are_reported_when_training_begins_with_the_fix():
    model = zoo.build("chain")
    callback = singe_keras.PruningCallback(target_flops=0.5, criterion="l1",
                                           rounds=4, verbose=0)
    callback.set_model(model)
    callback.set_params({"epochs": 2, "verbose": 0, "steps": 1})
    with pytest.warns(UserWarning, match="2 pruning events will not happen") as record:
        callback.on_train_begin()
    message = next(str(w.message) for w in record if "pruning events" in str(w.message))
    assert "`epochs=4`" in message and "`rounds=2`" in message


def test_enough_epochs_give_no_warning(recwarn):
    model = zoo.build("chain")
    callback = singe_keras.PruningCallback(target_flops=0.5, criterion="l1",
                                           rounds=2, frequency=2, verbose=0)
    _fit(model, callback, epochs=3)
    assert not [w for w in recwarn if "PruningCallback" in str(w.message)]


def test_early_stopping_before_the_last_event_is_reported():
    model = zoo.build("chain")
    model.compile(optimizer=keras.optimizers.SGD(0.01), loss=CE)
    x, y = _data(model)
    callback = singe_keras.PruningCallback(target_flops=0.5, criterion="l1",
                                           rounds=3, verbose=0)

    class StopAfterFirstEpoch(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            self.model.stop_training = True

    with pytest.warns(UserWarning, match="fit stopped after 1 of PruningCallback's 3") as record:
        model.fit(x, y, epochs=5, batch_size=16, verbose=0,
                  callbacks=[callback, StopAfterFirstEpoch()])
    # At the user's `fit` line, not inside Keras's trainer.
    assert {w.filename for w in record if "fit stopped" in str(w.message)} == {__file__}


def test_strip_keeps_the_compile_settings():
    model = zoo.build("chain")
    model.compile(optimizer=keras.optimizers.Adam(0.003), loss=CE, metrics=["accuracy"])
    x, y = _data(model)
    model.fit(x, y, epochs=1, batch_size=16, verbose=0, callbacks=[
        singe_keras.PruningCallback(target_flops=0.5, criterion="l1", rounds=1,
                                    verbose=0)])
    small = singe_keras.strip(model)
    assert small.compiled and small.loss is CE
    assert isinstance(small.optimizer, keras.optimizers.Adam)
    assert small.optimizer is not model.optimizer
    assert float(small.optimizer.learning_rate) == pytest.approx(0.003)
    logs = small.evaluate(x, y, verbose=0, return_dict=True)
    assert set(logs) == {"loss", "accuracy"}
    small.fit(x, y, epochs=1, batch_size=16, verbose=0)  # trains as it is


def test_strip_of_an_uncompiled_model_stays_uncompiled():
    model = zoo.build("chain")
    assert not singe_keras.strip(model).compiled


def _conv_bn_model(**bn_options):
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(6, 3, padding="same", name="conv")(inputs)
    x = keras.layers.BatchNormalization(name="bn", **bn_options)(x)
    x = keras.layers.Activation("tanh", name="tanh")(x)
    return zoo.randomize(keras.Model(inputs, zoo.head(x)))


@pytest.mark.parametrize("scale", [True, False])
@pytest.mark.parametrize("center", [True, False])
def test_masked_channels_are_zero_after_every_batch_normalization(scale, center):
    model = _conv_bn_model(scale=scale, center=center)
    callback = singe_keras.PruningCallback(target_flops=0.5, criterion="l1",
                                           rounds=1, verbose=0)
    x = _fit(model, callback, epochs=2)
    removed = np.all(keras.ops.convert_to_numpy(model.get_layer("conv").kernel) == 0,
                     axis=(0, 1, 2))
    assert 0 < removed.sum() < 6
    after_bn = keras.Model(model.input, model.get_layer("bn").output)(x[:8])
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(after_bn)[..., removed], 0)
    expected = np.asarray(model(x[:8]))
    np.testing.assert_allclose(singe_keras.strip(model)(x[:8]), expected, rtol=1e-5, atol=1e-5)


def test_squeeze_excitation_groups_are_pruned_through_the_gate():
    model = zoo.build("squeeze_excitation")
    callback = singe_keras.PruningCallback(target_flops=0.6, criterion="l1",
                                           rounds=2, verbose=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # no "not pruned" warning
        x = _fit(model, callback, epochs=2)
    small = singe_keras.strip(model)
    assert small.get_layer("stem_conv").filters < 8
    assert small.get_layer("se_expand").units == small.get_layer("stem_conv").filters
    original = singe_keras.count_flops(zoo.build("squeeze_excitation"))
    assert singe_keras.count_flops(small) <= 0.6 * original
    np.testing.assert_allclose(small(x[:8]), model(x[:8]), rtol=1e-5, atol=1e-5)


def test_unreachable_target_does_not_blame_ignored_layers_that_were_not_passed():
    model = zoo.build("chain")
    model.compile(optimizer="sgd", loss=CE)
    x, y = _data(model)
    callback = singe_keras.PruningCallback(target_flops=1e-6, criterion="l1", verbose=0)
    with pytest.raises(ValueError, match="cannot be reached") as error:
        model.fit(x, y, epochs=1, callbacks=[callback], verbose=0)
    assert "ignored_layers" not in str(error.value)


def test_one_gated_model_and_one_trace_serve_every_event(monkeypatch):
    steps = []
    attribution_step = gate_gradients.attribution_step

    def spy(gated, loss_fn):
        steps.append(attribution_step(gated, loss_fn))
        return steps[-1]

    monkeypatch.setattr(gate_gradients, "attribution_step", spy)
    model = zoo.build("chain")
    x, y = _data(model)
    callback = singe_keras.PruningCallback(target_flops=0.5, dataset=(x[:16], y[:16]),
                                           rounds=3, verbose=0)
    _fit(model, callback, epochs=3)
    assert len(steps) == 3
    assert len({id(step) for step in steps}) == 1
    assert steps[0].function.experimental_get_tracing_count() == 1


def test_layer_normalization_without_scale_is_left_alone_with_a_warning():
    # Normalized over the channels, a zero channel is not zero: no mask helps.
    inputs = keras.Input((5, 4))
    x = keras.layers.Dense(8, name="d1")(inputs)
    x = keras.layers.LayerNormalization(scale=False, name="ln")(x)
    x = keras.layers.Dense(6, name="d2")(keras.layers.Flatten(name="flatten")(x))
    model = zoo.randomize(keras.Model(inputs, keras.layers.Dense(3, name="logits")(x)))
    callback = singe_keras.PruningCallback(target_flops=0.8, criterion="l1",
                                           rounds=1, verbose=0)
    with pytest.warns(UserWarning, match=r"\['ln'\]"):
        x = _fit(model, callback, epochs=1)
    small = singe_keras.strip(model)
    assert small.get_layer("d1").units == 8 and small.get_layer("d2").units < 6
    np.testing.assert_allclose(small(x[:4]), model(x[:4]), rtol=1e-5, atol=1e-5)


def test_callback_meets_a_latency_target_and_measures_it():
    from staircase_timer import StaircaseTimer

    timer = StaircaseTimer(step=4)
    model = zoo.build("residual")
    callback = singe_keras.PruningCallback(
        criterion="l1", rounds=2, verbose=0, target_latency=0.6,
        latency_model={"timer": timer, "cache_dir": None})
    _fit(model, callback)
    small = singe_keras.strip(model)
    assert callback.latency["predicted_ms"] <= callback.latency["target_ms"]
    assert callback.latency["target_ms"] == pytest.approx(0.6 * timer(zoo.build("residual")))
    assert callback.latency["measured_ms"] == pytest.approx(timer(small))


def test_callback_corrects_its_last_event_until_the_model_measures_at_the_target():
    # As `prune`'s last round: whole models are a convex function of their
    # layers' time, so the tables' plan misses and the budget is corrected.
    from staircase_timer import WholeModelsDiffer, staircase_model

    timer = WholeModelsDiffer(share=3.0, power=2, step=1)
    model = staircase_model()
    callback = singe_keras.PruningCallback(
        criterion="l1", rounds=2, verbose=0, target_latency=0.6,
        latency_model={"timer": timer, "cache_dir": None})
    _fit(model, callback)
    small = singe_keras.strip(model)
    first, *later = callback.latency["corrections"]
    assert first["budget_ms"] == pytest.approx(callback.latency["target_ms"])
    assert abs(first["measured_ratio"] - 0.6) > 0.05 * 0.6  # the tables alone miss
    assert later and later[-1]["budget_ms"] != first["budget_ms"]
    assert callback.latency["measured_ms"] == pytest.approx(timer(small))
    assert abs(timer(small) / timer(staircase_model()) - 0.6) <= 0.05 * 0.6


def test_callback_rejects_a_bad_latency_target():
    with pytest.raises(ValueError, match="`target_latency` must be"):
        singe_keras.PruningCallback(target_latency=2.0, criterion="l1")
    with pytest.raises(TypeError, match="`latency_model` must be"):
        singe_keras.PruningCallback(target_latency=0.5, criterion="l1", latency_model="fast")


def test_former_argument_names_still_work_with_a_deprecation_warning():
    x = np.zeros((4, 8, 8, 3), "float32")
    with pytest.warns(DeprecationWarning, match=r"pruning_events=.*deprecated: pass `rounds=`"):
        callback = singe_keras.PruningCallback(target_flops=0.5, criterion="l1",
                                               pruning_events=2)
    assert callback.rounds == 2
    with pytest.warns(DeprecationWarning, match=r"data=.*deprecated: pass `dataset=`"):
        callback = singe_keras.PruningCallback(target_flops=0.5, data=(x, np.zeros(4)))
    assert callback.dataset[0] is x


def test_a_name_and_its_former_name_together_are_rejected():
    with pytest.raises(TypeError, match="both `rounds` and its deprecated name `pruning_events`"):
        singe_keras.PruningCallback(target_flops=0.5, criterion="l1", rounds=3,
                                    pruning_events=2)
