import json
import os
import re
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

import prune_worker
import singe_keras
from singe_keras import criteria
from singe_keras import pruning
from singe_keras import selection
import zoo

CE = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def _compiled(name="residual"):
    model = zoo.build(name)
    model.compile(optimizer="sgd", loss=CE, metrics=["accuracy"])
    return model


def _data(model, n=64, seed=0):
    rng = np.random.default_rng(seed)
    return zoo.sample_inputs(model, batch=n, seed=seed), rng.integers(0, 3, n)


def _unit_flops(model):
    """The largest FLOPs that removing one unit of one group saves.

    Pruning only shrinks the layers around a group, so no unit of a pruned
    model costs more than this.
    """
    graph = singe_keras.trace(model)
    full = singe_keras.Plan.full(graph)
    base = singe_keras.count_flops(graph)
    return max(
        base - singe_keras.count_flops(graph, full.with_kept(g.name, range(1, g.size)))
        for g in graph.groups
        if g.size > 1
    )


@pytest.mark.parametrize("name", ["chain", "residual", "concat", "squeeze_excitation", "nested"])
@pytest.mark.parametrize("target", [0.3, 0.6])
def test_flops_target_is_reached_within_one_unit(name, target):
    model = zoo.build(name)
    pruned = singe_keras.prune(model, target_flops=target, criterion="l1", rounds=2,
                               finetune_steps=0, verbose=0)
    goal = target * singe_keras.count_flops(model)
    flops = singe_keras.count_flops(pruned)
    assert flops <= goal
    assert goal - flops <= _unit_flops(model)


def test_params_target_and_absolute_targets():
    model = zoo.build("residual")
    params = model.count_params()
    pruned = singe_keras.prune(model, target_params=0.5, criterion="l2", rounds=1,
                               finetune_steps=0, verbose=0)
    assert pruned.count_params() <= 0.5 * params
    absolute = singe_keras.prune(model, target_flops=0.5 * singe_keras.count_flops(model) + 2,
                                 criterion="l2", rounds=1, finetune_steps=0, verbose=0)
    assert singe_keras.count_flops(absolute) <= 0.5 * singe_keras.count_flops(model) + 2


def test_round_to_and_min_units_are_respected():
    model = zoo.build("residual")
    pruned = singe_keras.prune(model, target_flops=0.5, criterion="l1", rounds=1,
                               finetune_steps=0, round_to=2, min_units=2, verbose=0)
    for group in singe_keras.trace(pruned).groups:
        assert group.size % 2 == 0 and group.size >= 2


def test_input_model_is_not_modified():
    model = _compiled()
    config = model.get_config()
    weights = [w.copy() for w in model.get_weights()]
    singe_keras.prune(model, _data(model), target_flops=0.5, rounds=2, finetune_steps=2,
                      final_epochs=1, verbose=0)
    assert model.get_config() == config
    for before, after in zip(weights, model.get_weights()):
        np.testing.assert_array_equal(before, after)


def test_same_seed_gives_bit_identical_weights():
    model = _compiled()
    data = _data(model)
    runs = [
        singe_keras.prune(model, data, target_flops=0.5, rounds=2, finetune_steps=3,
                          seed=3, verbose=0).get_weights()
        for _ in range(2)
    ]
    for a, b in zip(*runs):
        np.testing.assert_array_equal(a, b)


