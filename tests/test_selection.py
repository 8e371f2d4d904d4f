import keras
import numpy as np
import pytest

import singe_keras
import zoo
from singe_keras import selection

CE = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def _self_labelled(model, n=96, seed=0):
    """Inputs, and the model's own predictions as labels: the unpruned model fits them best."""
    x = zoo.sample_inputs(model, batch=n, seed=seed)
    return x, np.argmax(keras.ops.convert_to_numpy(model(x)), axis=-1)


def _smallest_plan(graph):
    plan = singe_keras.Plan.full(graph)
    for group in graph.groups:
        plan = plan.with_kept(group.name, [0])
    return plan


@pytest.mark.parametrize("good", selection.CANDIDATES)
def test_choose_keeps_the_plan_with_the_lowest_held_out_loss(good):
    model = zoo.build("residual")
    graph = singe_keras.trace(model)
    weights = [w.copy() for w in model.get_weights()]
    plans = {name: singe_keras.Plan.full(graph) if name == good else _smallest_plan(graph)
             for name in selection.CANDIDATES}
    batches = selection.held_out_batches(_self_labelled(model), 0)
    loss = singe_keras.criteria.resolve_loss(CE, model)  # per sample
    chosen, plan, losses = selection.choose(graph, plans.__getitem__, batches, loss)
    assert chosen == good and plan is plans[good]
    others = [losses[name] for name in selection.CANDIDATES if name != good]
    assert all(losses[good] < loss for loss in others)
    assert others[0] == others[1]  # the same plan: evaluated once
    for before, after in zip(weights, model.get_weights()):  # the candidates are copies
        np.testing.assert_array_equal(before, after)


def test_a_candidate_with_a_non_finite_loss_is_not_chosen():
    model = zoo.build("chain")
    graph = singe_keras.trace(model)
    batches = selection.held_out_batches(_self_labelled(model), 0)
    calls = iter([np.nan, 1.0, 2.0])

    def loss(y_true, y_pred):
        return np.full(len(y_true), next(calls))

    plans = [singe_keras.Plan.full(graph), _smallest_plan(graph),
             _smallest_plan(graph).with_kept(graph.groups[0].name, [0, 1])]
    plans = dict(zip(selection.CANDIDATES, plans))
    # One batch per candidate: each plan's loss is one value of `calls`.
    chosen, _, losses = selection.choose(graph, plans.__getitem__, batches[:1], loss)
    assert np.isnan(losses[selection.CANDIDATES[0]]) and chosen == selection.CANDIDATES[1]


def test_held_out_batches_skip_the_scoring_samples():
    x = np.arange(40, dtype="float32")[:, None]
    y = np.arange(40)
    batches = selection.held_out_batches((x, y), skip=10, count=20, batch_size=8)
    rows = np.concatenate([b[0][b[2] > 0, 0] for b in batches])
    np.testing.assert_array_equal(rows, np.arange(10, 30))
    assert all(len(b[0]) == 8 for b in batches)
    # Nothing past `skip`: the scoring samples themselves.
    batches = selection.held_out_batches((x[:6], y[:6]), skip=10, count=20, batch_size=8)
    np.testing.assert_array_equal(np.concatenate([b[0][b[2] > 0, 0] for b in batches]),
                                  np.arange(6))
