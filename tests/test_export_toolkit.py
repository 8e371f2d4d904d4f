"""Tests of export/litert_bench.py, the device-side TFLite toolkit.

The toolkit must run where only ai-edge-litert and NumPy are installed, so the
last tests run it in a subprocess in which TensorFlow and Keras cannot be
imported.
"""

import importlib.util
import json
import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

pytest.importorskip("ai_edge_litert")  # the toolkit runs on LiteRT only

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "export" / "litert_bench.py"


def _import_toolkit():
    # export/ is a folder of scripts, not a package: load the file directly.
    spec = importlib.util.spec_from_file_location("litert_bench", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


litert_bench = _import_toolkit()


def make_model(filters):
    import keras

    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(filters, 3, activation="relu")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(4)(x)
    return keras.Model(inputs, outputs)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """A float32 model, a smaller 'pruned' float32 one, a full-int8 one, a Flex one."""
    import keras
    import tensorflow as tf

    directory = tmp_path_factory.mktemp("tflite")
    keras.utils.set_random_seed(0)
    original, pruned = make_model(8), make_model(4)

    def write(name, converter):
        path = directory / name
        path.write_bytes(converter.convert())
        return path

    rng = np.random.default_rng(0)
    converter = tf.lite.TFLiteConverter.from_keras_model(original)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: (
        [rng.random((1, 8, 8, 3), dtype=np.float32)] for _ in range(16)
    )
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    with warnings.catch_warnings():
        # TF's converter warns about its own int8 input statistics; not ours.
        warnings.filterwarnings("ignore", "Statistics for quantized inputs", UserWarning)
        int8 = write("int8.tflite", converter)

    @tf.function(input_signature=[tf.TensorSpec([1, 4, 4], tf.float32)])
    def determinant(x):
        return tf.linalg.det(x)

    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [determinant.get_concrete_function()], determinant
    )
    converter.target_spec.supported_ops = [
        tf.lite.OpsSet.TFLITE_BUILTINS,
        tf.lite.OpsSet.SELECT_TF_OPS,
    ]
    flex = write("flex.tflite", converter)

    x = rng.random((1, 8, 8, 3), dtype=np.float32)
    return SimpleNamespace(
        directory=directory,
        float32=write("float32.tflite", tf.lite.TFLiteConverter.from_keras_model(original)),
        pruned=write("pruned.tflite", tf.lite.TFLiteConverter.from_keras_model(pruned)),
        int8=int8,
        flex=flex,
        x=x,
        expected=np.asarray(original(x)),
    )


# ----------------------------------------------------------------------------
# Library functions


@pytest.mark.parametrize("xnnpack", [True, False], ids=["xnnpack", "builtin"])
def test_float_model_output_matches_keras(models, xnnpack):
    interpreter = litert_bench.load(models.float32, threads=1, xnnpack=xnnpack)
    (output,) = litert_bench.run(interpreter, [models.x])
    np.testing.assert_allclose(output, models.expected, rtol=1e-4, atol=1e-6)


def test_xnnpack_switch_changes_the_delegation(models):
    with_xnnpack = litert_bench.load(models.float32, xnnpack=True)
    without = litert_bench.load(models.float32, xnnpack=False)
    assert "DELEGATE" in litert_bench.model_ops(with_xnnpack)
    assert "DELEGATE" not in litert_bench.model_ops(without)


def test_int8_model_quantizes_float_input_and_tracks_keras(models):
    interpreter = litert_bench.load(models.int8)
    (output,) = litert_bench.run(interpreter, [models.x])
    detail = interpreter.get_output_details()[0]
    assert output.dtype == np.int8
    scale = detail["quantization"][0]
    real = litert_bench.dequantize(output, detail)
    np.testing.assert_allclose(real, models.expected, atol=max(0.05, 8 * scale))


