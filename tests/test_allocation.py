import math

import keras
import numpy as np
import pytest

import singe_keras
import zoo
from singe_keras import allocation, checks


def _chain_graph():
    return singe_keras.trace(zoo.build("chain"))  # groups a_conv (6 units), b_conv (5)


def _relevance(graph, seed=0):
    return np.random.default_rng(seed).uniform(0.1, 2.0, graph.num_units)


def _expected(values, kept, normalization):
    """Each normalization's formula, for one group's `values` (kept: a mask)."""
    k = values[kept]
    if normalization == "mean":
        return values / np.mean(np.abs(k))
    if normalization == "max":
        return values / np.max(np.abs(k))
    if normalization == "sum":
        return values / np.sum(np.abs(k))
    if normalization == "l2":
        return values / np.sqrt(np.sum(k**2))
    if normalization == "gaussian":
        mean = k.sum() / len(k)
        std = np.sqrt(((k - mean) ** 2).sum() / (len(k) - 1))
        return (values - mean) / (std + 1e-8)
    return values


@pytest.mark.parametrize("normalization", ["none", "mean", "max", "sum", "l2", "gaussian"])
@pytest.mark.parametrize("with_removed", [False, True])
def test_each_normalization_follows_its_formula(normalization, with_removed):
    graph = _chain_graph()
    relevance = _relevance(graph)
    relevance[2] = -0.5  # a signed relevance: scales use absolute values
    kept = np.ones(graph.num_units, bool)
    if with_removed:
        kept[[0, 7, 8]] = False  # statistics over the kept units only
    got = allocation.normalize(graph, relevance, normalization, kept)
    for group in graph.groups:
        units = slice(graph.group_offset(group.name), graph.group_offset(group.name) + group.size)
        np.testing.assert_allclose(
            got[units], _expected(relevance[units], kept[units], normalization), rtol=1e-12
        )
    if normalization != "none":
        assert not np.allclose(got, relevance)  # the group scales are not all 1


def test_flops_normalization_divides_by_the_flops_one_unit_saves():
    graph = _chain_graph()
    relevance = _relevance(graph)
    got = allocation.normalize(graph, relevance, "flops")
    # 8x8 inputs, 3x3 "same" convs 3 -> 6 -> 5, then pooling and Dense(5 -> 3).
    one_a = 2 * (64 * 9 * 3 + 64 * 9 * 5)  # a_conv's filter and b_conv's reading it
    one_b = 2 * (64 * 9 * 6 + 3)  # b_conv's filter and the Dense row
    np.testing.assert_allclose(got[:6], relevance[:6] / one_a)
    np.testing.assert_allclose(got[6:], relevance[6:] / one_b)


@pytest.mark.parametrize("normalization", ["mean", "max", "sum", "l2", "gaussian"])
def test_zero_and_constant_groups_stay_finite(normalization):
    graph = _chain_graph()
    relevance = np.concatenate([np.zeros(6), np.full(5, 0.3)])
    got = allocation.normalize(graph, relevance, normalization)
    assert np.isfinite(got).all()
    np.testing.assert_array_equal(got[:6], 0.0)
    expected = 0.0 if normalization == "gaussian" else 0.3 / {
        "mean": 0.3, "max": 0.3, "sum": 1.5, "l2": math.sqrt(5 * 0.09)}[normalization]
    np.testing.assert_allclose(got[6:], expected)


@pytest.mark.parametrize("normalization", ["mean", "max", "sum", "l2", "gaussian"])
def test_per_group_normalizations_ignore_a_group_scale(normalization):
    graph = singe_keras.trace(zoo.build("residual"))
    relevance = _relevance(graph, seed=1)
    target = 0.5 * singe_keras.count_flops(graph)
    scaled = relevance.copy()
    first = graph.groups[0]
    scaled[: first.size] *= 1000.0
    plans = [allocation.allocate(graph, r, target, normalization=n)
             for r in (relevance, scaled) for n in (normalization, "none")]
    assert plans[0] == plans[2]
    assert plans[1] != plans[3]  # unnormalized, the scaled group is kept whole


