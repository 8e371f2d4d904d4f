"""Timing in LiteRT: `LiteRTTimer` and the runtime options it checks."""

import os
import tempfile
import time
import weakref

import numpy as np

from singe_keras import export as export_lib

DELEGATES = ("xnnpack", "none")
PRECISIONS = ("float32", "int8")
_CALIBRATION_SAMPLES = 16


def _check_choice(name, value, choices):
    if value not in choices:
        raise ValueError(f"`{name}` must be one of {list(choices)}. Received: {name}={value!r}")


def _check_positive_int(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"`{name}` must be a positive integer. Received: {name}={value!r}")


def litert_version():
    """The installed ai-edge-litert version, or `None`."""
    from importlib import metadata

    try:
        return metadata.version("ai-edge-litert")
    except metadata.PackageNotFoundError:
        return None


class LiteRTTimer:
    """Times a Keras model as a .tflite file in LiteRT: the median latency in ms.

    The model is converted with `singe_keras.export`'s converter
    (`from_keras_model`; `"int8"` is full-integer quantization calibrated on
    random normal inputs, enough for timing), loaded in ai-edge-litert's
    `Interpreter` with `threads` threads and the XNNPACK delegate (or none),
    run `warmup` times, then timed over `runs` invocations, in a new
    interpreter each call. A model timed again is not converted again (the
    timer keeps its .tflite bytes while the model lives).

    Args:
        threads: CPU threads of the interpreter. Defaults to `1`.
        delegate: `"xnnpack"` (LiteRT's default CPU delegate) or `"none"`
            (the builtin kernels). Defaults to `"xnnpack"`.
        precision: `"float32"` or `"int8"`. Defaults to `"float32"`.
        runs: timed invocations; the median is returned. Defaults to `50`.
        warmup: untimed invocations first. Defaults to `5`.

    Raises:
        ValueError: for a bad argument.

    Example:

    ```python
    timer = singe_keras.latency.LiteRTTimer(threads=4, precision="int8")
    milliseconds = timer(model)
    ```
    """

    def __init__(self, threads=1, delegate="xnnpack", precision="float32", runs=50, warmup=5):
        _check_positive_int("threads", threads)
        _check_choice("delegate", delegate, DELEGATES)
        _check_choice("precision", precision, PRECISIONS)
        _check_positive_int("runs", runs)
        if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 0:
            raise ValueError(f"`warmup` must be an integer >= 0. Received: warmup={warmup!r}")
        self.threads, self.delegate, self.precision = threads, delegate, precision
        self.runs, self.warmup = runs, warmup
        self._converted = weakref.WeakKeyDictionary()  # a model timed again: converted once

    @property
    def runtime(self):
        """What the measurements depend on (part of every cache key)."""
        return {
            "runtime": f"ai-edge-litert {litert_version()}",
            "delegate": self.delegate,
            "threads": self.threads,
            "precision": self.precision,
        }

    def convert(self, model):
        """The .tflite bytes of `model` in this timer's precision."""
        if self.precision == "float32":
            return export_lib.convert(model)
        shape = (_CALIBRATION_SAMPLES,) + tuple(model.inputs[0].shape[1:])
        samples = np.random.default_rng(0).normal(size=shape).astype("float32")
        return export_lib.convert(model, "int8", samples)

    def time_file(self, path):
        """The median latency in ms of a .tflite file."""
        from ai_edge_litert import interpreter as litert

        options = {"model_path": os.fspath(path), "num_threads": self.threads}
        if self.delegate == "none":
            options["experimental_op_resolver_type"] = (
                litert.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
            )
        with export_lib.quiet():
            interpreter = litert.Interpreter(**options)
            interpreter.allocate_tensors()
        for detail in interpreter.get_input_details():
            dtype = np.dtype(detail["dtype"])
            zeros = np.zeros(detail["shape"], dtype)
            interpreter.set_tensor(detail["index"], zeros)
        for _ in range(self.warmup):
            interpreter.invoke()
        timings = []
        for _ in range(self.runs):
            start = time.perf_counter()
            interpreter.invoke()
            timings.append(time.perf_counter() - start)
        return 1e3 * float(np.median(timings))

    def __call__(self, model):
        with tempfile.TemporaryDirectory() as directory:
            path = os.path.join(directory, "probe.tflite")
            if model not in self._converted:
                self._converted[model] = self.convert(model)
            with open(path, "wb") as f:
                f.write(self._converted[model])
            return self.time_file(path)


def _check_timer_options(timer, threads=1, delegate="xnnpack", precision="float32"):
    """The timer `build` uses: `timer`, or a `LiteRTTimer` of the options (checked)."""
    if timer is None:
        return LiteRTTimer(threads, delegate, precision)
    if not callable(timer):
        raise TypeError(f"`timer` must be callable. Received: timer={timer!r}")
    if (threads, delegate, precision) != (1, "xnnpack", "float32"):
        raise ValueError(
            "Give `timer` or `threads`/`delegate`/`precision` (the settings of the "
            f"default LiteRT timer), not both. Received: timer={timer!r}, "
            f"threads={threads!r}, delegate={delegate!r}, precision={precision!r}"
        )
    return timer
