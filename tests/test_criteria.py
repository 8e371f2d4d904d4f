import keras
import numpy as np
import pytest
import tensorflow as tf
import zoo

import singe_keras
from singe_keras import criteria, gate_gradients

CE = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def _compiled(name, seed=0):
    model = zoo.build(name, seed)
    model.compile(loss=CE)
    return model


def _data(model, n=16, seed=3):
    rng = np.random.default_rng(seed)
    return zoo.sample_inputs(model, batch=n, seed=seed), rng.integers(0, 3, n)


def _mean_loss(gated, x, y, gates):
    return float(np.mean(CE.call(y, gated(x, gates=gates))))


def _group_off(graph, name):
    gates = np.ones(graph.num_units, "float32")
    offset = graph.group_offset(name)
    gates[offset : offset + graph.group(name).size] = 0.0
    return gates


@pytest.mark.parametrize("name", ["chain", "residual", "squeeze_excitation", "transformer"])
def test_group_path_is_complete(name):
    model = _compiled(name)
    x, y = _data(model)
    graph = singe_keras.trace(model)
    gated = singe_keras.GatedModel(graph)
    full = _mean_loss(gated, x, y, np.ones(graph.num_units, "float32"))
    errors = {}
    for steps in (2, 64):
        scores = singe_keras.score(
            gated, (x, y),
            criteria.IntegratedGradients(steps=steps, path="group", reduction="signed"),
        )
        errors[steps] = []
        for group in graph.groups:
            expected = full - _mean_loss(gated, x, y, _group_off(graph, group.name))
            errors[steps].append(abs(scores[group.name].sum() - expected) / abs(expected))
    assert max(errors[64]) < 0.01
    assert sum(errors[64]) < sum(errors[2])


def test_unit_path_is_complete():
    model = _compiled("chain")
    x, y = _data(model)
    graph = singe_keras.trace(model)
    gated = singe_keras.GatedModel(graph)
    scores = singe_keras.score(
        gated, (x, y), criteria.IntegratedGradients(steps=32, path="unit", reduction="signed")
    ).flat()
    full = _mean_loss(gated, x, y, np.ones(graph.num_units, "float32"))
    expected = []
    for unit in range(graph.num_units):
        gates = np.ones(graph.num_units, "float32")
        gates[unit] = 0.0
        expected.append(full - _mean_loss(gated, x, y, gates))
    expected = np.array(expected)
    np.testing.assert_allclose(scores, expected, atol=0.01 * np.abs(expected).max())


@pytest.mark.parametrize("path, steps, block_fraction, blocks_per_group, blocks", [
    ("random", 64, 0.5, 2, None),   # 2 blocks in every group
    ("across", 256, 0.25, None, 4),  # 4 blocks across all groups
])
def test_path_is_complete_per_block(path, steps, block_fraction, blocks_per_group, blocks):
    model = _compiled("residual")
    x, y = _data(model, n=1)
    graph = singe_keras.trace(model)
    gated = singe_keras.GatedModel(graph)
    criterion = criteria.IntegratedGradients(
        steps=steps, path=path, reduction="signed", block_fraction=block_fraction, seed=7,
        read="block")  # integrated gradients: `"all"` is not complete
    attributions = singe_keras.score(gated, (x, y), criterion).flat()
    block_of, count = criterion.blocks(graph, 1, np.random.default_rng(7))
    assert count == (blocks or blocks_per_group * len(graph.groups))
    full = _mean_loss(gated, x, y, np.ones(graph.num_units, "float32"))
    for block in range(count):
        inside = block_of[0] == block
        gates = np.where(inside, 0.0, 1.0).astype("float32")
        expected = full - _mean_loss(gated, x, y, gates)
        assert abs(attributions[inside].sum() - expected) < 0.01 * abs(expected)


def test_random_blocks_deal_each_group_evenly():
    graph = singe_keras.trace(zoo.build("residual"))
    criterion = criteria.IntegratedGradients(path="random", block_fraction=0.25)
    block_of, count = criterion.blocks(graph, 5, np.random.default_rng(0))
    assert count == 4 * len(graph.groups) and block_of.shape == (5, graph.num_units)
    for index, group in enumerate(graph.groups):
        start = graph.group_offset(group.name)
        for row in block_of[:, start : start + group.size]:
            # The group's own four blocks, as even as its size allows.
            sizes = np.bincount(row - 4 * index, minlength=4)
            assert len(sizes) == 4 and sizes.max() - sizes.min() <= 1
    # Each sample gets its own partition.
    assert len({row.tobytes() for row in block_of}) > 1


