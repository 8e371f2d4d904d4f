"""The examples run end to end on tiny data, each in its own process.

Each example is run as a user would run it (`python examples/....py`), for a
few steps on a few dozen images, and must exit cleanly, print its table and
write its files. Nothing here touches the network: the tensorflow-datasets
route reads a tiny "cifar10" written with tensorflow-datasets' own API.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("ai_edge_litert")  # every example times its files with LiteRT

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
PRETRAINED = ROOT.parent / "shared" / "models" / "resnet20_cifar10.keras"
TINY = ["--train-samples", "64", "--test-samples", "32", "--score-samples", "16",
        "--latency-runs", "3"]
TINY_PRUNE = ["--rounds", "1", "--finetune-steps", "2", "--final-epochs", "0"]
TINY_TRAIN = ["--train", "--train-epochs", "1"]


def run_example(name, *args):
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / name), *args],
        cwd=ROOT,
        # This checkout's library, not whichever singe_keras is installed.
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2",
             "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, (
        f"{name} exited with {result.returncode}.\n--- stdout (end) ---\n"
        f"{result.stdout[-3000:]}\n--- stderr (end) ---\n{result.stderr[-5000:]}"
    )
    return result.stdout


def random_images(count, seed):
    rng = np.random.default_rng(seed)
    return (rng.integers(0, 256, (count, 32, 32, 3), dtype=np.uint8),
            rng.integers(0, 10, count))


def write_jpeg_npz(path, train=64, test=32):
    """A tiny CIFAR-10 in the format of ../shared/data/cifar10_jpeg.npz."""
    import tensorflow as tf

    arrays = {}
    for split, count, seed in (("train", train, 0), ("test", test, 1)):
        images, labels = random_images(count, seed)
        files = [tf.io.encode_jpeg(image, quality=75).numpy() for image in images]
        arrays[f"{split}_jpeg"] = np.frombuffer(b"".join(files), np.uint8)
        arrays[f"{split}_offsets"] = np.cumsum([0] + [len(f) for f in files]).astype(np.int64)
        arrays[f"y_{split}"] = labels.astype(np.uint8)
    np.savez(path, **arrays)
    return path


def write_tfds_cifar10(data_dir, train=64, test=32):
    """A tiny "cifar10" 3.0.2 that `tfds.load("cifar10", data_dir=...)` reads."""
    import tensorflow as tf
    import tensorflow_datasets as tfds

    def split(count, seed):
        images, labels = random_images(count, seed)
        return tf.data.Dataset.from_tensor_slices(
            {"id": [f"{seed}_{i}" for i in range(count)], "image": images, "label": labels}
        )

    # tfds.load uses the registered Cifar10 builder, whose records need the
    # "id" feature too, not only the supervised keys "image" and "label".
    tfds.dataset_builders.store_as_tfds_dataset(
        name="cifar10",
        version="3.0.2",
        features=tfds.features.FeaturesDict({
            "id": tfds.features.Text(),
            "image": tfds.features.Image(shape=(32, 32, 3)),
            "label": tfds.features.ClassLabel(num_classes=10),
        }),
        split_datasets={"train": split(train, 0), "test": split(test, 1)},
        data_dir=os.fspath(data_dir),
    )
    images, labels = tfds.as_numpy(tfds.load(
        "cifar10", split="test", data_dir=os.fspath(data_dir), download=False,
        as_supervised=True, batch_size=-1,
    ))
    assert images.shape == (test, 32, 32, 3) and labels.shape == (test,)


def check_outputs(stdout, output_dir, files, rows):
    for row in rows:
        assert row in stdout, f"row {row!r} missing from the printed table:\n{stdout}"
    for name in files:
        assert (output_dir / name).is_file(), f"{name} was not written"
    summary = json.loads((output_dir / "summary.json").read_text())
    flops = summary["FLOPs (M)"]
    assert flops["pruned"] <= 0.5 * flops["original"] + 1e-6
    return summary


EXPORTS = [f"{model}_{kind}.{ext}" for model in ("original", "pruned")
           for kind in ("float32", "int8") for ext in ("tflite", "json")]
ROWS = ["test accuracy", "FLOPs (M)", "params", ".tflite float32 (KB)", ".tflite int8 (KB)",
        "TFLite float32 latency (ms)", "TFLite int8 latency (ms)", "int8 top-1 agreement"]


def test_cifar10_resnet_reads_tfds_without_network(tmp_path):
    write_tfds_cifar10(tmp_path / "tfds")
    output_dir = tmp_path / "out"
    stdout = run_example(
        "cifar10_resnet.py", "--tfds-data-dir", str(tmp_path / "tfds"), "--no-download",
        *TINY_TRAIN, *TINY, *TINY_PRUNE, "--output-dir", str(output_dir),
    )
    check_outputs(stdout, output_dir, EXPORTS + ["report.json", "pruned.keras"], ROWS)
    report = json.loads((output_dir / "report.json").read_text())
    assert [r["round"] for r in report["rounds"]] == [1]


@pytest.mark.skipif(not PRETRAINED.exists(),
                    reason=f"no pretrained ResNet-20 at {PRETRAINED} (../shared is absent)")
def test_cifar10_resnet_prunes_pretrained_resnet20_on_jpeg_npz(tmp_path):
    data = write_jpeg_npz(tmp_path / "cifar10_tiny.npz")
    output_dir = tmp_path / "out"
    stdout = run_example(
        "cifar10_resnet.py", "--data", str(data), *TINY, *TINY_PRUNE,
        "--output-dir", str(output_dir),
    )
    summary = check_outputs(stdout, output_dir, EXPORTS + ["report.json", "pruned.keras"],
                            ROWS)
    assert summary["params"]["original"] == 274_042  # the pretrained ResNet-20


def test_callback_fit_prunes_inside_fit_and_strips(tmp_path):
    data = write_jpeg_npz(tmp_path / "cifar10_tiny.npz")
    output_dir = tmp_path / "out"
    stdout = run_example(
        "callback_fit.py", "--data", str(data), *TINY_TRAIN, *TINY,
        "--epochs", "2", "--rounds", "2", "--output-dir", str(output_dir),
    )
    assert stdout.count("PruningCallback: FLOPs") == 2
    check_outputs(
        stdout, output_dir,
        ["original_float32.tflite", "pruned_float32.tflite", "pruned.keras"],
        ROWS[:4] + ["TFLite float32 latency (ms)"],
    )


@pytest.mark.parametrize("name", ["cifar10_resnet.py", "callback_fit.py"])
def test_help_answers_before_tensorflow_is_imported(name):
    probe = (
        "import runpy, sys\n"
        f"sys.argv = [{name!r}, '--help']\n"
        "try:\n"
        f"    runpy.run_path({str(EXAMPLES / name)!r}, run_name='__main__')\n"
        "except SystemExit:\n"
        "    pass\n"
        "print('tensorflow imported:', 'tensorflow' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], cwd=EXAMPLES, capture_output=True,
                            text=True, timeout=120)
    assert "--output-dir" in result.stdout
    assert result.stdout.strip().endswith("tensorflow imported: False"), result.stderr


@pytest.mark.parametrize("name", ["cifar10_resnet", "callback_fit"])
def test_examples_write_into_a_named_folder_by_default(name, monkeypatch):
    monkeypatch.syspath_prepend(str(EXAMPLES))
    example = __import__(name)
    assert example.parse_args([]).output_dir == os.path.join("singe_keras_output", name)


def test_tensorflow_is_quieted_unless_the_user_chose_a_level(monkeypatch):
    monkeypatch.syspath_prepend(str(EXAMPLES))
    import cifar10_data

    monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL", raising=False)
    cifar10_data.quiet_tensorflow()
    assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == "3"
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "0")
    cifar10_data.quiet_tensorflow()
    assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == "0"
