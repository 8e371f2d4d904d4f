import json
import os
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

import singe_keras
import zoo
from singe_keras import export


def _models():
    model = zoo.build("residual")
    graph = singe_keras.trace(model)
    return {"unpruned": model, "pruned": singe_keras.rebuild(graph, zoo.random_plan(graph))}


def _run(path, x):
    interpreter = tf.lite.Interpreter(model_path=str(path))  # independent of LiteRT
    interpreter.allocate_tensors()
    (source,), (target,) = interpreter.get_input_details(), interpreter.get_output_details()
    outputs = []
    for sample in x:
        interpreter.set_tensor(source["index"], sample[None])
        interpreter.invoke()
        outputs.append(interpreter.get_tensor(target["index"])[0])
    return np.stack(outputs)


@pytest.mark.parametrize("which", ["unpruned", "pruned"])
def test_float32_file_matches_keras(which, tmp_path):
    model = _models()[which]
    x = zoo.sample_inputs(model, batch=8)
    result = singe_keras.export_tflite(model, tmp_path / "m.tflite")
    expected = np.asarray(model(x))
    assert np.abs(_run(tmp_path / "m.tflite", x) - expected).max() <= 1e-4 * np.abs(expected).max()
    assert result.size_bytes == os.path.getsize(tmp_path / "m.tflite")
    assert result.max_relative_error <= 1e-4 and result.top1_agreement == 1.0
    assert "CONV_2D" in result.ops and result.inputs[0]["dtype"] == "float32"
    assert result.runs_with_xnnpack


@pytest.mark.parametrize("quantization", ["float16", "dynamic", "int8"])
def test_quantized_files_report_agreement(quantization, tmp_path):
    model = _models()["pruned"]
    data = zoo.sample_inputs(model, batch=64)
    result = singe_keras.export_tflite(
        model, tmp_path / "q.tflite", quantization=quantization, representative_dataset=data
    )
    # Measured on this model: agreement 1.0 for all three, max relative
    # error 3e-4 (float16), 0 (dynamic) and 7e-3 (int8); these bounds leave
    # room for other converter versions but catch a badly quantized file.
    assert result.top1_agreement >= 0.9
    assert result.max_relative_error < 0.05
    assert result.quantization == quantization
    if quantization == "int8":
        assert result.inputs[0]["dtype"] == "int8" and result.outputs[0]["dtype"] == "int8"


def test_int8_with_uint8_inputs(tmp_path):
    model = _models()["pruned"]
    result = singe_keras.export_tflite(
        model, tmp_path / "u.tflite", quantization="int8", io_dtype="uint8",
        representative_dataset=tf.data.Dataset.from_tensor_slices(
            zoo.sample_inputs(model, batch=32)).batch(8),
    )
    assert result.inputs[0]["dtype"] == "uint8"


def test_result_saves_as_json_next_to_the_file(tmp_path):
    result = singe_keras.export_tflite(_models()["pruned"], tmp_path / "m.tflite")
    path = result.save()
    assert path == str(tmp_path / "m.json")
    assert json.loads((tmp_path / "m.json").read_text())["size_bytes"] == result.size_bytes


def test_verification_rejects_a_wrong_file(tmp_path, monkeypatch):
    # The converter is handed another model with the same shapes: a wrong file.
    convert_other = tf.lite.TFLiteConverter.from_keras_model
    other = zoo.build("chain", seed=5)
    monkeypatch.setattr(
        tf.lite.TFLiteConverter, "from_keras_model", staticmethod(lambda model: convert_other(other))
    )
    with pytest.raises(ValueError, match="does not match the Keras model"):
        singe_keras.export_tflite(zoo.build("chain"), tmp_path / "m.tflite")
    assert list(tmp_path.iterdir()) == []


def test_interrupted_export_leaves_no_file(tmp_path, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(export, "_verify", interrupted)
    with pytest.raises(KeyboardInterrupt):
        singe_keras.export_tflite(zoo.build("chain"), tmp_path / "m.tflite")
    assert list(tmp_path.iterdir()) == []


def test_select_ops_are_refused_by_default(tmp_path):
    inputs = keras.Input((4, 4))
    model = keras.Model(inputs, keras.layers.Lambda(lambda t: tf.linalg.det(t))(inputs))
    with pytest.raises(ValueError, match="not builtin TFLite ops.*MatrixDeterminant"):
        singe_keras.export_tflite(model, tmp_path / "det.tflite")


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"path": "model.bin"}, "must end with '.tflite'"),
        ({"path": "/no/such/folder/m.tflite"}, "does not exist"),
        ({"quantization": "int4"}, "`quantization` must be one of"),
        ({"quantization": "int8"}, "needs `representative_dataset`"),
        ({"io_dtype": "int16"}, "`io_dtype` must be"),
    ],
)
def test_bad_arguments_are_rejected(kwargs, message, tmp_path):
    arguments = {"path": tmp_path / "m.tflite", **kwargs}
    with pytest.raises(ValueError, match=message):
        singe_keras.export_tflite(zoo.build("chain"), **arguments)