def test_random_path_is_reproducible_under_its_seed():
    model = _compiled("chain")
    data = _data(model)

    def scores(seed):
        criterion = criteria.IntegratedGradients(path="random", draws=2, seed=seed)
        return singe_keras.score(model, data, criterion).flat()

    np.testing.assert_array_equal(scores(1), scores(1))
    assert not np.allclose(scores(1), scores(2))


def _plain_across(gated, x, y, criterion):
    """The `path="across"` estimator computed the plain way: one sample, one point at a time.

    The partition is `criterion.blocks` under the criterion's seed (one
    batch, one draw); each point's gradient is taken alone with a tape. With
    `read="all"`, every unit of the sample reads every point, and the mean
    over the sample's blocks is its attribution.
    """
    graph = gated.graph
    block_of, count = criterion.blocks(graph, len(x), np.random.default_rng(criterion.seed))
    steps = criterion.steps
    positions = 1.0 - (np.arange(1, steps + 1) - 0.5) / steps
    total, seen = np.zeros(graph.num_units), np.zeros(graph.num_units)
    for i in range(len(x)):
        attribution = np.zeros(graph.num_units)
        for block in range(count):
            inside = block_of[i] == block
            for position in positions:
                gates = tf.constant(np.where(inside, position, 1.0)[None].astype("float32"))
                with tf.GradientTape() as tape:
                    tape.watch(gates)
                    loss = CE(y[i : i + 1], gated(x[i : i + 1], gates=gates))
                gradient = tape.gradient(loss, gates).numpy()[0]
                reads = inside if criterion.read == "block" else inside.any()
                attribution += np.where(reads, gradient / steps, 0.0)
        if criterion.read == "all":
            attribution /= block_of[i].max() + 1
        evaluated = block_of[i] >= 0
        total += np.where(evaluated, attribution, 0.0)
        seen += evaluated
    return total / np.maximum(seen, 1), seen


@pytest.mark.parametrize("blocks_per_sample, read", [(4, "block"), (2, "block"), (2, "all")])
def test_across_path_equals_the_plain_computation(blocks_per_sample, read):
    model = _compiled("residual")
    x, y = _data(model, n=6)
    gated = singe_keras.GatedModel(singe_keras.trace(model))
    criterion = criteria.IntegratedGradients(
        steps=2, path="across", reduction="signed", block_fraction=0.25,
        blocks_per_sample=blocks_per_sample, read=read, samples=6, seed=3)
    expected, seen = _plain_across(gated, x, y, criterion)
    assert seen.min() >= 1  # every unit is evaluated by some sample
    if blocks_per_sample < 4:
        assert seen.max() < 6  # and not by every sample: half the work
    # Passes of 256 rows (all points at once) and of 5 rows (one point, part
    # of the samples): the same numbers as the plain computation.
    for rows in (256, 5):
        scores = singe_keras.score(
            gated, (x, y), criteria.IntegratedGradients(**{**criterion.get_config(), "batch_size": rows}))
        np.testing.assert_allclose(scores.flat(), expected, rtol=1e-4, atol=1e-7)


def test_across_blocks_cover_every_unit_once_per_stratum():
    graph = singe_keras.trace(zoo.build("residual"))
    criterion = criteria.IntegratedGradients(path="across", block_fraction=0.125,
                                             blocks_per_sample=2)
    block_of, count = criterion.blocks(graph, 10, np.random.default_rng(0), real=9)
    assert count == 2 and block_of.shape == (10, graph.num_units)
    # Strata of 4 samples share a partition into 8 blocks, 2 blocks each:
    # every unit once per full stratum; blocks across groups, even sizes.
    for start in (0, 4):
        stratum = block_of[start : start + 4]
        np.testing.assert_array_equal((stratum >= 0).sum(axis=0), 1)
        sizes = np.bincount(2 * np.arange(4)[:, None].repeat(graph.num_units, 1)[stratum >= 0]
                            + stratum[stratum >= 0])
        assert len(sizes) == 8 and sizes.max() - sizes.min() <= 1
    assert (block_of[8] >= 0).sum() > 0 and (block_of[9] == -1).all()  # short, padding
    # Fewer samples than a stratum: they split every block between them.
    block_of, count = criterion.blocks(graph, 3, np.random.default_rng(0))
    assert count == 3
    np.testing.assert_array_equal((block_of >= 0).sum(axis=0), 1)


