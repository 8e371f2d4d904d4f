import importlib.util
import json
from pathlib import Path

import keras
import numpy as np
import pytest

import singe_keras
from singe_keras import allocation, checks, latency
from staircase_timer import (MS_PER_BLOCK, OVERHEAD_MS, StaircaseTimer, WholeModelsDiffer,
                             staircase_model, up)

L = keras.layers


def _two_convs():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 16))
    x = L.Conv2D(32, 3, padding="same", activation="relu", name="a")(inputs)
    x = L.Conv2D(32, 3, padding="same", activation="relu", name="b")(x)
    x = L.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, L.Dense(3, name="logits")(x))


def _table(latency_model, path):
    return latency_model.tables[latency_model.layers[path]]


def test_table_builder_recovers_the_staircase_with_a_fake_timer():
    timer = StaircaseTimer(step=8)
    latency_model = latency.build(staircase_model(), timer=timer, cache_dir=None)
    first, tied, second = (_table(latency_model, p) for p in ("a", "depthwise", "c"))
    assert tied.tied and not first.tied
    for count in range(1, 33):  # every count, not only the grid's
        expected = OVERHEAD_MS + MS_PER_BLOCK * up(3, 8) * up(count, 8)
        assert first.latency(3, count) == pytest.approx(expected)
        assert tied.latency(count, count) == pytest.approx(OVERHEAD_MS + MS_PER_BLOCK * up(count, 8))
    # The 2D table is exact on both sweeps.
    for count in range(1, 25):
        assert second.latency(32, count) == pytest.approx(
            OVERHEAD_MS + MS_PER_BLOCK * 32 * up(count, 8))
    for count in range(1, 33):
        assert second.latency(count, 24) == pytest.approx(
            OVERHEAD_MS + MS_PER_BLOCK * up(count, 8) * 24)
    # Calibrated: the unpruned prediction is the whole model's timing.
    model = staircase_model()
    assert latency_model.predict(singe_keras.trace(model)) == pytest.approx(timer(model))


def test_refinement_finds_steps_finer_than_the_coarse_grid():
    # 128 channels: a coarse grid of 16s; the timer's steps are 8 wide.
    latency_model = latency.build(staircase_model(wide=128), timer=StaircaseTimer(step=8),
                                  cache_dir=None)
    table = _table(latency_model, "a")
    assert latency.grid(128)[:3] == [4, 16, 32]
    values = [table.latency(3, count) for count in range(1, 129)]
    assert values == pytest.approx(
        [OVERHEAD_MS + MS_PER_BLOCK * 8 * up(c, 8) for c in range(1, 129)])
    assert np.all(np.diff(values) >= 0)