def test_unknown_input_size_is_rejected(tmp_path):
    inputs = keras.Input((None, None, 3))
    model = keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(2, 3)(inputs)))
    with pytest.raises(ValueError, match="fixed input sizes"):
        singe_keras.export_tflite(model, tmp_path / "m.tflite")


def test_unbuilt_model_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="built Keras model"):
        singe_keras.export_tflite(keras.Sequential([keras.layers.Dense(2)]), tmp_path / "m.tflite")


def test_a_file_xnnpack_refuses_is_kept_with_a_warning(tmp_path, monkeypatch):
    plain = export._interpreter

    def no_xnnpack(path, default_delegates=False):
        if default_delegates:
            raise RuntimeError("failed to create XNNPACK runtime")
        return plain(path)

    monkeypatch.setattr(export, "_interpreter", no_xnnpack)
    with pytest.warns(UserWarning, match="XNNPACK"):
        result = singe_keras.export_tflite(zoo.build("chain"), tmp_path / "m.tflite")
    assert result.runs_with_xnnpack is False
    assert (tmp_path / "m.tflite").exists()


def test_export_without_litert_uses_tensorflow_lite(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ai_edge_litert", None)  # import fails
    monkeypatch.setitem(sys.modules, "ai_edge_litert.interpreter", None)
    model = _models()["pruned"]
    result = singe_keras.export_tflite(model, tmp_path / "m.tflite")
    x = zoo.sample_inputs(model, batch=8)
    expected = np.asarray(model(x))
    assert np.abs(_run(tmp_path / "m.tflite", x) - expected).max() <= 1e-4 * np.abs(expected).max()
    assert result.max_relative_error <= 1e-4 and result.top1_agreement == 1.0
    assert "CONV_2D" in result.ops


def test_export_prints_no_converter_output(tmp_path, capfd):
    model = _models()["pruned"]
    data = zoo.sample_inputs(model, batch=16)
    capfd.readouterr()  # TensorFlow's own start-up lines, if any
    singe_keras.export_tflite(model, tmp_path / "q.tflite", quantization="int8",
                              representative_dataset=data)
    out, err = capfd.readouterr()
    # The converter's C++ chatter (`fully_quantize: 0, inference_type: 6 ...`)
    # and LiteRT's delegate notice would land here.
    assert out == "" and err == ""


def test_a_failed_conversion_shows_what_the_converter_printed(tmp_path, capfd, monkeypatch):
    def convert():
        os.write(2, b"converter diagnostics\n")
        raise RuntimeError("conversion failed")

    def failing_converter(model):
        converter = from_keras_model(model)
        converter.convert = convert
        return converter

    from_keras_model = tf.lite.TFLiteConverter.from_keras_model
    monkeypatch.setattr(tf.lite.TFLiteConverter, "from_keras_model", failing_converter)
    with pytest.raises(RuntimeError, match="conversion failed"):
        singe_keras.export_tflite(zoo.build("chain"), tmp_path / "m.tflite")
    assert "converter diagnostics" in capfd.readouterr().err


@pytest.mark.parametrize("form", ["arrays", "dataset", "py_dataset"])
def test_representative_dataset_takes_the_forms_prune_takes(form, tmp_path):
    model = _models()["pruned"]
    x = zoo.sample_inputs(model, batch=32)
    y = np.zeros(len(x), "int64")

    data = {
        "arrays": (x, y),
        "dataset": tf.data.Dataset.from_tensor_slices((x, y)).batch(8),
        "py_dataset": zoo.Batches(x, y, 8),
    }[form]
    result = singe_keras.export_tflite(model, tmp_path / "q.tflite", quantization="int8",
                                       representative_dataset=data)
    assert result.inputs[0]["dtype"] == "int8"


def test_representative_dataset_of_the_wrong_shape_is_rejected(tmp_path):
    model = zoo.build("chain")
    x = zoo.sample_inputs(model, batch=4)
    with pytest.raises(ValueError, match="`representative_dataset` must hold batches"):
        singe_keras.export_tflite(model, tmp_path / "m.tflite",
                                  representative_dataset=(x[..., :1], np.zeros(4)))
    assert list(tmp_path.iterdir()) == []