@pytest.mark.parametrize("blocks_per_sample, rows", [(None, 16), (8, 64)])
def test_default_singe_costs_a_gradient_per_block(recorded_steps, blocks_per_sample, rows):
    model = _compiled("residual")
    x, y = _data(model, n=8)
    criterion = criteria.get("singe")
    assert (criterion.path, criterion.steps, criterion.block_fraction,
            criterion.blocks_per_sample, criterion.read) == ("across", 1, 0.125, 2, "all")
    criterion.blocks_per_sample = blocks_per_sample or criterion.blocks_per_sample
    scores = singe_keras.score(model, (x, y), criterion).flat()
    # 8 samples x 2 of the 8 blocks (or all 8) each, in one pass.
    assert recorded_steps[-1].rows == [rows]
    assert np.isfinite(scores).all() and (scores > 0).mean() > 0.9


def test_one_point_criteria_run_unpadded_passes(recorded_steps):
    model = _compiled("chain")
    x, y = _data(model, n=8)
    singe_keras.score(model, (x, y), criteria.Taylor(samples=8))
    # One point per sample: 8 rows, not 8 x 4 padded ones.
    assert recorded_steps[-1].rows == [8]


def test_unit_path_points_are_made_one_at_a_time():
    graph = singe_keras.trace(zoo.build("chain"))
    criterion = criteria.IntegratedGradients(steps=3, path="unit")
    block_of, count = criterion.blocks(graph, 2, None)
    points = criterion.path_points(block_of, count)
    gates, weight, mask = next(points)  # a generator: no (K * U, U) array
    assert gates.shape == mask.shape == (2, graph.num_units)
    assert mask.sum() == 2 and weight == pytest.approx(1 / 3)
    assert 1 + sum(1 for _ in points) == 3 * graph.num_units


def test_fisher_is_the_mean_squared_gate_gradient():
    model = _compiled("residual")
    x, y = _data(model, n=8)
    graph = singe_keras.trace(model)
    gated = singe_keras.GatedModel(graph)
    gates = tf.ones((len(x), graph.num_units))
    with tf.GradientTape() as tape:
        tape.watch(gates)
        loss = tf.reduce_sum(CE.call(y, gated(x, gates=gates)))
    expected = np.mean(np.square(tape.gradient(loss, gates).numpy()), axis=0)
    fisher = singe_keras.score(gated, (x, y), "fisher").flat()
    np.testing.assert_allclose(fisher, expected, rtol=1e-4, atol=1e-10)


def _with_dead_unit(unit=2):
    """Unit `unit` of group a_conv outputs exactly zero."""
    model = _compiled("chain")
    conv, bn = model.get_layer("a_conv"), model.get_layer("a_bn")
    for variable in (conv.kernel, conv.bias, bn.gamma, bn.beta):
        value = keras.ops.convert_to_numpy(variable)
        value[..., unit] = 0.0
        variable.assign(value)
    return model


@pytest.mark.parametrize(
    "criterion",
    ["singe", "taylor", "fisher", criteria.IntegratedGradients(path="random", draws=2)],
)
def test_dead_unit_has_zero_relevance_and_ranks_last(criterion):
    model = _with_dead_unit(unit=2)
    relevance = singe_keras.score(model, _data(model), criterion)["a_conv"]
    assert relevance[2] == 0.0
    assert np.argmin(relevance) == 2 and np.all(np.delete(relevance, 2) > 0)


def test_taylor_is_the_one_step_left_point_integral():
    model = _compiled("residual")
    data = _data(model)
    taylor = singe_keras.score(model, data, "taylor").flat()
    one_step = singe_keras.score(
        model, data,
        criteria.IntegratedGradients(steps=1, path="group", reduction="abs", rule="left"),
    ).flat()
    np.testing.assert_array_equal(taylor, one_step)