def test_report_re_derives_the_pruned_model(tmp_path):
    model = _compiled("concat")
    # Without re-estimated BatchNorm statistics, which the plan does not hold.
    pruned, report = singe_keras.prune(model, _data(model), target_flops=0.5, rounds=3,
                                       finetune_steps=0, recalibration_batches=0,
                                       return_report=True, verbose=0)
    report.save(tmp_path / "report.json")
    loaded = singe_keras.PruningReport.load(tmp_path / "report.json")
    graph = singe_keras.trace(model)
    again = singe_keras.rebuild(graph, loaded.to_plan(graph))
    for a, b in zip(again.get_weights(), pruned.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert [r["round"] for r in loaded.rounds] == [1, 2, 3]
    assert loaded.rounds[-1]["flops"] == singe_keras.count_flops(pruned)
    json.dumps(report.to_dict())  # JSON-serialisable


def test_report_draws_a_png(tmp_path):
    model = _compiled()
    _, report = singe_keras.prune(model, _data(model), target_flops=0.5, rounds=2,
                                  finetune_steps=1, validation_data=_data(model, 16, 1),
                                  return_report=True, verbose=0)
    report.plot(tmp_path / "report.png")
    assert (tmp_path / "report.png").read_bytes()[:4] == b"\x89PNG"


def test_metrics_are_named_training_or_validation_and_the_unpruned_model_is_evaluated(capsys):
    model = _compiled("chain")
    x, y = _data(model)
    validation = _data(model, 16, 1)
    expected = model.evaluate(*validation, verbose=0, return_dict=True)
    _, report = singe_keras.prune(model, (x, y), target_flops=0.5, rounds=2,
                                  finetune_steps=1, validation_data=validation,
                                  return_report=True)
    names = {"train_loss", "train_accuracy", "val_loss", "val_accuracy"}
    assert all(set(r["metrics"]) == names for r in report.rounds)
    assert report.original["metrics"] == pytest.approx(
        {f"val_{k}": v for k, v in expected.items()})
    line = next(line for line in capsys.readouterr().out.splitlines()
                if line.startswith("Round 1/2 - "))  # after the round's progress bars
    assert " - train_accuracy " in line and " - val_accuracy " in line
    metric, points = report.metric_curve()
    assert metric == "val_accuracy"
    assert points[0] == ("unpruned", 1.0, pytest.approx(expected["accuracy"]))
    assert [p[0] for p in points[1:]] == ["1", "2"]
    assert [p[2] for p in points[1:]] == [r["metrics"]["val_accuracy"] for r in report.rounds]
    assert points[1][1] > points[2][1]


def _hand_made_report(metrics):
    rounds = [
        {"round": 1, "flops": 600, "params": 70, "units_removed": 3,
         "metrics": {k: v - 0.1 for k, v in metrics.items()}},
        {"round": "final", "flops": 600, "params": 70, "units_removed": 0,
         "metrics": metrics},
    ]
    return singe_keras.PruningReport({"flops": 1000, "params": 100}, {}, rounds)


def test_metric_curve_without_validation_draws_the_training_metric():
    report = _hand_made_report({"train_loss": 0.5, "train_accuracy": 0.8})
    metric, points = report.metric_curve()
    assert metric == "train_accuracy"  # accuracy before loss; no unpruned point
    assert points == [("1", 0.6, pytest.approx(0.7)), ("final", 0.6, 0.8)]


def test_report_repr_summarises_the_run():
    text = repr(_hand_made_report({"train_loss": 0.5, "val_accuracy": 0.75}))
    assert text.startswith("PruningReport(1 round + final fine-tuning")
    assert "flops=1,000 -> 600 (60.0%)" in text and "params=100 -> 70 (70.0%)" in text
    assert "val_accuracy=0.7500" in text
    assert "no rounds yet" in repr(singe_keras.PruningReport({"flops": 1, "params": 1}, {}))


def test_progress_is_one_line_per_round_and_can_be_silenced(capsys):
    model = zoo.build("chain")
    singe_keras.prune(model, target_flops=0.5, criterion="l1", rounds=3, finetune_steps=0)
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split(" - ")[0] for line in lines] == ["Round 1/3", "Round 2/3", "Round 3/3"]
    singe_keras.prune(model, target_flops=0.5, criterion="l1", rounds=3, finetune_steps=0,
                      verbose=0)
    assert capsys.readouterr().out == ""


def _worker(*arguments):
    # The checkout under test, not whichever singe_keras is installed.
    root = os.path.dirname(os.path.dirname(singe_keras.__file__))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([os.path.dirname(__file__), root]))
    return subprocess.run(
        [sys.executable, os.path.join(os.path.dirname(__file__), "prune_worker.py"), *map(str, arguments)],
        env=env, capture_output=True, text=True,
    )