@pytest.mark.parametrize("normalization", ["flops", "mean", "none"])
@pytest.mark.parametrize("target", [0.5, 0.7, 0.85])
@pytest.mark.parametrize("round_to", [1, 2])
def test_no_removed_block_fits_back_under_the_target(normalization, target, round_to):
    graph = singe_keras.trace(zoo.build("residual"))
    relevance = singe_keras.criteria.get("l1").score(singe_keras.GatedModel(graph))
    budget = target * singe_keras.count_flops(graph)
    plan = allocation.allocate(graph, relevance, budget, normalization=normalization,
                               round_to=round_to)
    assert singe_keras.count_flops(graph, plan) <= budget
    for group in graph.groups:
        kept = plan.keep[group.name]
        removed = sorted(set(range(group.size)) - set(kept))
        if not removed:
            continue
        # The cheapest block to put back: round_to units (or the rest of the group).
        bigger = plan.with_kept(group.name, list(kept) + removed[:round_to])
        assert singe_keras.count_flops(graph, bigger) > budget, group.name


def test_put_back_restores_the_most_relevant_removed_units_first():
    graph = _chain_graph()
    relevance = np.arange(graph.num_units, dtype=float)  # unit 0 least relevant
    # b_conv (units 6-10) is far more relevant: a only gives units up.
    relevance[6:] += 100.0
    budget = 0.6 * singe_keras.count_flops(graph)
    plan = allocation.allocate(graph, relevance, budget, normalization="none")
    kept_a = plan.keep["a_conv"]
    assert kept_a == tuple(range(6 - len(kept_a), 6))  # a's best units survive


def test_kept_units_stay_removed():
    graph = _chain_graph()
    kept = np.ones(graph.num_units, bool)
    kept[[4, 5, 10]] = False  # the most relevant units, already removed
    relevance = np.arange(graph.num_units, dtype=float)
    plan = allocation.allocate(graph, relevance, 0.8 * singe_keras.count_flops(graph),
                               normalization="mean", kept_units=kept)
    assert not plan.mask(graph)[~kept].any()


@pytest.mark.parametrize(
    "ratio, min_units, expected",
    [(0.5, 1, {"a_conv": 3, "b_conv": 3}),  # ceil(0.5 * 6), ceil(0.5 * 5)
     (0.7, 1, {"a_conv": 2, "b_conv": 2}),  # ceil(1.8), ceil(1.5); 0.3 * 10 is not 4
     (0.5, 4, {"a_conv": 4, "b_conv": 4})],  # min_units wins
)
def test_max_pruning_ratio_sets_a_floor_per_group(ratio, min_units, expected):
    graph = _chain_graph()
    smallest = allocation._smallest_plan(graph, min_units, 1, ratio)
    assert {name: len(units) for name, units in smallest.keep.items()} == expected
    budget = singe_keras.count_flops(graph, smallest)
    plan = allocation.allocate(graph, _relevance(graph), budget, normalization="none",
                               min_units=min_units, max_pruning_ratio=ratio)
    assert {name: len(units) for name, units in plan.keep.items()} == expected
    with pytest.raises(ValueError, match=f"max_pruning_ratio={ratio}, the smallest reachable"):
        allocation.allocate(graph, _relevance(graph), budget - 1, min_units=min_units,
                            max_pruning_ratio=ratio)
    with pytest.raises(ValueError, match="raise `max_pruning_ratio`"):
        allocation.check_reachable(graph, budget - 1, None, min_units, 1, ratio)


def test_max_pruning_ratio_counts_from_the_original_sizes():
    graph = _chain_graph()
    floors = {"a_conv": 1, "b_conv": 5}  # half of the sizes given below
    smallest = singe_keras.Plan.full(graph).with_kept("a_conv", [0])
    plan = allocation.allocate(graph, _relevance(graph), singe_keras.count_flops(graph, smallest),
                               normalization="none", max_pruning_ratio=0.5,
                               original_sizes={"a_conv": 2, "b_conv": 10})
    assert {name: len(units) for name, units in plan.keep.items()} == floors


@pytest.mark.parametrize("ratio", [0, 1, 1.5, -0.2, True, "0.5", float("nan")])
def test_bad_max_pruning_ratio_is_rejected(ratio):
    with pytest.raises(ValueError, match=r"`max_pruning_ratio` must be a number in \(0, 1\)"):
        checks.check_options(0.5, None, "mean", 0, ratio)
    with pytest.raises(ValueError, match="`max_pruning_ratio` must be"):
        singe_keras.PruningCallback(target_flops=0.5, criterion="l1", max_pruning_ratio=ratio)