def test_taylor_matches_finite_differences():
    model = _compiled("chain")
    x, y = _data(model, n=4)
    graph = singe_keras.trace(model)
    gated = singe_keras.GatedModel(graph)
    taylor = singe_keras.score(gated, (x, y), "taylor").flat()
    epsilon = 1e-2
    expected = np.zeros(graph.num_units)
    for unit in range(graph.num_units):
        up, down = np.ones((2, graph.num_units), "float32")
        up[unit], down[unit] = 1 + epsilon, 1 - epsilon
        per_sample = (CE.call(y, gated(x, gates=up)) - CE.call(y, gated(x, gates=down)))
        expected[unit] = np.mean(np.abs(per_sample / (2 * epsilon)))
    np.testing.assert_allclose(taylor, expected, rtol=0.02, atol=1e-4)


def test_magnitude_criteria_match_numpy():
    model = zoo.build("residual")
    scores = {name: singe_keras.score(model, criterion=name) for name in ("l1", "l2", "bn_scale")}
    stem, b1b = (keras.ops.convert_to_numpy(model.get_layer(n).kernel) for n in ("stem_conv", "b1b_conv"))
    both = np.concatenate([stem.reshape(-1, 6), b1b.reshape(-1, 6)])
    np.testing.assert_allclose(scores["l1"]["stem_conv"], np.abs(both).sum(0), rtol=1e-6)
    np.testing.assert_allclose(scores["l2"]["stem_conv"], np.sqrt((both**2).sum(0)), rtol=1e-6)
    gammas = [keras.ops.convert_to_numpy(model.get_layer(n).gamma) for n in ("stem_bn", "b1b_bn")]
    np.testing.assert_allclose(
        scores["bn_scale"]["stem_conv"], np.abs(gammas).mean(0), rtol=1e-6
    )
    separable = zoo.build("depthwise_separable")
    pointwise = keras.ops.convert_to_numpy(separable.get_layer("sep").pointwise_kernel)
    np.testing.assert_allclose(
        singe_keras.score(separable, criterion="l1")["sep"],
        np.abs(pointwise).reshape(-1, 7).sum(0),
        rtol=1e-6,
    )


def _weights(model, name, attribute="kernel"):
    return keras.ops.convert_to_numpy(getattr(model.get_layer(name), attribute))


def _group_reference(slices, p):
    """Torch-Pruning's group magnitude: mean over slices of sum |w|^p per channel.

    `slices` are arrays with the unit's channel on axis 0.
    """
    return np.mean([(np.abs(s.reshape(len(s), -1)) ** p).sum(1) for s in slices], axis=0)


def _outputs(kernel):
    return np.moveaxis(kernel, -1, 0)


def _inputs(kernel):
    return np.moveaxis(kernel, -2, 0)


@pytest.mark.parametrize("p", [1, 2])
def test_group_magnitude_matches_numpy_on_conv_bn_conv(p):
    model = zoo.build("chain")  # a_conv -> a_bn -> b_conv -> b_bn -> pool -> logits
    scores = singe_keras.score(model, criterion=f"group_l{p}")
    w = lambda name, attribute="kernel": _weights(model, name, attribute)  # noqa: E731
    expected_a = _group_reference(
        [_outputs(w("a_conv")), w("a_bn", "gamma"), _inputs(w("b_conv"))], p)
    expected_b = _group_reference(
        [_outputs(w("b_conv")), w("b_bn", "gamma"), _inputs(w("logits"))], p)
    np.testing.assert_allclose(scores["a_conv"], expected_a, rtol=1e-6)
    np.testing.assert_allclose(scores["b_conv"], expected_b, rtol=1e-6)


@pytest.mark.parametrize("p", [1, 2])
def test_group_magnitude_matches_numpy_on_a_residual_model(p):
    model = zoo.build("residual")
    scores = singe_keras.score(model, criterion=f"group_l{p}")
    w = lambda name, attribute="kernel": _weights(model, name, attribute)  # noqa: E731
    expected = {
        # The stem's stream: two producers, two BNs, three consumers.
        "stem_conv": [_outputs(w("stem_conv")), _outputs(w("b1b_conv")), w("stem_bn", "gamma"),
                      w("b1b_bn", "gamma"), _inputs(w("b1a_conv")), _inputs(w("proj")),
                      _inputs(w("b2a_conv"))],
        "b1a_conv": [_outputs(w("b1a_conv")), w("b1a_bn", "gamma"), _inputs(w("b1b_conv"))],
        "b2a_conv": [_outputs(w("b2a_conv")), w("b2a_bn", "gamma"), _inputs(w("b2b_conv"))],
        "proj": [_outputs(w("proj")), _outputs(w("b2b_conv")), w("proj_bn", "gamma"),
                 w("b2b_bn", "gamma"), _inputs(w("logits"))],
    }
    for name, slices in expected.items():
        np.testing.assert_allclose(scores[name], _group_reference(slices, p), rtol=1e-6)