def test_batch_dimension_is_resized_to_the_input(models):
    interpreter = litert_bench.load(models.float32)
    batch = np.repeat(models.x, 3, axis=0)
    (output,) = litert_bench.run(interpreter, [batch])
    assert output.shape == (3, 4)
    np.testing.assert_allclose(output[2], models.expected[0], rtol=1e-4, atol=1e-6)


def test_random_inputs_follow_shape_dtype_and_seed(models):
    interpreter = litert_bench.load(models.int8)
    (first,) = litert_bench.random_inputs(interpreter, seed=3)
    (again,) = litert_bench.random_inputs(interpreter, seed=3)
    (other,) = litert_bench.random_inputs(interpreter, seed=4)
    assert first.shape == (1, 8, 8, 3) and first.dtype == np.int8
    assert first.min() < -100 and first.max() > 100  # the whole int8 range
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)


def test_benchmark_timings_are_positive_and_ordered(models):
    result = litert_bench.benchmark(litert_bench.load(models.float32), runs=20, warmup=2)
    assert result["runs"] == 20 and len(result["timings_ms"]) == 20
    assert all(t > 0 for t in result["timings_ms"])
    assert 0 < result["p10_ms"] <= result["median_ms"] <= result["p90_ms"]
    assert result["median_ms"] == pytest.approx(np.median(result["timings_ms"]))
    assert result["mean_ms"] > 0 and result["std_ms"] >= 0


def test_compare_ratio_is_pruned_median_over_original_median(models):
    result = litert_bench.compare(
        litert_bench.load(models.float32),
        litert_bench.load(models.pruned),
        runs=7,
        warmup=1,
        block=3,
        flops_original=1000,
        flops_pruned=250,
    )
    assert len(result["original"]["timings_ms"]) == 7
    assert len(result["pruned"]["timings_ms"]) == 7
    assert result["latency_ratio"] == pytest.approx(
        result["pruned"]["median_ms"] / result["original"]["median_ms"]
    )
    assert result["latency_ratio"] > 0
    assert result["flops_ratio"] == pytest.approx(0.25)


def test_compare_without_flops_has_no_flops_ratio(models):
    result = litert_bench.compare(
        litert_bench.load(models.float32), litert_bench.load(models.pruned), runs=2, warmup=0
    )
    assert "flops_ratio" not in result


def test_summarize_percentiles():
    stats = litert_bench.summarize([float(v) for v in range(1, 12)])
    assert stats["median_ms"] == 6.0
    assert stats["p10_ms"] == 2.0 and stats["p90_ms"] == 10.0
    assert stats["mean_ms"] == 6.0 and stats["min_ms"] == 1.0 and stats["max_ms"] == 11.0


def test_write_json_replaces_atomically(tmp_path):
    path = tmp_path / "result.json"
    path.write_text("old")
    litert_bench.write_json({"a": 1}, path)
    assert json.loads(path.read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["result.json"]


# ----------------------------------------------------------------------------
# Errors


def test_missing_file_error_names_the_path(tmp_path):
    path = tmp_path / "absent.tflite"
    with pytest.raises(FileNotFoundError, match="absent.tflite"):
        litert_bench.load(path)


@pytest.mark.parametrize(
    "content", [b"not a model at all", b"", "truncated"], ids=["garbage", "empty", "truncated"]
)
def test_corrupt_file_is_rejected_with_a_message(models, tmp_path, content):
    if content == "truncated":
        content = models.float32.read_bytes()[:1000]
    path = tmp_path / "broken.tflite"
    path.write_bytes(content)
    with pytest.raises(ValueError, match="not a valid TFLite model"):
        litert_bench.load(path)


def test_keras_file_is_rejected_with_a_conversion_hint(tmp_path):
    path = tmp_path / "model.keras"
    path.write_bytes(b"PK\x03\x04" + bytes(100))
    with pytest.raises(ValueError, match="converted first"):
        litert_bench.load(path)


def test_directory_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="is a directory"):
        litert_bench.load(tmp_path)