def test_resume_after_a_crash_equals_an_uninterrupted_run(tmp_path):
    crashed = _worker(tmp_path / "checkpoint", tmp_path / "never.npz", 2)
    assert crashed.returncode == -9, crashed.stderr
    state = json.loads((tmp_path / "checkpoint" / "state.json").read_text())
    assert state["round"] == 1  # killed during round 2
    resumed = _worker(tmp_path / "checkpoint", tmp_path / "resumed.npz")
    assert resumed.returncode == 0, resumed.stderr
    model, data = prune_worker.problem()
    expected = singe_keras.prune(model, data, **prune_worker.ARGUMENTS).get_weights()
    got = np.load(tmp_path / "resumed.npz")
    assert len(got.files) == len(expected)
    for i, value in enumerate(expected):
        np.testing.assert_array_equal(got[f"arr_{i}"], value)


def test_checkpoint_of_another_call_is_refused(tmp_path):
    model = zoo.build("chain")
    singe_keras.prune(model, target_flops=0.5, criterion="l1", rounds=2, finetune_steps=0,
                      checkpoint_dir=tmp_path, verbose=0)
    with pytest.raises(ValueError, match="another model or other arguments"):
        singe_keras.prune(model, target_flops=0.4, criterion="l1", rounds=2,
                          finetune_steps=0, checkpoint_dir=tmp_path, verbose=0)


@pytest.mark.parametrize("damage", ["state", "model"])
def test_corrupt_checkpoint_is_refused(tmp_path, damage):
    model = zoo.build("chain")
    arguments = dict(target_flops=0.5, criterion="l1", rounds=2, finetune_steps=0,
                     checkpoint_dir=tmp_path, verbose=0)
    singe_keras.prune(model, **arguments)
    name = "state.json" if damage == "state" else json.loads(
        (tmp_path / "state.json").read_text())["model_file"]
    with open(tmp_path / name, "r+b") as f:
        f.seek(10)
        f.write(b"garbage")
    with pytest.raises(ValueError, match="corrupt"):
        singe_keras.prune(model, **arguments)


@pytest.mark.parametrize("target", [-0.5, 0, float("nan"), True, "half"])
def test_bad_targets_are_rejected(target):
    with pytest.raises(ValueError, match=r"`target_flops` must be in \(0, 1\]"):
        singe_keras.prune(zoo.build("chain"), target_flops=target, criterion="l1",
                          finetune_steps=0)


def test_missing_target_is_rejected():
    with pytest.raises(ValueError, match="Give `target_flops` or `target_params`"):
        singe_keras.prune(zoo.build("chain"), criterion="l1", finetune_steps=0)


def test_unreachable_target_gives_the_smallest_reachable():
    model = zoo.build("chain")
    with pytest.raises(ValueError, match=r"smallest reachable model has [\d,]+ FLOPs"):
        singe_keras.prune(model, target_flops=1e-6, criterion="l1", finetune_steps=0)


@pytest.mark.parametrize("target, hint", [("target_flops", "target_flops=0.5"),
                                          ("target_params", "target_params=0.5")])
def test_a_percentage_target_is_taken_for_a_count_and_named(target, hint):
    model = zoo.build("chain")
    with pytest.raises(ValueError, match=f"Did you mean {hint} \\(a fraction\\)"):
        singe_keras.prune(model, criterion="l1", finetune_steps=0, **{target: 50})


def test_an_unreachable_count_above_100_has_no_percentage_hint():
    model = zoo.build("chain")
    with pytest.raises(ValueError, match="smallest reachable") as error:
        singe_keras.prune(model, target_flops=101, criterion="l1", finetune_steps=0)
    assert "Did you mean" not in str(error.value)


@pytest.mark.parametrize(
    "option, value",
    [("rounds", 0), ("finetune_steps", -1), ("final_epochs", 1.5), ("batch_size", 0),
     ("min_units", 0), ("round_to", 0), ("normalization", "maximum"), ("verbose", 3),
     ("max_pruning_ratio", 1.0), ("recalibration_batches", -1)],
)
def test_bad_options_are_rejected(option, value):
    with pytest.raises(ValueError, match=f"`{option}` must be"):
        singe_keras.prune(zoo.build("chain"), target_flops=0.5, criterion="l1",
                          **{"finetune_steps": 0, option: value})