def test_prediction_of_a_pruned_plan_is_close_to_its_timing():
    timer = StaircaseTimer(step=8)
    model = staircase_model()
    latency_model = latency.build(model, timer=timer, cache_dir=None)
    graph = singe_keras.trace(model)
    plan = singe_keras.Plan.full(graph)
    for group in graph.groups:
        plan = plan.with_kept(group.name, range(max(1, group.size // 2)))
    predicted = latency_model.predict(graph, plan)
    measured = timer(singe_keras.rebuild(graph, plan))
    assert predicted < latency_model.predict(graph)
    assert abs(predicted - measured) / measured < 0.1


@pytest.mark.parametrize("normalization", ["latency", "none"])
def test_allocation_meets_a_latency_target_on_the_cheap_side_of_the_steps(normalization):
    model = _two_convs()
    graph = singe_keras.trace(model)
    latency_model = latency.build(model, timer=StaircaseTimer(step=8), cache_dir=None)
    full = latency_model.predict(graph)
    target = 0.5 * full
    relevance = np.random.default_rng(0).uniform(0.1, 2.0, graph.num_units)
    plan = allocation.allocate(graph, relevance, normalization=normalization,
                               max_latency=target, latency_model=latency_model)
    assert latency_model.predict(graph, plan) <= target
    for group in graph.groups:
        kept = plan.keep[group.name]
        # On a step: a count between two steps costs the upper one.
        assert len(kept) % 8 == 0 or len(kept) == group.size
        if len(kept) < group.size:  # the next step of any group does not fit
            removed = sorted(set(range(group.size)) - set(kept))
            more = plan.with_kept(group.name, list(kept) + removed[:8])
            assert latency_model.predict(graph, more) > target


def test_latency_normalization_ranks_by_relevance_per_millisecond():
    model = _two_convs()
    graph = singe_keras.trace(model)
    latency_model = latency.build(model, timer=StaircaseTimer(step=8), cache_dir=None)
    relevance = np.ones(graph.num_units)
    normalized = allocation.normalize(graph, relevance, "latency", latency_model=latency_model)
    # Removing 8 units of "a" saves 8 x 16 (a's outputs) + 8 x 32 (b's inputs)
    # blocks; of "b", 32 x 8 + 8 x 8 (the Dense's inputs): "a" saves more.
    a = normalized[graph.group_offset("a")]
    b = normalized[graph.group_offset("b")]
    assert a < b
    full = latency_model.predict(graph)
    plan = singe_keras.Plan.full(graph)
    saving_a = full - latency_model.predict(graph, plan.with_kept("a", range(24)))
    assert a == pytest.approx(8 / saving_a, rel=1e-6)


def test_json_round_trip_and_cache(tmp_path):
    model = staircase_model()
    graph = singe_keras.trace(model)
    timer = StaircaseTimer(step=8)
    built = latency.build(model, timer=timer, cache_dir=tmp_path)
    probes = timer.calls
    assert len(list(tmp_path.glob("*.json"))) == len(built.tables)
    built.save(tmp_path / "model_latency.json")
    loaded = latency.LatencyModel.load(tmp_path / "model_latency.json")
    plan = singe_keras.Plan.full(graph).with_kept("a", range(13))
    assert loaded.predict(graph, plan) == pytest.approx(built.predict(graph, plan))
    assert loaded.runtime == built.runtime and loaded.timer is None
    # Cached: only the whole models are timed again (the unpruned one three
    # times, each of the two thinned ones twice, for the medians).
    again = StaircaseTimer(step=8)
    latency.build(model, timer=again, cache_dir=tmp_path)
    assert again.calls == 3 + 2 * 2
    # Another runtime (threads), another key: measured again.
    other = StaircaseTimer(step=8, runtime={"runtime": "staircase 8", "threads": 2})
    latency.build(model, timer=other, cache_dir=tmp_path)
    assert other.calls == probes


@pytest.mark.parametrize("share", [0.6, 1.5])
def test_scale_is_calibrated_on_whole_models(tmp_path, share):
    model = staircase_model()
    graph = singe_keras.trace(model)
    timer = WholeModelsDiffer(share)
    latency_model = latency.build(model, timer=timer, cache_dir=None)
    # Not exactly `share`: a 2D table is exact on its two sweeps only.
    assert latency_model.scale == pytest.approx(share, rel=0.05)
    # On plans other than the calibration's, the scale makes the predictions
    # of the whole models several times closer than the tables alone.
    unscaled = latency.LatencyModel(latency_model.tables, latency_model.layers, 0.0,
                                    latency_model.runtime)
    full = unscaled.predict(graph)
    rng = np.random.default_rng(0)
    for _ in range(3):
        plan = singe_keras.Plan.full(graph)
        for group in graph.groups:
            plan = plan.with_kept(group.name, range(rng.integers(1, group.size)))
        measured = timer(singe_keras.rebuild(graph, plan))
        error = abs(latency_model.predict(graph, plan) - measured)
        calibrated_on_the_unpruned_only = timer(model) - full + unscaled.predict(graph, plan)
        assert error < 0.02 * measured
        assert error < abs(calibrated_on_the_unpruned_only - measured) / 4
    latency_model.save(tmp_path / "latency.json")
    loaded = latency.LatencyModel.load(tmp_path / "latency.json")
    assert loaded.scale == latency_model.scale
    assert loaded.predict(graph, plan) == pytest.approx(latency_model.predict(graph, plan))


def test_whole_models_that_do_not_get_faster_make_a_latency_target_unreachable():
    model = staircase_model()
    latency_model = latency.build(model, timer=WholeModelsDiffer(0.0), cache_dir=None)
    assert latency_model.scale == latency.tables._MIN_SCALE
    with pytest.raises(ValueError, match="cannot be reached"):
        singe_keras.prune(model, target_latency=0.5, latency_model=latency_model,
                          criterion="l1", rounds=1, finetune_steps=0, verbose=0)


def test_last_round_is_corrected_until_the_model_measures_at_the_target():
    # Whole models are a convex function of their layers' time: the scale,
    # fit on the thinned models, misses the allocation's plan.
    model = staircase_model()
    timer = WholeModelsDiffer(share=3.0, power=2, step=1)
    latency_model = latency.build(model, timer=timer, cache_dir=None)
    pruned, report = singe_keras.prune(
        model, target_latency=0.6, latency_model=latency_model, criterion="l1", rounds=1,
        finetune_steps=0, return_report=True, verbose=0)
    assert report.latency["target_ms"] == pytest.approx(0.6 * timer(model))
    first, *later = report.latency["corrections"]
    assert first["budget_ms"] == pytest.approx(report.latency["target_ms"])
    assert abs(first["measured_ratio"] - 0.6) > 0.05 * 0.6  # the tables alone miss
    assert later and later[-1]["budget_ms"] != first["budget_ms"]
    assert report.latency["measured_ms"] == pytest.approx(timer(pruned))
    assert abs(timer(pruned) / timer(model) - 0.6) <= 0.05 * 0.6
    assert report.rounds[-1]["latency_ms"] == report.latency["predicted_ms"]


def test_corrected_budgets_stay_under_the_latency_of_the_units_kept():
    # A plan that measures under its target gets a larger budget, but never
    # one above the model the plan starts from (it would prune nothing more).
    model = staircase_model()
    graph = singe_keras.trace(model)
    timer = WholeModelsDiffer(share=3.0, power=2, step=1)
    latency_model = latency.build(model, timer=timer, cache_dir=None)
    kept = singe_keras.Plan.full(graph).with_kept("a", range(16))  # pruned at an earlier event
    kept_ms = latency_model.predict(graph, kept)
    relevance = np.arange(graph.num_units, dtype=float)
    budgets = []

    def allocate(budget):
        budgets.append(budget)
        return allocation.allocate(graph, relevance, kept_units=kept.mask(graph).astype(bool),
                                   max_latency=budget, latency_model=latency_model)

    latency.corrected_plan(allocate, graph, latency_model, 0.95 * kept_ms, model, timer(model),
                           verbose=0, kept=kept)
    assert len(budgets) > 1 and max(budgets) <= kept_ms


def test_cache_key_depends_on_layer_and_runtime():
    graph = singe_keras.trace(_two_convs())
    (node_a, a), (node_b, b), _ = latency.timed_layers(graph)
    runtime = {"runtime": "ai-edge-litert 2.3.0", "delegate": "xnnpack", "threads": 1,
               "precision": "float32"}
    assert latency.table_key(a, runtime) != latency.table_key(b, runtime)  # input 16 vs 32
    for change in ({"threads": 2}, {"precision": "int8"}, {"delegate": "none"},
                   {"runtime": "ai-edge-litert 2.4.0"}):
        assert latency.table_key(a, {**runtime, **change}) != latency.table_key(a, runtime)
    assert latency.table_key(dict(a), dict(runtime)) == latency.table_key(a, runtime)


def _toolkit():
    path = Path(__file__).resolve().parents[1] / "export" / "litert_bench.py"
    spec = importlib.util.spec_from_file_location("litert_bench", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_device_table_from_the_toolkit_is_read(tmp_path):
    pytest.importorskip("ai_edge_litert")
    keras.utils.set_random_seed(0)
    inputs = keras.Input((4, 4, 3))
    x = L.GlobalAveragePooling2D()(L.Conv2D(8, 3, name="conv")(inputs))
    model = keras.Model(inputs, L.Dense(3, name="logits")(x))
    probes = tmp_path / "probes"
    probes.mkdir()
    latency.write_probes(model, probes)
    toolkit = _toolkit()
    assert toolkit.main(["probe", str(probes), "--runs", "3", "--warmup", "1",
                         "--json", str(tmp_path / "table.json")]) == 0
    record = json.loads((tmp_path / "table.json").read_text())
    assert {m["channels"][1] for m in record["measurements"] if m["table"]
            == record["layers"]["conv"]["key"]} == {4, 8}
    latency_model = latency.from_measurements(tmp_path / "table.json")
    assert latency_model.timer is None and latency_model.runtime["threads"] == 1
    graph = singe_keras.trace(model)
    assert latency_model.predict(graph) == pytest.approx(record["model_ms"])
    # The thinned models the scale is calibrated on: conv keeps 4 of 8 in both.
    assert [m["file"] for m in record["thinned"]] == [
        "model_keep0.5.tflite", "model_keep0.25.tflite"]
    assert all(sorted(m["channels"]) == [["conv", 3, 4], ["logits", 4, 3]]
               and m["median_ms"] > 0 for m in record["thinned"])
    smaller = singe_keras.Plan.full(graph).with_kept("conv", range(4))
    conv = latency_model.tables[latency_model.layers["conv"]]
    dense = latency_model.tables[latency_model.layers["logits"]]
    saving = (conv.latency(3, 8) - conv.latency(3, 4)
              + dense.latency(8, 3) - dense.latency(4, 3))
    assert latency_model.predict(graph, smaller) == pytest.approx(
        record["model_ms"] - latency_model.scale * saving)
    # On tables of known times (timings of a busy machine may show no
    # saving at all): a toolkit that timed no thinned model (scale 1), and a
    # device where the thinned models save 0.7 of what the tables say.
    for entry in record["measurements"]:
        entry["median_ms"] = 1e-3 * entry["channels"][0] * entry["channels"][1]
    thinned = record.pop("thinned")
    (tmp_path / "older.json").write_text(json.dumps(record))
    older = latency.from_measurements(tmp_path / "older.json")
    assert older.scale == 1.0
    saving = older.predict(graph) - older.predict(graph, smaller)
    assert saving > 0
    for entry in thinned:
        entry["median_ms"] = record["model_ms"] - 0.7 * saving
    (tmp_path / "scaled.json").write_text(json.dumps({**record, "thinned": thinned}))
    assert latency.from_measurements(tmp_path / "scaled.json").scale == pytest.approx(0.7)


@pytest.mark.parametrize("target", [0, -0.5, 1.5, "fast", "0ms", "-1ms", "nanms", True, None])
def test_bad_target_latency_is_rejected(target):
    if target is None:
        with pytest.raises(ValueError, match="Received none"):
            checks.check_options(None, None, "mean", 0)
        return
    with pytest.raises(ValueError, match="`target_latency` must be"):
        singe_keras.prune(_two_convs(), target_latency=target, criterion="l1",
                          finetune_steps=0, verbose=0)


def test_target_latency_rule():
    assert latency.target_milliseconds(0.5, 3.0) == 1.5
    assert latency.target_milliseconds(1, 3.0) == 3.0
    assert latency.target_milliseconds("2.5ms", 3.0) == 2.5


def test_bad_latency_arguments_are_rejected_before_any_timing(tmp_path):
    timer = StaircaseTimer()
    model = _two_convs()

    def run(target_latency=0.5, **options):
        singe_keras.prune(model, target_latency=target_latency, criterion="l1",
                          finetune_steps=0, verbose=0, **options)

    with pytest.raises(TypeError, match="`latency_model` must be"):
        run(latency_model=3)
    with pytest.raises(ValueError, match="unknown options: \\['gpu'\\]"):
        run(latency_model={"gpu": True})
    with pytest.raises(ValueError, match="`threads` must be a positive integer"):
        run(latency_model={"threads": 0})
    with pytest.raises(ValueError, match="`delegate` must be one of"):
        run(latency_model={"delegate": "gpu"})
    with pytest.raises(ValueError, match="`precision` must be one of"):
        run(latency_model={"precision": "float16"})
    with pytest.raises(ValueError, match="`round_to` must be"):
        run(latency_model={"timer": timer}, round_to=0)
    assert timer.calls == 0
    with pytest.raises(ValueError, match="normalization='latency'.*needs `target_latency`"):
        singe_keras.prune(model, target_flops=0.5, normalization="latency", criterion="l1",
                          finetune_steps=0, verbose=0)
    with pytest.raises(ValueError, match="The target cannot be reached.*predicted latency"):
        run(latency_model={"timer": timer, "cache_dir": None}, target_latency="0.001ms")


def test_bad_builder_arguments_are_rejected(tmp_path):
    model = _two_convs()
    with pytest.raises(TypeError, match="`timer` must be callable"):
        latency.build(model, timer=3)
    with pytest.raises(ValueError, match="`verbose` must be 0 or 1"):
        latency.build(model, timer=StaircaseTimer(), verbose=2)
    with pytest.raises(ValueError, match="Give `timer` or `threads`"):
        latency.build(model, timer=StaircaseTimer(), threads=2)
    with pytest.raises(ValueError, match="`delegate` must be one of"):
        latency.LiteRTTimer(delegate="gpu")
    with pytest.raises(ValueError, match="`runs` must be a positive integer"):
        latency.LiteRTTimer(runs=0)
    with pytest.raises(ValueError, match="`warmup` must be an integer >= 0"):
        latency.LiteRTTimer(warmup=-1)
    with pytest.raises(ValueError, match="`directory` must be an existing folder"):
        latency.write_probes(model, tmp_path / "missing")
    with pytest.raises(ValueError, match="needs the full layer"):
        latency.LayerTable("k", (8, 8), False, {(4, 8): 1.0})
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"format": "other"}))
    with pytest.raises(ValueError, match="Not a singe_keras latency file"):
        latency.from_measurements(bad)
    with pytest.raises(ValueError, match="no layer whose latency depends"):
        latency.build(keras.Sequential([keras.Input((4,)), L.Dense(2)]), timer=StaircaseTimer())
    loaded = latency.LatencyModel.from_dict(
        latency.build(model, timer=StaircaseTimer(), cache_dir=None).to_dict())
    with pytest.raises(ValueError, match="measured on another device"):
        loaded.measure(model)
    graph = singe_keras.trace(model)
    with pytest.raises(ValueError, match="`max_latency` needs a `latency_model`"):
        allocation.allocate(graph, np.ones(graph.num_units), max_latency=1.0)
    with pytest.raises(ValueError, match="normalization='latency' needs a `latency_model`"):
        allocation.allocate(graph, np.ones(graph.num_units), 1e6, normalization="latency")
