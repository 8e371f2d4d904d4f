"""TFLite export of (pruned) Keras models, verified after writing.

`export_tflite` converts with `tf.lite.TFLiteConverter.from_keras_model`,
which freezes the model's variables into the file. (Measured trap:
`TFLiteConverter.from_concrete_functions([fn], model)` can leave variables
unfrozen and the .tflite then outputs NaN; the verification step below
would reject such a file.) Only builtin TFLite ops are allowed by default:
GPU and NPU delegates cannot run Select TF ops.

The file is converted to a temporary path, loaded in a TFLite interpreter
(LiteRT's `ai_edge_litert` when installed, else `tf.lite`), run on sample
inputs and compared with Keras; only then is it renamed to `path`. An
interrupted or failed export leaves no file behind. What the converter and
LiteRT print on their own is kept off the user's console (`quiet`).
"""

import contextlib
import dataclasses
import json
import os
import re
import sys
import tempfile

import keras
import numpy as np
import tensorflow as tf

from singe_keras import data as data_lib
from singe_keras import internals
from singe_keras import user_warning
from singe_keras.files import atomic_output, write_atomically

QUANTIZATIONS = (None, "float16", "dynamic", "int8")
_FLOAT_TOLERANCE = 1e-4


@dataclasses.dataclass(frozen=True)
class ExportResult:
    """What `export_tflite` wrote and how the file compares with Keras.

    Attributes:
        path: the .tflite file.
        size_bytes: its size.
        quantization: `None`, `"float16"`, `"dynamic"` or `"int8"`.
        max_relative_error: max |tflite - keras| / max |keras| on the samples.
        top1_agreement: fraction of samples where the argmax of the outputs
            agree (for classifiers; quantized models are judged by it).
        ops: the TFLite op names in the file (empty if the interpreter does
            not tell).
        runs_with_xnnpack: whether LiteRT's default CPU delegate (XNNPACK)
            accepts the file; when it does not, LiteRT's plain kernels
            still run it (slower), and a warning says so.
        inputs, outputs: name, shape, dtype and quantization of each tensor.
    """

    path: str
    size_bytes: int
    quantization: str
    max_relative_error: float
    top1_agreement: float
    ops: list
    runs_with_xnnpack: bool
    inputs: list
    outputs: list

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def save(self, path: str | None = None) -> str:
        """Writes the result as JSON (default: next to the .tflite file)."""
        path = path or os.path.splitext(self.path)[0] + ".json"
        write_atomically(path, json.dumps(self.to_dict(), indent=1).encode())
        return path


def export_tflite(
    model: keras.Model,
    path: str,
    quantization: str | None = None,
    representative_dataset=None,
    io_dtype: str = "int8",
    allow_select_ops: bool = False,
    verification_samples: int = 32,
) -> ExportResult:
    """Converts a Keras model to a verified .tflite file.

    Args:
        model: a built `keras.Model` with fixed input sizes (the batch may be
            `None`).
        path: where to write the .tflite file (its folder must exist).
        quantization: `None` (float32), `"float16"` (weights in float16, for
            GPU delegates), `"dynamic"` (int8 weights, float activations) or
            `"int8"` (full integer, for NPUs; needs
            `representative_dataset`). Defaults to `None`.
        representative_dataset: sample inputs, in the forms `prune` takes
            (`(x, y)` arrays, a batched `tf.data.Dataset` of `(x, y)`, a
            `keras.utils.PyDataset`; labels are ignored) or as inputs alone:
            a NumPy array `(N, ...)`, a `tf.data.Dataset` of input batches,
            or a callable returning an iterator of `[input_batch]` lists (the
            TFLite convention). Calibrates `"int8"`, and its first samples
            verify the file (random inputs otherwise). Defaults to `None`.
        io_dtype: input/output type of `"int8"` models: `"int8"` or
            `"uint8"`. Defaults to `"int8"`.
        allow_select_ops: allow Select TF ops (they run on CPU only and
            need the Flex delegate). Defaults to `False`.
        verification_samples: how many samples verify the file.
            Defaults to `32`.

    Returns:
        An `ExportResult` (`result.save()` writes it as JSON next to the file).

    Raises:
        ValueError: for a bad `path`, `quantization` or `io_dtype`, `"int8"`
            without `representative_dataset`, a `representative_dataset`
            whose inputs do not fit the model, inputs of unknown size, ops
            that need Select TF ops, or a file that does not match Keras
            (float32: max relative error above 1e-4).

    Example:

    ```python
    result = singe_keras.export_tflite(pruned, "pruned.tflite")
    int8 = singe_keras.export_tflite(pruned, "pruned_int8.tflite", quantization="int8",
                                     representative_dataset=x_train[:200])
    print(result.size_bytes, int8.top1_agreement)
    ```
    """
    _check_arguments(model, path, quantization, representative_dataset, io_dtype)
    if isinstance(verification_samples, bool) or not isinstance(verification_samples, int) or (
        verification_samples < 1
    ):
        raise ValueError(
            "`verification_samples` must be a positive integer. "
            f"Received: verification_samples={verification_samples!r}"
        )
    samples = _samples(model, representative_dataset, verification_samples)
    content = convert(model, quantization, representative_dataset, io_dtype, allow_select_ops)
    with atomic_output(path, suffix=".tflite") as tmp:
        with open(tmp, "wb") as f:
            f.write(content)
        result = _verify(model, tmp, quantization, samples)
    return dataclasses.replace(result, path=os.fspath(path))