def test_group_magnitude_reads_flatten_rows_and_depthwise_filters():
    model = zoo.build("flatten_dense")  # c1 (4 filters, 4x4 outputs) -> Flatten -> fc
    fc = _weights(model, "fc")  # (4 * 4 * 4, 7): row (h * 4 + w) * 4 + c reads channel c
    rows = np.stack([fc[c::4] for c in range(4)])
    np.testing.assert_allclose(
        singe_keras.score(model, criterion="group_l1")["c1"],
        _group_reference([_outputs(_weights(model, "c1")), rows], 1), rtol=1e-6)
    model = zoo.build("depthwise_separable")
    w = lambda name, attribute="kernel": _weights(model, name, attribute)  # noqa: E731
    dw = w("dw")  # (3, 3, 6, 2): filters 2c, 2c + 1 read channel c, dw_bn gammas 2c, 2c + 1
    depthwise = w("sep", "depthwise_kernel")  # (3, 3, 12, 2)
    pointwise = w("sep", "pointwise_kernel")[0, 0]  # (24, 7): rows 2m, 2m + 1 read m
    stem = [_outputs(w("stem_conv")), w("stem_bn", "gamma"), _inputs(dw),
            w("dw_bn", "gamma").reshape(6, 2), _inputs(depthwise)[0::2],
            _inputs(depthwise)[1::2], pointwise.reshape(12, 2, 7)[0::2],
            pointwise.reshape(12, 2, 7)[1::2]]
    scores = singe_keras.score(model, criterion="group_l1")
    # The stem's channel c reaches sep's inputs 2c and 2c + 1 (dw's multiplier).
    expected = np.mean([(np.abs(s.reshape(6, -1))).sum(1) for s in stem[:4]]
                       + [(np.abs(np.stack([stem[4], stem[5]], 1))).reshape(6, -1).sum(1),
                          (np.abs(np.stack([stem[6], stem[7]], 1))).reshape(6, -1).sum(1)],
                       axis=0)
    np.testing.assert_allclose(scores["stem_conv"], expected, rtol=1e-6)


def test_bn_scale_needs_a_batch_normalization():
    with pytest.raises(ValueError, match="bn_scale.*sequential|c1"):
        singe_keras.score(zoo.build("sequential"), criterion="bn_scale")


def test_random_is_reproducible_under_a_seed():
    model = zoo.build("chain")
    a = singe_keras.score(model, criterion={"class_name": "random", "config": {"seed": 7}})
    b = singe_keras.score(model, criterion=criteria.Random(seed=7))
    c = singe_keras.score(model, criterion=criteria.Random(seed=8))
    np.testing.assert_array_equal(a.flat(), b.flat())
    assert not np.array_equal(a.flat(), c.flat())


def test_scoring_traces_once():
    model = _compiled("residual")
    x, y = _data(model, n=13)
    gated = singe_keras.GatedModel(singe_keras.trace(model))
    criterion = criteria.IntegratedGradients(steps=8, batch_size=8, samples=13, path="group")
    first = singe_keras.score(gated, (x, y), criterion).flat()
    second = singe_keras.score(gated, (x, y), criterion).flat()
    step = gate_gradients.attribution_step(gated, criteria.resolve_loss(None, model))
    # 13 samples in batches of 8 (the last one padded), 4 groups x 8 path
    # positions, twice: one trace.
    assert step.function.experimental_get_tracing_count() == 1
    np.testing.assert_array_equal(first, second)


@pytest.mark.parametrize("path", ["group", "unit", "random"])
def test_pass_size_does_not_change_scores(path):
    model = _compiled("residual")
    x, y = _data(model, n=13)
    gated = singe_keras.GatedModel(singe_keras.trace(model))
    options = dict(steps=3, path=path, samples=13, draws=2, seed=5)
    # 256 rows: all 13 samples at 19 points per pass; 40: 3 points per pass;
    # 5: the 13 samples in slices of 5 (the last one padded), 1 point each.
    reference, *chunked = (
        singe_keras.score(
            gated, (x, y), criteria.IntegratedGradients(batch_size=rows, **options)
        ).flat()
        for rows in (256, 40, 5)
    )
    for scores in chunked:
        np.testing.assert_allclose(scores, reference, rtol=1e-5)