def test_scoring_or_fine_tuning_without_data_is_rejected():
    with pytest.raises(ValueError, match="`dataset` is needed"):
        singe_keras.prune(_compiled("chain"), target_flops=0.5)
    with pytest.raises(ValueError, match="`dataset` is needed"):
        singe_keras.prune(_compiled("chain"), target_flops=0.5, criterion="l1")


def test_fine_tuning_needs_a_loss_and_an_optimizer():
    model = zoo.build("chain")
    with pytest.raises(ValueError, match="need a loss"):
        singe_keras.prune(model, _data(model), target_flops=0.5, criterion="l1")
    with pytest.raises(ValueError, match="needs an optimizer"):
        singe_keras.prune(model, _data(model), target_flops=0.5, criterion="l1", loss=CE)


def test_bad_validation_data_is_rejected():
    model = _compiled("chain")
    with pytest.raises(ValueError, match="`validation_data` must hold batches"):
        singe_keras.prune(model, _data(model), target_flops=0.5,
                          validation_data=(np.zeros((4, 3)), np.zeros(4)))


def test_passed_loss_and_optimizer_are_used_for_an_uncompiled_model():
    model = zoo.build("chain")
    pruned = singe_keras.prune(model, _data(model), target_flops=0.5, rounds=1,
                               finetune_steps=2, loss=CE, optimizer="sgd", verbose=0)
    assert pruned.optimizer.__class__.__name__ == "SGD"
    assert not model.compiled


def _custom_loss(y_true, y_pred):
    return keras.losses.sparse_categorical_crossentropy(y_true, y_pred, from_logits=True)


@pytest.mark.parametrize("loss", [_custom_loss, lambda y, p: _custom_loss(y, p)])
def test_custom_and_lambda_losses_survive_the_rebuilds(loss):
    model = zoo.build("chain")
    model.compile(optimizer="sgd", loss=loss)
    pruned = singe_keras.prune(model, _data(model), target_flops=0.5, rounds=2,
                               finetune_steps=2, verbose=0)
    assert pruned.loss is loss


def test_sample_weights_reach_final_epochs_and_validation():
    model = _compiled("chain")
    x, y = _data(model)
    weights = np.linspace(0.5, 1.5, len(x)).astype("float32")
    _, report = singe_keras.prune(model, (x, y, weights), target_flops=0.5, rounds=1,
                                  finetune_steps=1, final_epochs=1,
                                  validation_data=(x[:16], y[:16], weights[:16]),
                                  return_report=True, verbose=0)
    assert "val_loss" in report.rounds[-1]["metrics"]


def test_checkpoint_with_another_optimizer_is_refused(tmp_path):
    model = _compiled("chain")
    data = _data(model)
    arguments = dict(target_flops=0.5, rounds=2, finetune_steps=1, checkpoint_dir=tmp_path,
                     verbose=0)
    singe_keras.prune(model, data, **arguments)
    with pytest.raises(ValueError, match="another model or other arguments"):
        singe_keras.prune(model, data, optimizer="adam", **arguments)


def test_each_round_prunes_to_its_share_of_the_target():
    model = zoo.build("residual")
    original = singe_keras.count_flops(model)
    _, report = singe_keras.prune(model, target_flops=0.4, criterion="l1", rounds=4,
                                  finetune_steps=0, return_report=True, verbose=0)
    for entry in report.rounds:
        goal = original - (original - 0.4 * original) * entry["round"] / 4
        assert goal - _unit_flops(model) < entry["flops"] <= goal


