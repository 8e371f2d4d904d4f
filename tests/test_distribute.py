"""Scoring and pruning under tf.distribute strategies.

TensorFlow's devices and a multi-worker strategy must be set up before
TensorFlow starts, so each case runs in processes of its own
(tests/distribute_worker.py).
"""

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

import singe_keras
from singe_keras import distribute

_WORKER = os.path.join(os.path.dirname(__file__), "distribute_worker.py")


def _environment(**variables):
    # The checkout under test, not whichever singe_keras is installed.
    root = os.path.dirname(os.path.dirname(singe_keras.__file__))
    return dict(os.environ, PYTHONPATH=os.pathsep.join([os.path.dirname(__file__), root]),
                **variables)


@pytest.fixture(scope="module")
def mirrored(tmp_path_factory):
    output = tmp_path_factory.mktemp("mirrored") / "results.json"
    finished = subprocess.run([sys.executable, _WORKER, "mirrored", str(output)],
                              env=_environment(), capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stderr[-3000:]
    return json.loads(output.read_text())


def test_mirrored_scores_equal_single_device_scores(mirrored):
    assert mirrored["mirrored"]["replicas"] == 2
    for path, single in mirrored["single"]["scores"].items():
        np.testing.assert_allclose(mirrored["mirrored"]["scores"][path], single, rtol=1e-5,
                                   atol=1e-7 * np.abs(single).max())


def test_prune_under_a_mirrored_scope_gives_the_same_architecture(mirrored):
    assert mirrored["mirrored"]["prune"] == mirrored["single"]["prune"]
    original = mirrored["single"]["original"]
    assert sum(mirrored["mirrored"]["prune"].values()) < sum(original.values())
    assert mirrored["mirrored"]["mirrored_weights"]  # rebuilt in the scope


def test_pruning_callback_under_a_mirrored_scope_gives_the_same_architecture(mirrored):
    assert mirrored["mirrored"]["callback"] == mirrored["single"]["callback"]


def _free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


@pytest.mark.slow  # two TensorFlow processes that meet over gRPC: about a minute
def test_multi_worker_ends_alike_and_only_the_chief_writes(tmp_path):
    workers = [f"127.0.0.1:{port}" for port in _free_ports(2)]
    processes = [
        subprocess.Popen(
            [sys.executable, _WORKER, "worker", str(tmp_path)],
            env=_environment(TF_CONFIG=json.dumps(
                {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}})),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for index in range(2)
    ]
    try:
        errors = [p.communicate(timeout=240)[1] for p in processes]
    finally:
        for p in processes:
            p.kill()
    for p, error in zip(processes, errors):
        assert p.returncode == 0, error[-3000:]
    chief, other = (np.load(tmp_path / f"worker{i}.npz") for i in range(2))
    assert "finetune_steps=0" in str(chief["refused"])  # before any work
    assert chief.files == other.files
    for name in chief.files:
        np.testing.assert_array_equal(chief[name], other[name])
    # Worker 0 (no "chief" task) is the chief: it alone wrote the checkpoint and report.
    assert (tmp_path / "checkpoint0" / "state.json").exists()
    assert (tmp_path / "report0.json").exists()
    assert not (tmp_path / "checkpoint1").exists()
    assert not (tmp_path / "report1.json").exists()
    # The two workers split every batch and added their sums: the scores of one device.
    import distribute_worker

    single = distribute_worker.scores(*distribute_worker.problem())
    for path in ("group", "random"):
        np.testing.assert_allclose(chief[path], single[path], rtol=1e-5,
                                   atol=1e-7 * np.abs(single[path]).max())


def test_outside_any_scope_this_process_is_the_chief_on_one_device():
    assert distribute.current_strategy() is None
    assert distribute.is_chief()