def test_flex_model_is_rejected_naming_the_ops(models):
    with pytest.raises(ValueError, match="FlexMatrixDeterminant"):
        litert_bench.load(models.flex)


@pytest.mark.parametrize("threads", [0, -1, 1.5, True])
def test_bad_thread_count_is_rejected(models, threads):
    with pytest.raises(ValueError, match="`threads` must be a positive integer"):
        litert_bench.load(models.float32, threads=threads)


@pytest.mark.parametrize(
    "arguments, message",
    [
        ({"runs": 0}, "`runs` must be a positive integer"),
        ({"warmup": -1}, "`warmup` must be a non-negative integer"),
        ({"block": 0}, "`block` must be a positive integer"),
        ({"flops_original": 10}, "both `flops_original` and `flops_pruned`"),
        ({"flops_original": 10, "flops_pruned": 0}, "`flops_pruned` must be positive"),
    ],
)
def test_bad_compare_arguments_are_rejected(models, arguments, message):
    interpreter = litert_bench.load(models.float32)
    with pytest.raises(ValueError, match=message):
        litert_bench.compare(interpreter, interpreter, **arguments)


def test_bad_benchmark_runs_are_rejected(models):
    with pytest.raises(ValueError, match="`runs` must be a positive integer"):
        litert_bench.benchmark(litert_bench.load(models.float32), runs=0)


def test_wrong_number_of_inputs_is_rejected(models):
    with pytest.raises(ValueError, match="1 input"):
        litert_bench.run(litert_bench.load(models.float32), [models.x, models.x])


def test_fixed_dimension_cannot_be_resized(models):
    with pytest.raises(ValueError, match="resizable"):
        litert_bench.run(litert_bench.load(models.float32), [np.zeros((1, 8, 8, 2), np.float32)])


def test_integer_array_for_float_input_is_rejected(models):
    with pytest.raises(TypeError, match="expects float32"):
        litert_bench.run(litert_bench.load(models.float32), [np.zeros((1, 8, 8, 3), np.int32)])


def test_string_input_cannot_be_drawn_at_random():
    fake = SimpleNamespace(
        get_input_details=lambda: [{"name": "text", "dtype": np.bytes_, "shape": [1]}]
    )
    with pytest.raises(TypeError, match="pass the input explicitly"):
        litert_bench.random_inputs(fake)


def test_empty_timings_are_rejected():
    with pytest.raises(ValueError, match="must not be empty"):
        litert_bench.summarize([])


# ----------------------------------------------------------------------------
# Command line


def test_cli_info_shows_int8_tensors_and_ops(models, capsys):
    assert litert_bench.main(["info", str(models.int8)]) == 0
    out = capsys.readouterr().out
    assert "int8" in out and "float32" not in out
    assert "zero point -128" in out  # input of a [0, 1) calibration set
    assert "CONV_2D" in out and "FULLY_CONNECTED" in out
    assert f"{models.int8.stat().st_size:,} bytes" in out


def test_cli_info_warns_about_flex_ops(models, capsys):
    assert litert_bench.main(["info", str(models.flex)]) == 1
    out = capsys.readouterr().out
    assert "FlexMatrixDeterminant" in out and "runnable no" in out


def test_cli_run_prints_keras_argmax(models, tmp_path, capsys):
    path = tmp_path / "x.npy"
    np.save(path, models.x.astype(np.float64))  # float64, as np.save users often have
    assert litert_bench.main(["run", str(models.float32), "--input", str(path)]) == 0
    out = capsys.readouterr().out
    assert "shape (1, 4)" in out
    assert f"argmax       [{int(np.argmax(models.expected))}]" in out