def convert(
    model, quantization=None, representative_dataset=None, io_dtype="int8",
    allow_select_ops=False,
):
    """The .tflite bytes of a model, unverified (`export_tflite` verifies them).

    `tf.lite.TFLiteConverter.from_keras_model`, with the options of
    `export_tflite` (see there), which checks the arguments first.

    Raises:
        ValueError: if the model needs Select TF ops and `allow_select_ops`
            is `False`.
    """
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if quantization is not None:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if quantization == "float16":
        converter.target_spec.supported_types = [tf.float16]
    if quantization == "int8":
        calibration = _calibration(representative_dataset)
        converter.representative_dataset = calibration
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.as_dtype(io_dtype)
        converter.inference_output_type = tf.as_dtype(io_dtype)
    if allow_select_ops:
        converter.target_spec.supported_ops.append(tf.lite.OpsSet.SELECT_TF_OPS)
    try:
        with quiet():
            content = converter.convert()
    except Exception as error:  # the converter raises ConverterError and others
        select_ops = re.search(r"TF Select ops: (.*)", str(error))
        if select_ops:
            raise ValueError(
                "The model needs ops that are not builtin TFLite ops: "
                f"{select_ops.group(1)}. GPU and NPU delegates cannot run them. "
                "Replace those layers, or pass `allow_select_ops=True` to run "
                "them as Select TF ops (CPU only, needs the Flex delegate)."
            ) from error
        raise
    return content


def _check_arguments(model, path, quantization, representative_dataset, io_dtype):
    if not isinstance(model, keras.Model) or not model.built or not model.inputs:
        raise ValueError(
            "`model` must be a built Keras model with known inputs (a functional "
            f"or Sequential model with an Input). Received: model={model!r}"
        )
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise ValueError(
            "export_tflite verifies single-input, single-output models. "
            f"Received a model with {len(model.inputs)} inputs and "
            f"{len(model.outputs)} outputs."
        )
    shape = tuple(model.inputs[0].shape)
    if any(d is None for d in shape[1:]):
        raise ValueError(
            f"TFLite needs fixed input sizes; the model's input shape is {shape}. "
            "Rebuild it with e.g. `keras.Input(shape=(32, 32, 3))`."
        )
    path = os.fspath(path)
    if not path.endswith(".tflite"):
        raise ValueError(f"`path` must end with '.tflite'. Received: path={path!r}")
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise ValueError(
            f"The folder of `path` does not exist: {directory!r}. Create it first."
        )
    if quantization not in QUANTIZATIONS:
        raise ValueError(
            f"`quantization` must be one of {list(QUANTIZATIONS)}. "
            f"Received: quantization={quantization!r}"
        )
    if quantization == "int8" and representative_dataset is None:
        raise ValueError(
            'quantization="int8" needs `representative_dataset`: about 100-500 '
            "typical inputs, e.g. `representative_dataset=x_train[:200]`."
        )
    if io_dtype not in ("int8", "uint8"):
        raise ValueError(
            f"`io_dtype` must be 'int8' or 'uint8'. Received: io_dtype={io_dtype!r}"
        )
    if representative_dataset is not None:
        first = next(data_lib.input_batches(representative_dataset), None)
        if first is None or first.ndim != len(shape) or first.shape[1:] != shape[1:] or (
            not len(first)
        ):
            raise ValueError(
                "`representative_dataset` must hold batches of inputs of shape "
                f"(batch,) + {shape[1:]}, e.g. `x_train[:200]` or `(x_train, y_train)`. "
                "Received a first batch of shape "
                f"{None if first is None else first.shape}."
            )