@pytest.mark.parametrize("criterion", ["l1", "singe"])
def test_least_relevant_units_are_removed_first(criterion):
    model = _compiled("chain")
    dead = [0, 3]  # b_conv filters with a zero kernel that the logits do not read
    for layer, axis in (("b_conv", -1), ("logits", 0)):
        kernel = model.get_layer(layer).kernel
        value = keras.ops.convert_to_numpy(kernel).copy()
        np.moveaxis(value, axis, 0)[dead] = 0.0
        kernel.assign(value)
    graph = singe_keras.trace(model)
    alive = [1, 2, 4]
    target = singe_keras.count_flops(graph, singe_keras.Plan.full(graph).with_kept("b_conv", alive))
    _, report = singe_keras.prune(model, _data(model), target_flops=target, criterion=criterion,
                                  rounds=1, finetune_steps=0, normalization="mean",
                                  return_report=True, verbose=0)
    assert report.layers["b_conv"]["kept_outputs"] == alive
    assert report.layers["a_conv"]["kept_outputs"] == list(range(6))


def test_a_non_finite_fine_tuning_loss_stops_pruning_and_names_the_round():
    model = _compiled("chain")
    x, y = _data(model)
    x[:, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match=r"Round 1/2: the fine-tuning loss is not finite"):
        singe_keras.prune(model, (x, y), target_flops=0.5, criterion="l1", rounds=2,
                          finetune_steps=2, verbose=0)


def test_unreachable_target_names_ignored_layers_only_when_given():
    model = zoo.build("chain")
    arguments = dict(target_flops=1e-6, criterion="l1", finetune_steps=0)
    with pytest.raises(ValueError, match="cannot be reached") as error:
        singe_keras.prune(model, **arguments)
    assert "ignored_layers" not in str(error.value)
    with pytest.raises(ValueError, match=r"remove layers from `ignored_layers` \(\['a_conv'\]\)"):
        singe_keras.prune(model, ignored_layers=["a_conv"], **arguments)


def _decay():
    return keras.optimizers.schedules.ExponentialDecay(0.1, decay_steps=1, decay_rate=0.9)


@pytest.mark.parametrize("given", [False, True])
def test_learning_rate_schedule_continues_across_rounds(given):
    model = zoo.build("chain")
    model.compile(optimizer=keras.optimizers.SGD(_decay()), loss=CE)
    model.optimizer.iterations.assign(5)  # as if trained for 5 steps
    # A fresh `optimizer=` starts its schedule at 0, the model's where it stopped.
    start = 0 if given else 5
    x, y = _data(model, 32)
    _, report = singe_keras.prune(
        model, (x, y), target_flops=0.5, rounds=3, finetune_steps=2, final_epochs=1,
        batch_size=16, optimizer=keras.optimizers.SGD(_decay()) if given else None,
        return_report=True, verbose=0,
    )
    steps = [start + 2 * r for r in (1, 2, 3)] + [start + 6 + 2]  # the last: 1 epoch, 2 steps
    np.testing.assert_allclose([r["learning_rate"] for r in report.rounds],
                               [float(_decay()(s)) for s in steps], rtol=1e-6)


def test_a_pruned_model_with_a_continued_schedule_loads_after_importing_singe_keras(tmp_path):
    model = zoo.build("chain")
    model.compile(optimizer=keras.optimizers.SGD(_decay()), loss=CE)
    model.optimizer.iterations.assign(5)
    pruned = singe_keras.prune(model, _data(model, 32), target_flops=0.5, rounds=1,
                               finetune_steps=1, batch_size=16, verbose=0)
    path = str(tmp_path / "pruned.keras")
    pruned.save(path)
    # A fresh process: `import singe_keras` alone registers its Keras classes.
    root = os.path.dirname(os.path.dirname(singe_keras.__file__))
    script = ("import sys, keras, singe_keras\n"
              "model = keras.models.load_model(sys.argv[1])\n"
              "print(type(model.optimizer.learning_rate).__name__, model.count_params())\n")
    result = subprocess.run([sys.executable, "-c", script, path], capture_output=True,
                            text=True, env=dict(os.environ, PYTHONPATH=root))
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split()[-1] == str(pruned.count_params())