def test_cli_bench_writes_json_with_the_fields(models, tmp_path, capsys):
    path = tmp_path / "bench.json"
    argv = ["bench", str(models.float32), "--runs", "5", "--warmup", "1", "--json", str(path)]
    assert litert_bench.main(argv + ["--no-xnnpack", "--threads", "2"]) == 0
    assert "median" in capsys.readouterr().out
    record = json.loads(path.read_text())
    assert record["model"] == str(models.float32.resolve())
    assert record["size_bytes"] == models.float32.stat().st_size
    assert record["threads"] == 2 and record["xnnpack"] is False
    assert record["runs"] == 5 and len(record["timings_ms"]) == 5
    for key in ("median_ms", "p10_ms", "p90_ms", "mean_ms", "std_ms"):
        assert record[key] > 0 or key == "std_ms"
    assert record["runtime"]["ai_edge_litert"]


def test_cli_compare_prints_both_ratios(models, tmp_path, capsys):
    path = tmp_path / "compare.json"
    argv = ["compare", str(models.float32), str(models.pruned), "--runs", "6", "--warmup", "1",
            "--block", "2", "--flops-original", "2e6", "--flops-pruned", "1e6", "--json", str(path)]
    assert litert_bench.main(argv) == 0
    out = capsys.readouterr().out
    assert "latency ratio pruned/original" in out
    assert "FLOPs ratio pruned/original    0.500" in out
    record = json.loads(path.read_text())
    assert record["flops_ratio"] == 0.5 and record["latency_ratio"] > 0
    assert record["pruned"]["size_bytes"] == models.pruned.stat().st_size
    assert len(record["original"]["timings_ms"]) == 6


@pytest.mark.parametrize("command", ["bench", "compare"])
def test_cli_json_into_missing_folder_fails_before_timing(models, tmp_path, capsys, command):
    path = tmp_path / "missing" / "result.json"
    models_argv = [str(models.float32)] + ([str(models.pruned)] if command == "compare" else [])
    argv = [command, *models_argv, "--runs", "1", "--json", str(path)]
    assert litert_bench.main(argv) == 1
    captured = capsys.readouterr()
    assert "does not exist" in captured.err and "median" not in captured.out


def test_cli_compare_needs_both_flops(models):
    with pytest.raises(SystemExit) as raised:
        litert_bench.main(["compare", str(models.float32), str(models.pruned), "--flops-pruned", "1"])
    assert raised.value.code == 2