def test_group_path_is_complete_in_small_passes():
    model = _compiled("residual")
    x, y = _data(model, n=7)
    graph = singe_keras.trace(model)
    gated = singe_keras.GatedModel(graph)
    criterion = criteria.IntegratedGradients(steps=64, path="group", reduction="signed",
                                             batch_size=3)
    scores = singe_keras.score(gated, (x, y), criterion)
    full = _mean_loss(gated, x, y, np.ones(graph.num_units, "float32"))
    for group in graph.groups:
        expected = full - _mean_loss(gated, x, y, _group_off(graph, group.name))
        assert abs(scores[group.name].sum() - expected) < 0.01 * abs(expected)


class _RecordedStep:
    """Wraps the attribution step; records the rows of every pass."""

    def __init__(self, step):
        self.step, self.rows = step, []
        self.replicas, self.sum_over_workers = step.replicas, step.sum_over_workers

    def __call__(self, x, y, sample_weight, gates, weights, masks):
        self.rows.append(gates.shape[0] * gates.shape[1])
        return self.step(x, y, sample_weight, gates, weights, masks)


@pytest.fixture
def recorded_steps(monkeypatch):
    steps = []
    original = gate_gradients.attribution_step

    def attribution_step(gated, loss_fn):
        steps.append(_RecordedStep(original(gated, loss_fn)))
        return steps[-1]

    monkeypatch.setattr(gate_gradients, "attribution_step", attribution_step)
    return steps


@pytest.mark.parametrize("steps, samples", [(2, 8), (16, 8), (2, 40)])
def test_passes_never_exceed_batch_size_rows(recorded_steps, steps, samples):
    model = _compiled("chain")
    x, y = _data(model, n=samples)
    criterion = criteria.IntegratedGradients(steps=steps, samples=samples, path="unit",
                                             batch_size=6)
    singe_keras.score(model, (x, y), criterion)
    units = singe_keras.trace(model).num_units
    rows = recorded_steps[-1].rows
    assert max(rows) <= 6
    # Every sample meets every point of every unit's path once (padding aside).
    assert sum(rows) >= samples * steps * units


def test_scoring_reads_only_the_samples_it_needs():
    model = _compiled("chain")
    x, y = _data(model, n=700)
    read = []

    class Recorded(zoo.Batches):
        def __getitem__(self, index):
            read.append(index)
            return super().__getitem__(index)

    data = Recorded(x, y, 7)
    singe_keras.score(model, data, criteria.IntegratedGradients(steps=2, samples=16))
    # 16 samples are 3 batches of 7; the others are never read.
    assert max(read) == 2


def test_automatic_batch_size_fits_the_memory_budget():
    small = singe_keras.trace(_compiled("chain"))
    large = singe_keras.trace(keras.Sequential([
        keras.Input((128, 128, 3)),
        keras.layers.Conv2D(64, 3, padding="same"),
        keras.layers.Conv2D(64, 3, padding="same"),
    ]))
    assert large.values_per_sample() == 2 * 128 * 128 * 64
    assert criteria.pass_rows(small) == 256  # the cap: tiny models are not slowed
    rows = criteria.pass_rows(large)
    # Activations, their gated copies and gradients of a pass: within 2 GiB.
    assert 1 <= rows < 256 and rows * large.values_per_sample() * 12 <= 2 * 2**30


def test_every_data_format_gives_the_same_scores():
    model = _compiled("chain")
    x, y = _data(model, n=24)
    criterion = criteria.IntegratedGradients(steps=2, samples=20, batch_size=8, path="group")
    reference = singe_keras.score(model, (x[:20], y[:20]), criterion).flat()
    formats = [
        (x, y),
        (x, y, np.ones(len(x), "float32")),
        tf.data.Dataset.from_tensor_slices((x, y)).batch(5),
        zoo.Batches(x, y, 7),
    ]
    for data in formats:
        np.testing.assert_allclose(
            singe_keras.score(model, data, criterion).flat(), reference, rtol=1e-5
        )