def test_batchnorm_statistics_are_re_estimated_after_each_rebuild():
    model = _compiled()
    x, y = _data(model, 48)
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(16)
    runs = {
        batches: singe_keras.prune(model, dataset, target_flops=0.5, rounds=1,
                                   finetune_steps=0, recalibration_batches=batches,
                                   return_report=True, verbose=0)
        for batches in (0, 2)
    }
    graph = singe_keras.trace(model)
    expected = singe_keras.rebuild(graph, runs[2][1].to_plan(graph))
    singe_keras.recalibrate_batchnorm(expected, dataset, batches=2)
    for name, (pruned, _) in runs.items():
        for layer in pruned.layers:
            if isinstance(layer, keras.layers.BatchNormalization):
                other = expected.get_layer(layer.name)
                same = np.array_equal(layer.moving_variance, other.moving_variance)
                assert same == (name == 2), layer.name


@pytest.mark.parametrize("criterion", ["l1", "singe"])
def test_default_normalization_is_auto_and_each_round_keeps_the_chosen_one_s_plan(criterion):
    model = _compiled("residual")
    data = _data(model, 160)

    def run(**options):
        return singe_keras.prune(model, data, target_flops=0.3, criterion=criterion, rounds=1,
                                 finetune_steps=0, return_report=True, verbose=0, seed=0,
                                 **options)

    pruned, report = run()
    chosen = report.rounds[0]["normalization"]
    assert chosen in selection.CANDIDATES
    again, _ = run(normalization=chosen)  # the same model as with the chosen one fixed
    for a, b in zip(pruned.get_weights(), again.get_weights()):
        np.testing.assert_array_equal(a, b)
    callback = singe_keras.PruningCallback(target_flops=0.5, criterion=criterion, dataset=data)
    assert callback.normalization == "auto"


@pytest.mark.parametrize("criterion", ["l1", "group_l1"])
def test_auto_without_labels_or_a_loss_uses_the_criterion_s_own_normalization(criterion):
    model = zoo.build("residual")  # not compiled: no loss, and no data
    _, report = singe_keras.prune(model, target_flops=0.3, criterion=criterion,
                                  finetune_steps=0, return_report=True, verbose=0)
    own = criteria.get(criterion).normalization
    assert [r["normalization"] for r in report.rounds] == [own] * 4
    assert own == {"l1": "mean", "group_l1": "gaussian"}[criterion]


@pytest.mark.parametrize("finetune_steps, final_epochs, recalibrated", [
    (0, 0, [1, 2]), (0, 1, [1]), (2, 0, []), (2, 1, []),
])
def test_default_re_estimates_batchnorm_only_where_no_fine_tuning_follows(
        finetune_steps, final_epochs, recalibrated, monkeypatch):
    calls = []
    original = pruning._FineTuning.recalibrate
    monkeypatch.setattr(pruning._FineTuning, "recalibrate",
                        lambda self, model, index, *args: calls.append(index) or original(
                            self, model, index, *args))
    model = _compiled()
    options = dict(target_flops=0.5, criterion="l1", rounds=2, finetune_steps=finetune_steps,
                   final_epochs=final_epochs, batch_size=16, verbose=0)
    singe_keras.prune(model, _data(model, 32), **options)
    assert calls == recalibrated
    calls.clear()
    singe_keras.prune(model, _data(model, 32), recalibration_batches=2, **options)
    assert calls == [1, 2]


@pytest.mark.parametrize("loss, same_as", [
    (CE, {"alpha": 0.0}),  # the loss tells the output kind: distillation only
    (lambda y, p: CE(y, p), False),  # it does not: the task loss
])
def test_default_fine_tuning_distills_only_where_the_loss_tells_the_output_kind(loss, same_as):
    model = zoo.build("chain")
    model.compile(optimizer="sgd", loss=loss)
    data = _data(model, 32)

    def weights(distillation):
        pruned = singe_keras.prune(model, data, target_flops=0.5, criterion="l1", rounds=1,
                                   finetune_steps=3, batch_size=16, seed=0, verbose=0,
                                   distillation=distillation)
        return pruned.get_weights()

    default = weights(None)
    for a, b in zip(default, weights(same_as)):
        np.testing.assert_array_equal(a, b)
    other = {"outputs": "logits"} if same_as is False else False
    assert any(not np.array_equal(a, b) for a, b in zip(default, weights(other)))


