import json
import os

import numpy as np
import pytest

import singe_keras
import zoo


@pytest.fixture
def graph():
    return singe_keras.trace(zoo.build("residual"))


def test_full_plan_keeps_everything(graph):
    plan = singe_keras.Plan.full(graph)
    assert plan.num_kept == graph.num_units
    np.testing.assert_array_equal(plan.mask(graph), np.ones(graph.num_units))


def test_mask_marks_exactly_the_kept_units(graph):
    plan = singe_keras.Plan.full(graph).with_kept("b1a_conv", [4, 1])
    mask = plan.mask(graph)
    offset = graph.group_offset("b1a_conv")
    np.testing.assert_array_equal(mask[offset : offset + 6], [0, 1, 0, 0, 1, 0])
    assert mask.sum() == graph.num_units - 4
    assert plan.keep["b1a_conv"] == (1, 4)


def test_plan_round_trips_through_json(graph, tmp_path):
    plan = zoo.random_plan(graph)
    path = tmp_path / "plan.json"
    plan.save(path)
    assert singe_keras.Plan.load(path) == plan
    assert json.loads(path.read_text()) == plan.to_dict()


def test_failed_save_leaves_no_file(graph, tmp_path, monkeypatch):
    def broken_replace(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError):
        singe_keras.Plan.full(graph).save(tmp_path / "plan.json")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "units, message",
    [
        ([], "at least one unit"),
        ([0, 0], "unique"),
        ([6], r"in \[0, 6\)"),
        ([-1], r"in \[0, 6\)"),
    ],
)
def test_bad_kept_units_are_rejected(graph, units, message):
    with pytest.raises(ValueError, match=message):
        singe_keras.Plan.full(graph).with_kept("b1a_conv", units)


def test_unknown_group_is_rejected(graph):
    with pytest.raises(ValueError, match="No group named 'nope'"):
        singe_keras.Plan.full(graph).with_kept("nope", [0])


def test_keep_and_sizes_must_name_the_same_groups():
    with pytest.raises(ValueError, match="same groups"):
        singe_keras.Plan(keep={"a": [0]}, sizes={"b": 2})