@contextlib.contextmanager
def quiet():
    """Keeps what the converter and LiteRT print on their own off the console.

    They write from C++ straight to the process's stderr (`fully_quantize: 0,
    inference_type: 6 ...`, `INFO: Created TensorFlow Lite XNNPACK delegate`),
    beyond the reach of `sys.stderr` and of logging, and Keras's export prints
    every signature. For the block, file descriptor 2 goes to a temporary
    file (output of other threads too) and Keras's interactive logging is
    off. If the block fails, the captured text is written back to stderr: it
    may explain the failure.
    """
    interactive = keras.config.is_interactive_logging_enabled()
    keras.config.disable_interactive_logging()
    sys.stderr.flush()
    saved = os.dup(2)
    failed = True
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
            failed = False
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            if interactive:
                keras.config.enable_interactive_logging()
            if failed:
                capture.seek(0)
                sys.stderr.write(capture.read().decode(errors="replace"))


def _calibration(representative_dataset):
    def generate():
        for batch in data_lib.input_batches(representative_dataset):
            for sample in batch:
                yield [sample[None].astype("float32")]

    return generate


def _samples(model, representative_dataset, count):
    if representative_dataset is not None:
        rows = []
        for batch in data_lib.input_batches(representative_dataset):
            rows.extend(batch)
            if len(rows) >= count:
                break
        return np.stack(rows[:count]).astype("float32")
    shape = (count,) + tuple(model.inputs[0].shape[1:])
    return np.random.default_rng(0).normal(size=shape).astype("float32")


def _interpreter(path, default_delegates=False):
    """The file in LiteRT, by default in its plain kernels (no delegate)."""
    try:
        from ai_edge_litert import interpreter as litert
    except ImportError:  # LiteRT not installed: TensorFlow's own interpreter
        interpreter_class, resolver = tf.lite.Interpreter, tf.lite.experimental.OpResolverType
    else:
        interpreter_class, resolver = litert.Interpreter, litert.OpResolverType
    interpreter = interpreter_class(
        model_path=path,
        experimental_op_resolver_type=(
            resolver.AUTO if default_delegates else resolver.BUILTIN_WITHOUT_DEFAULT_DELEGATES
        ),
    )
    interpreter.allocate_tensors()
    return interpreter


def _runs_with_xnnpack(path):
    try:
        with quiet():
            _interpreter(path, default_delegates=True).invoke()
    except (RuntimeError, ValueError) as error:
        user_warning.warn(
            "LiteRT's default CPU delegate (XNNPACK) cannot run this file "
            f"({error}); the plain LiteRT kernels can, more slowly. It was seen "
            "with layers pruned to 1 channel (float32) and to 2 (int8): a larger "
            "`min_units` avoids them.",
        )
        return False
    return True


def _details(details):
    return [
        {
            "name": d["name"],
            "shape": [int(s) for s in d["shape"]],
            "dtype": np.dtype(d["dtype"]).name,
            "quantization": [float(d["quantization"][0]), int(d["quantization"][1])],
        }
        for d in details
    ]


def _verify(model, path, quantization, samples):
    interpreter = _interpreter(path)
    (source,), (target,) = interpreter.get_input_details(), interpreter.get_output_details()
    expected = np.asarray(model.predict(samples, batch_size=len(samples), verbose=0))
    outputs = []
    for sample in samples:
        value = sample[None]
        if source["dtype"] != np.float32:
            scale, zero = source["quantization"]
            info = np.iinfo(source["dtype"])
            value = np.clip(np.round(value / scale + zero), info.min, info.max)
        interpreter.set_tensor(source["index"], value.astype(source["dtype"]))
        interpreter.invoke()
        output = interpreter.get_tensor(target["index"])[0].astype("float32")
        if target["dtype"] != np.float32:
            scale, zero = target["quantization"]
            output = (output - zero) * scale
        outputs.append(output)
    outputs = np.stack(outputs)
    agreement = float(np.mean(
        np.argmax(outputs.reshape(len(samples), -1), -1)
        == np.argmax(expected.reshape(len(samples), -1), -1)
    ))
    if not np.isfinite(outputs).all():
        raise ValueError(
            "The converted file outputs NaN or infinity where the Keras model does "
            "not (variables left unfrozen?). The file was not written."
        )
    scale = max(float(np.abs(expected).max()), 1e-12)
    error = float(np.abs(outputs - expected).max() / scale)
    if quantization is None and not error <= _FLOAT_TOLERANCE:
        raise ValueError(
            f"The converted file does not match the Keras model: max relative error "
            f"{error:.3g} > {_FLOAT_TOLERANCE} on {len(samples)} samples. The file "
            "was not written."
        )
    return ExportResult(
        path=path,
        size_bytes=os.path.getsize(path),
        quantization=quantization,
        max_relative_error=error,
        top1_agreement=agreement,
        ops=internals.litert_op_names(interpreter),
        runs_with_xnnpack=_runs_with_xnnpack(path),
        inputs=_details(interpreter.get_input_details()),
        outputs=_details(interpreter.get_output_details()),
    )