@pytest.mark.parametrize("verbose", [0, 1, 2])
def test_progress_bars_show_inside_rounds_at_verbose_1_only(verbose, capsys):
    model = _compiled("chain")
    singe_keras.prune(model, _data(model, 32), target_flops=0.6, rounds=2, finetune_steps=3,
                      batch_size=16, recalibration_batches=0, seed=0, verbose=verbose)
    out = re.sub(r"\x1b\[[0-9;]*m", "", capsys.readouterr().out)  # no colours
    if verbose == 0:
        assert out == ""
        return
    summaries = [line for line in out.splitlines() if " - FLOPs " in line]
    assert [line.split(" - ")[0] for line in summaries] == ["Round 1/2", "Round 2/2"]
    bars = re.findall(r"(\d+)/(\d+) \S+ .*?/(pass|step)", out)
    if verbose == 2:
        assert bars == [] and "━" not in out
        return
    # Per round: the scoring passes, then fit's 3 steps, each bar run to its end.
    finished = [(unit, done) for done, target, unit in bars if done == target]
    assert [unit for unit, _ in finished] == ["pass", "step"] * 2
    assert [done for unit, done in finished if unit == "step"] == ["3", "3"]


def test_score_progress_counts_the_passes_of_a_stream(capsys):
    model = _compiled("chain")
    stream = tf.data.Dataset.from_tensor_slices(_data(model, 32)).batch(16)
    criterion = criteria.IntegratedGradients(steps=2, path="group", batch_size=16)
    singe_keras.score(model, stream, criterion, verbose=1)
    out = re.sub(r"\x1b\[[0-9;]*m", "", capsys.readouterr().out)
    passes = 2 * 2 * len(singe_keras.trace(model).groups)  # batches x steps x groups
    assert re.search(rf"\b{passes}/Unknown .*/pass", out)
    singe_keras.score(model, stream, criterion)
    assert capsys.readouterr().out == ""


def _latency_options(timer=None):
    from staircase_timer import StaircaseTimer

    return {"timer": timer or StaircaseTimer(step=4), "cache_dir": None}


@pytest.mark.parametrize("name", ["residual", "depthwise_separable"])
def test_latency_target_is_met_on_the_prediction_and_measured(name, capsys):
    model = zoo.build(name)
    options = _latency_options()
    timer = options["timer"]
    pruned, report = singe_keras.prune(
        model, target_latency=0.6, latency_model=options, criterion="l1", rounds=2,
        finetune_steps=0, return_report=True)
    original = report.original["latency_ms"]
    assert original == pytest.approx(timer(model))
    predicted = [r["latency_ms"] for r in report.rounds]
    assert predicted[0] <= 0.8 * original + 1e-9  # round 1 of 2: halfway
    # (Round 1 may already be under 0.6: its 4-channel steps are coarse here.)
    assert predicted[-1] <= 0.6 * original + 1e-9 and predicted[-1] <= predicted[0]
    assert report.latency["predicted_ms"] == predicted[-1]
    assert report.latency["measured_ms"] == pytest.approx(timer(pruned))
    assert report.latency["target_ms"] == pytest.approx(0.6 * original)
    lines = [line for line in capsys.readouterr().out.splitlines()
             if not line.startswith("Latency table of")]  # building the tables
    assert lines[0].startswith("Round 1/2") and "latency" in lines[0] and "predicted" in lines[0]
    assert lines[-1].startswith("Latency - predicted") and "measured" in lines[-1]
    assert json.loads(json.dumps(report.to_dict()))["latency"] == report.latency


def test_latency_and_flops_targets_combine():
    model = zoo.build("residual")
    pruned, report = singe_keras.prune(
        model, target_flops=0.4, target_latency=0.9, latency_model=_latency_options(),
        criterion="l1", rounds=1, finetune_steps=0, return_report=True, verbose=0)
    assert singe_keras.count_flops(pruned) <= 0.4 * singe_keras.count_flops(model)
    assert report.latency["predicted_ms"] <= 0.9 * report.original["latency_ms"] + 1e-9
    # The absolute form: milliseconds as a string.
    target = 0.7 * report.original["latency_ms"]
    _, report = singe_keras.prune(
        model, target_latency=f"{target}ms", latency_model=_latency_options(),
        criterion="l1", rounds=1, finetune_steps=0, return_report=True, verbose=0)
    assert report.latency["target_ms"] == pytest.approx(target)
    assert report.latency["predicted_ms"] <= target