def test_zero_sample_weight_removes_a_sample():
    model = _compiled("chain")
    x, y = _data(model, n=8)
    weights = np.ones(8, "float32")
    weights[3:] = 0.0
    criterion = criteria.IntegratedGradients(steps=2, path="group", reduction="signed", samples=8)
    weighted = singe_keras.score(model, (x, y, weights), criterion).flat()
    subset = singe_keras.score(model, (x[:3], y[:3]), criterion).flat()
    # Weights scale each sample's loss; weight-0 samples leave the mean.
    np.testing.assert_allclose(weighted, subset, rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize(
    "identifier, cls",
    [
        ("singe", criteria.IntegratedGradients),
        ("taylor", criteria.Taylor),
        ("fisher", criteria.Fisher),
        ("l1", criteria.L1Norm),
        ("l2", criteria.L2Norm),
        ("group_l1", criteria.GroupL1Norm),
        ("group_l2", criteria.GroupL2Norm),
        ("bn_scale", criteria.BatchNormScale),
        ("random", criteria.Random),
        (criteria.L1Norm, criteria.L1Norm),
    ],
)
def test_get_finds_criteria_by_name_and_class(identifier, cls):
    criterion = criteria.get(identifier)
    assert type(criterion) is cls
    again = criteria.get(criteria.serialize(criterion))
    assert type(again) is cls and again.get_config() == criterion.get_config()


def test_config_round_trip_keeps_options():
    criterion = criteria.IntegratedGradients(
        steps=3, path="random", reduction="square", loss=CE, block_fraction=0.25, draws=2,
        seed=5,
    )
    again = criteria.get(criteria.serialize(criterion))
    assert again.get_config() == criterion.get_config()
    assert again.steps == 3 and again.path == "random" and again.draws == 2


def test_unknown_criterion_lists_the_valid_ones():
    with pytest.raises(ValueError, match="Unknown criterion 'nope'.*'singe'"):
        criteria.get("nope")


def test_bad_criterion_type_is_rejected():
    with pytest.raises(TypeError, match="criterion"):
        criteria.get(3)


@pytest.fixture
def registry():
    """Criteria registered by a test are removed after it."""
    saved = dict(criteria.base._REGISTRY)
    yield
    criteria.base._REGISTRY.clear()
    criteria.base._REGISTRY.update(saved)


def test_custom_criterion_can_be_registered(registry):
    @criteria.register_criterion("first_is_best")
    class FirstIsBest(criteria.Criterion):
        def score(self, gated, data=None):
            return -np.arange(gated.graph.num_units, dtype=float)

    scores = singe_keras.score(zoo.build("chain"), criterion="first_is_best")
    assert scores["a_conv"][0] == 0.0


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"steps": 0}, "steps"),
        ({"samples": -1}, "samples"),
        ({"path": "layer"}, "path"),
        ({"reduction": "max"}, "reduction"),
        ({"rule": "right"}, "rule"),
        ({"path": "random", "block_fraction": 0}, "block_fraction"),
        ({"block_fraction": 1.5}, "block_fraction"),
        ({"draws": 0}, "draws"),
        ({"batch_size": 0}, "batch_size"),
    ],
)
def test_bad_options_are_rejected(kwargs, message):
    with pytest.raises(ValueError, match=f"`{message}`"):
        criteria.IntegratedGradients(**kwargs)


def test_gradient_criteria_need_data():
    with pytest.raises(ValueError, match="needs scoring data"):
        singe_keras.score(_compiled("chain"), criterion="singe")


def test_gradient_criteria_need_a_loss():
    model = zoo.build("chain")  # not compiled
    with pytest.raises(ValueError, match="need a loss"):
        singe_keras.score(model, _data(model))


def test_reduced_loss_is_rejected():
    model = zoo.build("chain")
    criterion = criteria.IntegratedGradients(loss=lambda y, p: tf.reduce_mean(p))
    with pytest.raises(ValueError, match="one value per sample"):
        singe_keras.score(model, _data(model), criterion)


@pytest.mark.parametrize(
    "data, error, message",
    [
        ((np.zeros((2, 8, 8, 3)),), ValueError, r"\(x, y\)"),
        ([1, 2, 3], ValueError, r"shape \(batch,\) \+ \(8, 8, 3\)"),
        ("data", TypeError, "must be a tf.data.Dataset"),
        (tf.data.Dataset.from_tensor_slices((np.zeros((4, 8, 8, 3)), np.zeros(4))), ValueError, "batch"),
        ((np.zeros((0, 8, 8, 3)), np.zeros(0)), ValueError, "empty"),
        ((np.zeros((2, 9, 9, 3)), np.zeros(2)), ValueError, r"\(batch,\) \+ \(8, 8, 3\)"),
    ],
)
def test_bad_data_is_rejected_before_work(data, error, message):
    with pytest.raises(error, match=message):
        singe_keras.score(_compiled("chain"), data)


