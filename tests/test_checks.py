import keras
import numpy as np
import pytest

import singe_keras
import zoo
from singe_keras import checks

CE = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def _set_first(variable, value):
    array = keras.ops.convert_to_numpy(variable).copy()
    array.flat[0] = value
    variable.assign(array)


def _broken(layer="a_conv", weight="kernel", value=np.nan):
    """The compiled zoo chain with one non-finite value in `layer`'s `weight`."""
    model = zoo.build("chain")
    model.compile(optimizer="sgd", loss=CE)
    _set_first(getattr(model.get_layer(layer), weight), value)
    return model


def _data(model, n=16):
    return zoo.sample_inputs(model, batch=n), np.arange(n) % 3


def test_finite_weights_pass():
    checks.check_finite_weights(zoo.build("nested"))


def test_prune_names_the_weight_before_any_work(capsys):
    model = _broken()
    with pytest.raises(ValueError, match=r"layer 'a_conv', weight 'a_conv/kernel' \(1 of 162"):
        singe_keras.prune(model, _data(model), target_flops=0.5, finetune_steps=2)
    assert capsys.readouterr().out == ""  # no scoring bar, no round line


def test_score_checks_non_trainable_weights_too():
    model = _broken(layer="a_bn", weight="moving_variance", value=np.inf)
    with pytest.raises(ValueError, match=r"layer 'a_bn', weight 'a_bn/moving_variance'"):
        singe_keras.score(model, criterion="l1")
    graph = singe_keras.trace(model)  # every form of `model` is checked
    for form in (graph, singe_keras.GatedModel(graph)):
        with pytest.raises(ValueError, match="must have finite weights"):
            singe_keras.score(form, criterion="l1")


def test_a_nested_model_names_its_own_layer_and_the_inner_weight():
    model = zoo.build("nested")
    inner = model.get_layer("backbone").get_layer("inner_conv")
    _set_first(inner.kernel, np.nan)
    with pytest.raises(ValueError, match=r"layer 'backbone', weight 'inner_conv/kernel'"):
        checks.check_finite_weights(model)


def test_callback_refuses_before_the_first_step():
    model = _broken()
    callback = singe_keras.PruningCallback(target_flops=0.5, criterion="l1", verbose=0)
    with pytest.raises(ValueError, match="layer 'a_conv', weight 'a_conv/kernel'"):
        model.fit(*_data(model), epochs=1, callbacks=[callback], verbose=0)
    assert int(model.optimizer.iterations) == 0


def test_callback_names_the_event_when_weights_diverge_in_fit():
    model = zoo.build("chain")
    model.compile(optimizer="sgd", loss=CE)
    x, y = _data(model)  # the first event scores; then NaN inputs make the weights NaN
    x[:, 0, 0, 0] = np.nan
    callback = singe_keras.PruningCallback(target_flops=0.5, criterion="l1", rounds=2,
                                           verbose=0)
    with pytest.raises(ValueError, match=r"pruning event 2/2: .*layer 'a_conv', weight"):
        model.fit(x, y, epochs=2, callbacks=[callback], verbose=0)


def test_finite_weights_with_nan_inputs_still_give_non_finite_relevance():
    model = zoo.build("chain")
    model.compile(optimizer="sgd", loss=CE)
    x, y = _data(model)
    x[:, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="'taylor' criterion gave non-finite relevance"):
        singe_keras.score(model, (x, y), "taylor")