def test_a_latency_run_resumes_although_a_re_run_times_the_model_anew(tmp_path):
    from staircase_timer import StaircaseTimer

    class DriftingTimer(StaircaseTimer):
        """Each timing a little slower than the last, across runs: a re-run's differ."""

        timings = 0

        def __call__(self, model):
            DriftingTimer.timings += 1
            return super().__call__(model) * (1 + 1e-3 * DriftingTimer.timings)

    model = zoo.build("residual")
    arguments = dict(target_latency=0.6, criterion="l1", rounds=2, finetune_steps=0,
                     checkpoint_dir=str(tmp_path), return_report=True)
    first, report = singe_keras.prune(
        model, latency_model={"timer": DriftingTimer(step=4), "cache_dir": None},
        verbose=0, **arguments)
    # verbose=2 is valid with a latency target too (the tables' lines print).
    again, resumed = singe_keras.prune(
        model, latency_model={"timer": DriftingTimer(step=4), "cache_dir": None},
        verbose=2, **arguments)
    assert resumed.original["latency_ms"] == report.original["latency_ms"]
    assert resumed.latency["target_ms"] == pytest.approx(report.latency["target_ms"])
    assert [w.shape for w in again.weights] == [w.shape for w in first.weights]


def test_a_model_measured_slower_than_predicted_is_corrected_or_warns():
    from staircase_timer import StaircaseTimer

    class SlowPrunedModels(StaircaseTimer):
        """Times whole models other than `model` `slowdown` times slower than their layers."""

        slowdown = 1.0

        def __call__(self, timed):
            value = super().__call__(timed)
            return self.slowdown * value if timed.name == "residual" and (
                timed is not model) else value

    timer = SlowPrunedModels(step=1)
    model = zoo.build("residual")
    latency_model = singe_keras.latency.build(model, timer=timer, cache_dir=None)
    timer.slowdown = 1.3
    pruned, report = singe_keras.prune(
        model, target_latency=0.7, latency_model=latency_model, criterion="l1", rounds=1,
        finetune_steps=0, return_report=True, verbose=0)
    first = report.latency["corrections"][0]
    assert first["budget_ms"] == pytest.approx(report.latency["target_ms"])
    assert first["measured_ratio"] > 1.05 * 0.7
    assert report.latency["measured_ms"] == pytest.approx(timer(pruned))
    assert abs(timer(pruned) / timer(model) - 0.7) <= 0.05 * 0.7
    # Too slow for any correction: a warning, at the caller's line.
    timer.slowdown = 4.0
    with pytest.warns(UserWarning, match="measures .* of the unpruned model's latency "
                                         "against a target") as record:
        singe_keras.prune(model, target_latency=0.5, latency_model=latency_model,
                          criterion="l1", rounds=1, finetune_steps=0, verbose=0)
    assert [w.filename for w in record if "against a target" in str(w.message)] == [__file__]


def test_latency_budget_corrections_stay_in_the_bracket_of_the_trials():
    from singe_keras.latency.target import _next_budget

    def trial(budget, ratio):
        return {"budget_ms": budget, "measured_ratio": ratio}

    # One trial: the budget scaled by target / measured.
    assert _next_budget([trial(1.0, 0.4)], 0.5) == pytest.approx(1.25)
    # Scaled past a budget that measured over the target: the bracket's middle.
    assert _next_budget([trial(1.0, 0.6), trial(0.8, 0.3)], 0.5) == pytest.approx(0.9)
    # Inside the bracket: the scaled budget.
    assert _next_budget([trial(1.0, 0.6), trial(0.8, 0.45)], 0.5) == pytest.approx(0.8 / 0.9)