def test_multi_output_models_are_refused_with_what_works():
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3)(inputs))
    model = keras.Model(inputs, [keras.layers.Dense(3)(x), keras.layers.Dense(2)(x)])
    model.compile(loss=["mse", "mse"])
    with pytest.raises(ValueError, match="single-input, single-output"):
        singe_keras.score(model, (np.zeros((4, 8, 8, 3)), np.zeros(4)))


def test_a_model_with_nothing_to_prune_scores_empty():
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(3)(inputs))
    model.compile(loss="mse")
    scores = singe_keras.score(model, (np.zeros((4, 4)), np.zeros((4, 3))))
    assert scores.groups == () and scores.flat().size == 0


def _activation_criterion(registry):
    """A data criterion without a loss: mean |gated output| per unit's gate."""

    @criteria.register_criterion("output_sensitivity")
    class OutputSensitivity(criteria.Criterion):
        needs_data = True

        def score(self, gated, data=None):
            x = data[0][:4]
            full = np.asarray(gated(x))
            relevance = np.zeros(gated.graph.num_units)
            for unit in range(gated.graph.num_units):
                gates = np.ones(gated.graph.num_units, "float32")
                gates[unit] = 0.0
                relevance[unit] = np.abs(np.asarray(gated(x, gates=gates)) - full).mean()
            return relevance

    return OutputSensitivity


def test_custom_data_criterion_without_a_loss_prunes_an_uncompiled_model(registry):
    _activation_criterion(registry)
    model = zoo.build("chain")  # not compiled: no loss anywhere
    pruned = singe_keras.prune(model, _data(model), target_flops=0.6,
                               criterion="output_sensitivity", rounds=1,
                               finetune_steps=0, verbose=0)
    assert singe_keras.count_flops(pruned) <= 0.6 * singe_keras.count_flops(model)


def test_custom_criterion_that_needs_a_loss_gets_the_model_loss(registry):
    seen = []

    @criteria.register_criterion("loss_probe")
    class LossProbe(criteria.Criterion):
        needs_data = True
        needs_loss = True

        def score(self, gated, data=None):
            seen.append(criteria.resolve_loss(self.loss, gated.graph.model))
            return np.arange(gated.graph.num_units, dtype=float)

    model = zoo.build("chain")
    with pytest.raises(ValueError, match="need a loss"):
        singe_keras.prune(model, _data(model), target_flops=0.6, criterion="loss_probe",
                          rounds=1, finetune_steps=0, verbose=0)
    singe_keras.prune(_compiled("chain"), _data(model), target_flops=0.6,
                      criterion="loss_probe", rounds=1, finetune_steps=0, verbose=0)
    assert isinstance(seen[0], keras.losses.SparseCategoricalCrossentropy)


def test_labels_that_do_not_match_the_inputs_are_named():
    model = _compiled("chain")
    x, y = _data(model)
    with pytest.raises(ValueError, match=r"16 inputs.*3 labels"):
        singe_keras.score(model, (x, y[:3]))
    with pytest.raises(ValueError, match=r"16 inputs.*16 labels.*5 sample weights"):
        singe_keras.score(model, (x, y, np.ones(5)))


@pytest.mark.parametrize("criterion", ["l1", "singe"])
def test_a_nan_weight_is_reported_instead_of_ranked(criterion):
    model = _compiled("chain")
    kernel = model.get_layer("b_conv").kernel
    value = keras.ops.convert_to_numpy(kernel).copy()
    value[0, 0, 0, 2] = np.nan
    kernel.assign(value)
    with pytest.raises(ValueError, match=r"layer 'b_conv', weight 'b_conv/kernel'"):
        singe_keras.score(model, _data(model), criterion)


def test_score_takes_its_former_data_argument_with_a_deprecation_warning():
    model = zoo.build("chain")
    model.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x = zoo.sample_inputs(model, 8)
    data = (x, np.zeros(8, "int64"))
    expected = singe_keras.score(model, data, criterion="taylor").flat()
    with pytest.warns(DeprecationWarning, match="pass `dataset=` instead"):
        got = singe_keras.score(model, data=data, criterion="taylor").flat()
    np.testing.assert_array_equal(got, expected)
