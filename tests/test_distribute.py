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

import keras
import numpy as np
import pytest

import singe_keras
import zoo
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


def test_under_a_strategy_every_batch_is_cut_to_whole_replica_shares(mirrored):
    # 13 rows over 2 replicas: batches of 4 lose the last row (fewer rows than
    # replicas), batches of 5 one row each.
    assert mirrored["mirrored"]["epoch_rows"] == {"4": [4, 4, 4], "5": [4, 4, 2]}


@pytest.mark.parametrize("kind", ["model", "distiller"])
def test_distributed_step_trains_as_keras_fit_does(mirrored, kind):
    # The same train_step on the same batches under the same strategy: the
    # same weights and the same logs (loss, metric, weighted metric), for the
    # compiled loss and for the distillation loss.
    results = mirrored["mirrored"]["step_against_fit"]
    fit, distributed = results[f"{kind} fit"], results[f"{kind} distributed"]
    assert set(distributed["logs"]) == set(fit["logs"]) == {
        "loss", "accuracy", "sparse_categorical_accuracy"}
    for name, value in fit["logs"].items():
        np.testing.assert_allclose(distributed["logs"][name], value, rtol=1e-6)
    assert len(distributed["weights"]) == len(fit["weights"])
    for a, b in zip(distributed["weights"], fit["weights"]):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def _free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _run_workers(directory, *arguments):
    """Runs `distribute_worker.py worker directory *arguments` as a 2-worker cluster.

    Returns their exit codes and standard errors.
    """
    workers = [f"127.0.0.1:{port}" for port in _free_ports(2)]
    processes = [
        subprocess.Popen(
            [sys.executable, _WORKER, "worker", str(directory), *arguments],
            env=_environment(TF_CONFIG=json.dumps(
                {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}})),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for index in range(2)
    ]
    try:
        errors = [p.communicate(timeout=300)[1] for p in processes]
    finally:
        for p in processes:
            p.kill()
    return [p.returncode for p in processes], errors


def _run_cleanly(directory):
    codes, errors = _run_workers(directory)
    for code, error in zip(codes, errors):
        assert code == 0, error[-3000:]
    return [np.load(directory / f"worker{i}.npz") for i in range(2)]


def _weights(results):
    return [results[f"arr_{i}"] for i in range(len(results.files) - 3)]


@pytest.fixture(scope="module")
def multi_worker(tmp_path_factory):
    """Two MultiWorkerMirroredStrategy workers on 127.0.0.1, one uninterrupted run."""
    directory = tmp_path_factory.mktemp("multi_worker")
    return directory, _run_cleanly(directory)


@pytest.mark.slow  # two TensorFlow processes that meet over gRPC: about a minute
def test_multi_worker_prune_finetunes_alike_and_only_the_chief_writes(multi_worker):
    directory, (chief, other) = multi_worker
    assert chief.files == other.files
    for name in chief.files:
        np.testing.assert_array_equal(chief[name], other[name])
    # Worker 0 (no "chief" task) is the chief: it alone wrote its report.
    assert (directory / "report0.json").exists()
    assert not (directory / "report1.json").exists()
    rounds = singe_keras.PruningReport.load(directory / "report0.json").rounds
    assert [entry["round"] for entry in rounds] == [1, 2, "final"]
    # Every stage fine-tuned (its metrics are fit's), and the loss fell.
    losses = [entry["metrics"]["train_loss"] for entry in rounds]
    assert all(np.isfinite(losses)) and losses[-1] < losses[0]
    assert {"train_accuracy", "train_sparse_categorical_accuracy"} <= set(rounds[-1]["metrics"])
    # The learning-rate schedule went on across the rounds.
    rates = [entry["learning_rate"] for entry in rounds]
    assert rates[0] > rates[1] > rates[2]
    # The final epoch moved the weights of the last round's checkpoint.
    checkpoint = keras.models.load_model(directory / "checkpoint" / "model_round2.keras",
                                         compile=False)
    final = _weights(chief)
    assert [w.shape for w in final] == [w.shape for w in checkpoint.get_weights()]
    assert not all(np.allclose(a, b) for a, b in zip(final, checkpoint.get_weights()))
    # PruningCallback refused the strategy, naming `prune` as the way.
    assert "singe_keras.prune" in str(chief["refused"])
    # The two workers split every scoring batch and added their sums: the
    # scores of one device.
    import distribute_worker

    single = distribute_worker.scores(*distribute_worker.problem())
    for path in ("group", "random"):
        np.testing.assert_allclose(chief[path], single[path], rtol=1e-5,
                                   atol=1e-7 * np.abs(single[path]).max())


@pytest.mark.slow  # two clusters of two TensorFlow processes: about two minutes
def test_multi_worker_prune_resumes_to_the_weights_of_an_uninterrupted_run(
        multi_worker, tmp_path):
    codes, _ = _run_workers(tmp_path, "2")  # both workers crash as round 2 ends
    assert codes == [-9, -9]
    assert not (tmp_path / "worker0.npz").exists()
    assert json.loads((tmp_path / "checkpoint" / "state.json").read_text())["round"] == 1
    resumed = _run_cleanly(tmp_path)
    uninterrupted = multi_worker[1][0]
    for worker in resumed:
        for a, b in zip(_weights(worker), _weights(uninterrupted), strict=True):
            np.testing.assert_array_equal(a, b)


def test_outside_any_scope_this_process_is_the_chief_on_one_device():
    assert distribute.current_strategy() is None
    assert distribute.is_chief()


@pytest.mark.parametrize("arguments, message", [
    ({"validation_data": "held out"}, "`validation_data` is evaluated with Keras's `evaluate`"),
    ({"target_flops": None, "target_latency": 0.5}, "every worker must plan with the same"),
])
def test_what_cannot_run_multi_worker_is_refused_before_pruning(monkeypatch, arguments,
                                                                 message):
    monkeypatch.setattr(distribute, "is_multi_worker", lambda strategy=None: True)
    model = zoo.build("chain")
    x = zoo.sample_inputs(model, 8)
    arguments = {"target_flops": 0.5, "criterion": "l1", "finetune_steps": 0, "verbose": 0,
                 **arguments}
    if "validation_data" in arguments:
        arguments["validation_data"] = (x, np.zeros(8, "int64"))
    model.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    with pytest.raises(ValueError, match=message):
        singe_keras.prune(model, (x, np.zeros(8, "int64")), **arguments)