def test_prune_rounds_do_not_compound_the_max_pruning_ratio():
    model = zoo.build("residual")
    graph = singe_keras.trace(model)
    floors = {g.name: math.ceil(0.4 * g.size) for g in graph.groups}
    smallest = singe_keras.Plan.full(graph)
    for name, count in floors.items():
        smallest = smallest.with_kept(name, range(count))
    target = singe_keras.count_flops(graph, smallest) / singe_keras.count_flops(graph)
    pruned = singe_keras.prune(model, target_flops=target * 1.05, criterion="l1", rounds=3,
                               finetune_steps=0, max_pruning_ratio=0.6, verbose=0)
    sizes = {g.name: g.size for g in singe_keras.trace(pruned).groups}
    assert all(sizes[name] >= floor for name, floor in floors.items())
    with pytest.raises(ValueError, match="max_pruning_ratio=0.6"):
        singe_keras.prune(model, target_flops=target * 0.95, criterion="l1",
                          finetune_steps=0, max_pruning_ratio=0.6, verbose=0)


def test_callback_respects_max_pruning_ratio():
    model = zoo.build("residual")
    sizes = {g.name: g.size for g in singe_keras.trace(model).groups}
    model.compile(optimizer=keras.optimizers.SGD(0.0), loss="mse")
    callback = singe_keras.PruningCallback(target_flops=0.5, criterion="l1",
                                           rounds=2, normalization="mean",
                                           max_pruning_ratio=0.6, verbose=0)
    x = zoo.sample_inputs(model, batch=16)
    model.fit(x, np.zeros((16, 3)), epochs=2, callbacks=[callback], verbose=0)
    small = singe_keras.trace(singe_keras.strip(model))
    assert all(g.size >= math.ceil(0.4 * sizes[g.name]) for g in small.groups)
    assert any(g.size < sizes[g.name] for g in small.groups)


def test_checkpoint_with_another_max_pruning_ratio_is_refused(tmp_path):
    model = zoo.build("chain")
    arguments = dict(target_flops=0.5, criterion="l1", rounds=2, finetune_steps=0,
                     checkpoint_dir=tmp_path, verbose=0)
    singe_keras.prune(model, max_pruning_ratio=0.8, **arguments)
    with pytest.raises(ValueError, match="another model or other arguments"):
        singe_keras.prune(model, max_pruning_ratio=0.9, **arguments)


def _residual_cnn():
    """Issue 26's model: filters of very unequal cost (a residual pair, a strided conv)."""
    keras.utils.set_random_seed(0)
    layers = keras.layers
    inputs = keras.Input((16, 16, 3))
    x = layers.Conv2D(16, 3, padding="same", name="conv1")(inputs)
    x = layers.ReLU(name="relu1")(layers.BatchNormalization(name="bn1")(x))
    y = layers.Conv2D(16, 3, padding="same", name="conv2")(x)
    x = layers.Add(name="add")([x, layers.BatchNormalization(name="bn2")(y)])
    x = layers.Conv2D(32, 3, strides=2, padding="same", name="conv3")(x)
    x = layers.Dense(32, name="dense")(layers.GlobalAveragePooling2D(name="pool")(x))
    model = keras.Model(inputs, layers.Dense(4, name="logits")(x))
    model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


@pytest.mark.parametrize("target,fraction", [("flops", 0.3), ("flops", 0.5), ("params", 0.5)])
@pytest.mark.parametrize("rounds", [1, 2, 3, 4])
def test_every_round_count_ends_within_two_percent_of_the_target(target, fraction, rounds):
    # A unit of the residual group costs ~7% of the FLOPs, one of conv3 ~0.6%:
    # the last round must fill the gap a wide unit leaves with narrow ones.
    model = _residual_cnn()
    pruned = singe_keras.prune(model, **{f"target_{target}": fraction}, criterion="l1",
                               rounds=rounds, finetune_steps=0, verbose=0)
    measure = singe_keras.count_flops if target == "flops" else keras.Model.count_params
    assert 0.98 * fraction <= measure(pruned) / measure(model) <= fraction