@pytest.mark.parametrize("name", ["absent.tflite", "corrupt.tflite"])
def test_cli_error_is_one_line_naming_the_file(tmp_path, capsys, name):
    path = tmp_path / name
    if name == "corrupt.tflite":
        path.write_bytes(b"garbage")
    assert litert_bench.main(["bench", str(path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("litert_bench: error:") and name in err
    assert "Traceback" not in err


# ----------------------------------------------------------------------------
# Without TensorFlow

_BLOCKER = textwrap.dedent(
    """
    import os
    import sys

    class _BlockImports:
        blocked = set(os.environ["LITERT_BENCH_TEST_BLOCK"].split(","))

        def find_spec(self, name, path=None, target=None):
            if name.partition(".")[0] in self.blocked:
                raise ImportError(f"import of {name!r} blocked by the test")
            return None

    sys.meta_path.insert(0, _BlockImports())
    """
)


def _run_blocked(tmp_path, blocked, *arguments):
    directory = tmp_path / "blocker"
    directory.mkdir(exist_ok=True)
    (directory / "sitecustomize.py").write_text(_BLOCKER)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(directory), str(SCRIPT.parent), env.get("PYTHONPATH", "")]
    ).rstrip(os.pathsep)
    env["LITERT_BENCH_TEST_BLOCK"] = ",".join(blocked)
    return subprocess.run(
        [sys.executable, *arguments], env=env, cwd=tmp_path, capture_output=True, text=True,
        timeout=120,
    )


NO_TENSORFLOW = ("tensorflow", "keras", "tf_keras", "singe_keras")


@pytest.mark.parametrize("name", NO_TENSORFLOW)
def test_blocker_really_blocks(tmp_path, name):
    result = _run_blocked(tmp_path, NO_TENSORFLOW, "-c", f"import {name}")
    assert result.returncode != 0
    assert "blocked by the test" in result.stderr


def test_cli_runs_without_tensorflow(models, tmp_path):
    path = tmp_path / "bench.json"
    result = _run_blocked(
        tmp_path, NO_TENSORFLOW, str(SCRIPT), "bench", str(models.int8),
        "--runs", "5", "--warmup", "1", "--json", str(path),
    )
    assert result.returncode == 0, result.stderr
    assert "median" in result.stdout
    assert json.loads(path.read_text())["runs"] == 5


def test_module_imports_and_compares_without_tensorflow(models, tmp_path):
    code = textwrap.dedent(
        f"""
        import sys
        import litert_bench
        original = litert_bench.load({str(models.float32)!r})
        pruned = litert_bench.load({str(models.pruned)!r}, xnnpack=False)
        result = litert_bench.compare(original, pruned, runs=3, warmup=1)
        assert result["latency_ratio"] > 0
        loaded = {{name.partition(".")[0] for name in sys.modules}}
        assert "ai_edge_litert" in loaded
        assert not loaded & {set(NO_TENSORFLOW)!r}, loaded
        print("ok")
        """
    )
    result = _run_blocked(tmp_path, NO_TENSORFLOW, "-c", code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_missing_litert_says_how_to_install(models, tmp_path):
    result = _run_blocked(
        tmp_path, NO_TENSORFLOW + ("ai_edge_litert", "tflite_runtime"),
        str(SCRIPT), "info", str(models.float32),
    )
    assert result.returncode == 1
    assert "pip install ai-edge-litert" in result.stderr
    assert "Traceback" not in result.stderr


def _probe_folder(models, tmp_path, format="singe_keras.latency/1"):
    """A probe folder as `singe_keras.latency.write_probes` lays it out."""
    folder = tmp_path / "probes"
    folder.mkdir()
    for name in ("float32", "pruned"):
        (folder / f"{name}.tflite").write_bytes(getattr(models, name).read_bytes())
    manifest = {
        "format": format, "precision": "float32", "model": "float32.tflite",
        "layers": {"conv": {"key": "k", "full": [3, 8], "tied": False}},
        "probes": [{"file": "float32.tflite", "table": "k", "channels": [3, 8]},
                   {"file": "pruned.tflite", "table": "k", "channels": [3, 4]}],
    }
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


def test_cli_probe_writes_the_latency_table_without_tensorflow(models, tmp_path):
    folder, path = _probe_folder(models, tmp_path), tmp_path / "table.json"
    result = _run_blocked(
        tmp_path, NO_TENSORFLOW, str(SCRIPT), "probe", str(folder), "--threads", "2",
        "--runs", "4", "--warmup", "1", "--json", str(path),
    )
    assert result.returncode == 0, result.stderr
    table = json.loads(path.read_text())
    assert table["format"] == "singe_keras.latency/1" and table["threads"] == 2
    assert table["delegate"] == "xnnpack" and table["precision"] == "float32"
    assert [m["channels"] for m in table["measurements"]] == [[3, 8], [3, 4]]
    assert all(m["runs"] == 4 and m["median_ms"] > 0 for m in table["measurements"])
    assert table["model_ms"] > 0 and table["layers"]["conv"]["key"] == "k"
    assert table["runtime"]["runtime"].startswith("ai-edge-litert")


def test_probe_needs_a_singe_keras_manifest(models, tmp_path):
    with pytest.raises(FileNotFoundError, match="No manifest.json"):
        litert_bench.probe(tmp_path)
    folder = _probe_folder(models, tmp_path, format="other")
    with pytest.raises(ValueError, match="not a singe_keras probe manifest"):
        litert_bench.probe(folder)
    with pytest.raises(ValueError, match="`runs` must be a positive integer"):
        litert_bench.probe(folder, runs=0)
