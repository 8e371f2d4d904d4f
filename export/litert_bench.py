#!/usr/bin/env python3
"""Inspect, run and time `.tflite` models with only LiteRT and NumPy.

This is the device-side half of singe_keras's export: copy this one file to the
machine where the model will live (a Raspberry Pi, a Jetson, an edge Linux
box, a laptop) and run it there. It needs `pip install ai-edge-litert numpy` and nothing
else; it never imports TensorFlow, Keras or singe_keras.

    python litert_bench.py info model.tflite
    python litert_bench.py run model.tflite --input image.npy
    python litert_bench.py bench model.tflite --runs 200 --threads 4 --json out.json
    python litert_bench.py compare original.tflite pruned.tflite \
        --flops-original 40.8e6 --flops-pruned 20.1e6
    python litert_bench.py probe probes/ --threads 4 --json table.json

`probe` times the probe files `singe_keras.latency.write_probes` wrote (one
layer each, at several channel counts, plus the whole model) and writes the
latency table that `singe_keras.latency.from_measurements` reads, for
`singe_keras.prune(..., target_latency=...)` on this device's timings.

The same steps are plain functions (`load`, `random_inputs`, `run`,
`benchmark`, `compare`) for scripts that import this file as a module.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import sys
import tempfile
import time
from datetime import datetime, timezone

import numpy as np

__all__ = [
    "load",
    "random_inputs",
    "run",
    "dequantize",
    "benchmark",
    "compare",
    "probe",
    "summarize",
    "model_ops",
    "write_json",
    "main",
]

_INSTALL_HINT = (
    "litert_bench needs the LiteRT runtime: `pip install ai-edge-litert numpy`. "
    "The older tflite-runtime package is not a substitute: its last release "
    "(2.14, 2023) cannot run models converted by current TensorFlow."
)


# ----------------------------------------------------------------------------
# Loading


def _interpreter_module():
    # Imported lazily so that `--help`, and the error message below, work on a
    # machine where the runtime is not installed yet.
    try:
        from ai_edge_litert import interpreter
    except ImportError as error:
        raise ImportError(f"{_INSTALL_HINT} (import failed: {error})") from error
    return interpreter


def _check_model_file(path: str) -> None:
    if not os.path.exists(path):
        raise FileNotFoundError(f"Model file not found: '{path}'")
    if os.path.isdir(path):
        raise ValueError(
            f"'{path}' is a directory, not a .tflite file. A SavedModel directory "
            "must be converted to .tflite first (for a Keras model: "
            "`singe_keras.export_tflite(model, path)`)."
        )


def _open(path, threads: int = 1, xnnpack: bool = True):
    """Creates an interpreter without allocating tensors (see `load`)."""
    path = os.fspath(path)
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(
            f"`threads` must be a positive integer. Received: threads={threads!r}"
        )
    _check_model_file(path)
    interpreter_module = _interpreter_module()
    options = {"model_path": path, "num_threads": threads}
    if not xnnpack:
        # The default op resolver applies the XNNPACK delegate when tensors are
        # allocated; this one keeps the builtin CPU kernels only.
        options["experimental_op_resolver_type"] = (
            interpreter_module.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
        )
    try:
        return interpreter_module.Interpreter(**options)
    except ValueError as error:
        raise ValueError(
            f"'{path}' is not a valid TFLite model ({error}). Expected a .tflite "
            "flatbuffer; Keras (.keras, .h5) and SavedModel files must be "
            "converted first, e.g. with `singe_keras.export_tflite(model, path)`."
        ) from error


def model_ops(interpreter) -> list[str] | None:
    """Lists the op name of every node in the model, in graph order.

    Uses the interpreter's private `_get_ops_details()`; call it before
    `allocate_tensors()` to see the model's own ops (afterwards the list also
    holds one `DELEGATE` node per partition a delegate such as XNNPACK took).

    Args:
        interpreter: An `ai_edge_litert.interpreter.Interpreter`.

    Returns:
        Op names such as `"CONV_2D"` or `"FlexMatrixDeterminant"`, or `None` if
        this version of ai-edge-litert does not expose them.

    Example:

    >>> interpreter = load("model.tflite")
    >>> model_ops(interpreter)[:2]
    ['CONV_2D', 'MEAN']
    """
    if not hasattr(interpreter, "_get_ops_details"):
        return None
    return [op["op_name"] for op in interpreter._get_ops_details()]


def _allocate(interpreter, path: str) -> None:
    try:
        interpreter.allocate_tensors()
    except RuntimeError as error:
        flex = sorted({op for op in model_ops(interpreter) or [] if op.startswith("Flex")})
        if flex or "Select TensorFlow op" in str(error):
            raise ValueError(
                f"'{path}' uses Select TensorFlow (Flex) ops {', '.join(flex) or ''}, which "
                "the LiteRT builtin runtime cannot run (nor can GPU or NPU "
                "delegates). Convert with builtin ops only "
                "(`converter.target_spec.supported_ops = "
                "[tf.lite.OpsSet.TFLITE_BUILTINS]`)."
            ) from error
        raise ValueError(f"'{path}' could not be prepared to run: {error}") from error


def load(path, threads: int = 1, xnnpack: bool = True):
    """Opens a `.tflite` file, ready to run.

    Creates a LiteRT interpreter and allocates its tensors, which is also when
    the XNNPACK delegate (LiteRT's default CPU backend) takes the ops it
    supports. Turn it off to time the builtin CPU kernels instead.

    Args:
        path: Path to the `.tflite` file.
        threads: Number of CPU threads the kernels may use. Defaults to `1`.
        xnnpack: Whether to apply the default XNNPACK delegate. Defaults to
            `True`.

    Returns:
        An `ai_edge_litert.interpreter.Interpreter` with allocated tensors.

    Raises:
        FileNotFoundError: If `path` does not exist.
        ValueError: If `threads` is not a positive integer, the file is not a
            valid TFLite model, or the model cannot run here (for example
            because it needs Select TensorFlow ops).
        ImportError: If ai-edge-litert is not installed.

    Example:

    >>> interpreter = load("model.tflite", threads=4)
    >>> interpreter.get_input_details()[0]["shape"]
    array([ 1, 32, 32,  3], dtype=int32)
    """
    interpreter = _open(path, threads, xnnpack)
    _allocate(interpreter, os.fspath(path))
    return interpreter


# ----------------------------------------------------------------------------
# Running


def random_inputs(interpreter, seed: int = 0) -> list[np.ndarray]:
    """Draws one random array per model input, of the input's shape and dtype.

    Floating inputs are uniform in [0, 1); integer inputs cover the whole range
    of their dtype (for a full-int8 model: -128..127), boolean inputs are fair
    coin flips. Values rarely matter for latency, but the same seed gives the
    same arrays so runs are repeatable.

    Args:
        interpreter: An interpreter from `load`.
        seed: Seed of the NumPy generator. Defaults to `0`.

    Returns:
        A list of arrays in the order of `interpreter.get_input_details()`.

    Raises:
        TypeError: If an input has a dtype that cannot be drawn at random
            (such as strings).

    Example:

    >>> [x.shape for x in random_inputs(load("model.tflite"))]
    [(1, 32, 32, 3)]
    """
    rng = np.random.default_rng(seed)
    arrays = []
    for detail in interpreter.get_input_details():
        dtype = np.dtype(detail["dtype"])
        shape = tuple(int(d) for d in detail["shape"])
        if dtype == np.bool_:
            arrays.append(rng.integers(0, 2, size=shape).astype(np.bool_))
        elif np.issubdtype(dtype, np.integer):
            info = np.iinfo(dtype)
            arrays.append(
                rng.integers(info.min, info.max, size=shape, dtype=dtype, endpoint=True)
            )
        elif np.issubdtype(dtype, np.floating):
            arrays.append(rng.random(shape).astype(dtype))
        else:
            raise TypeError(
                f"Cannot draw random values for input '{detail['name']}' of dtype "
                f"{dtype}; pass the input explicitly."
            )
    return arrays


def _is_quantized(detail) -> bool:
    scale, _ = detail["quantization"]
    return scale != 0.0


def _convert_input(array: np.ndarray, detail) -> np.ndarray:
    dtype = np.dtype(detail["dtype"])
    if array.dtype == dtype:
        return array
    if np.issubdtype(dtype, np.floating) and np.issubdtype(array.dtype, np.floating):
        # Typically float64 arrays from np.save for a float32 model.
        return array.astype(dtype)
    if (
        np.issubdtype(dtype, np.integer)
        and np.issubdtype(array.dtype, np.floating)
        and _is_quantized(detail)
    ):
        # A full-integer model takes quantized values: q = x / scale + zero_point.
        scale, zero_point = detail["quantization"]
        info = np.iinfo(dtype)
        quantized = np.round(array / scale) + zero_point
        return np.clip(quantized, info.min, info.max).astype(dtype)
    raise TypeError(
        f"Input '{detail['name']}' expects {dtype}; received an array of "
        f"{array.dtype}. Only float-to-float casts and float-to-quantized-integer "
        "conversion (with the input's scale and zero point) are done for you."
    )


def _set_inputs(interpreter, inputs) -> None:
    details = interpreter.get_input_details()
    if len(inputs) != len(details):
        raise ValueError(
            f"The model has {len(details)} input(s); received {len(inputs)} array(s)."
        )
    arrays = [np.asarray(x) for x in inputs]
    resized = False
    for detail, array in zip(details, arrays):
        if tuple(array.shape) != tuple(int(d) for d in detail["shape"]):
            try:
                interpreter.resize_tensor_input(detail["index"], array.shape, strict=True)
            except (RuntimeError, ValueError) as error:
                raise ValueError(
                    f"Input '{detail['name']}' has shape "
                    f"{tuple(int(d) for d in detail['shape_signature'])} (-1 marks "
                    f"resizable dimensions); received an array of shape "
                    f"{array.shape}."
                ) from error
            resized = True
    if resized:
        interpreter.allocate_tensors()
    for detail, array in zip(interpreter.get_input_details(), arrays):
        interpreter.set_tensor(detail["index"], _convert_input(array, detail))


def run(interpreter, inputs=None) -> list[np.ndarray]:
    """Runs the model once and returns its outputs.

    Arrays whose shape differs from the model's are accepted where the model
    marks the dimension resizable (usually the batch). Float arrays given to a
    full-integer model are quantized with the input's scale and zero point;
    outputs are returned as the model produces them (see `dequantize`).

    Args:
        interpreter: An interpreter from `load`.
        inputs: One array per model input, in the order of
            `get_input_details()`, or `None` for `random_inputs(interpreter)`.
            Defaults to `None`.

    Returns:
        A list of output arrays (copies), in the order of
        `get_output_details()`.

    Raises:
        ValueError: If the number of arrays or a shape does not fit the model.
        TypeError: If an array's dtype cannot be converted to the input's.

    Example:

    >>> interpreter = load("model.tflite")
    >>> run(interpreter, [np.zeros((1, 32, 32, 3), np.float32)])[0].shape
    (1, 10)
    """
    if inputs is None:
        inputs = random_inputs(interpreter)
    _set_inputs(interpreter, inputs)
    interpreter.invoke()
    return [interpreter.get_tensor(d["index"]).copy() for d in interpreter.get_output_details()]


def dequantize(array: np.ndarray, detail) -> np.ndarray:
    """Maps a quantized output back to real values: (q - zero_point) * scale.

    Args:
        array: An output array of `run`.
        detail: Its entry of `interpreter.get_output_details()`.

    Returns:
        A float32 array; `array` itself if the tensor is not quantized.

    Example:

    >>> interpreter = load("model_int8.tflite")
    >>> dequantize(run(interpreter)[0], interpreter.get_output_details()[0])
    """
    if not _is_quantized(detail):
        return array
    scale, zero_point = detail["quantization"]
    return ((array.astype(np.float32) - zero_point) * scale).astype(np.float32)


# ----------------------------------------------------------------------------
# Timing


def _check_count(name: str, value, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        kind = "a positive integer" if minimum == 1 else "a non-negative integer"
        raise ValueError(f"`{name}` must be {kind}. Received: {name}={value!r}")


def _time_invokes(interpreter, count: int) -> list[float]:
    timings = []
    for _ in range(count):
        start = time.perf_counter()
        interpreter.invoke()
        timings.append((time.perf_counter() - start) * 1e3)
    return timings


def summarize(timings_ms) -> dict:
    """Median, 10th/90th percentiles, mean and standard deviation of timings.

    Args:
        timings_ms: Latencies in milliseconds.

    Returns:
        A dict with `median_ms`, `p10_ms`, `p90_ms`, `mean_ms`, `std_ms`
        (population standard deviation), `min_ms` and `max_ms`.

    Example:

    >>> summarize([1.0, 2.0, 3.0])["median_ms"]
    2.0
    """
    values = np.asarray(timings_ms, dtype=np.float64)
    if values.size == 0:
        raise ValueError("`timings_ms` must not be empty.")
    return {
        "median_ms": float(np.median(values)),
        "p10_ms": float(np.percentile(values, 10)),
        "p90_ms": float(np.percentile(values, 90)),
        "mean_ms": float(values.mean()),
        "std_ms": float(values.std()),
        "min_ms": float(values.min()),
        "max_ms": float(values.max()),
    }


class _GarbageCollectionPaused:
    # A collection in the middle of a timed invoke() would show up as an outlier
    # that belongs to Python, not to the model.
    def __enter__(self):
        self._was_enabled = gc.isenabled()
        gc.disable()

    def __exit__(self, *exc_info):
        if self._was_enabled:
            gc.enable()


def benchmark(interpreter, runs: int = 100, warmup: int = 10, inputs=None) -> dict:
    """Times `invoke()` of one model.

    Sets the inputs once, runs `warmup` untimed invocations (the first one
    also packs weights for XNNPACK), then times `runs` invocations one by one
    with `time.perf_counter`. Only `invoke()` is timed, not copying inputs in
    or outputs out. Report the median: it is the statistic least moved by other
    work on the machine.

    Args:
        interpreter: An interpreter from `load`.
        runs: Number of timed invocations. Defaults to `100`.
        warmup: Number of untimed invocations first. Defaults to `10`.
        inputs: Arrays to feed, or `None` for `random_inputs(interpreter)`.
            Defaults to `None`.

    Returns:
        The `summarize` statistics plus `runs`, `warmup` and `timings_ms`
        (every timed run, in order).

    Raises:
        ValueError: If `runs` < 1 or `warmup` < 0, or the inputs do not fit.

    Example:

    >>> result = benchmark(load("model.tflite"), runs=50)
    >>> print(f"{result['median_ms']:.3f} ms")
    """
    _check_count("runs", runs, 1)
    _check_count("warmup", warmup, 0)
    _set_inputs(interpreter, random_inputs(interpreter) if inputs is None else inputs)
    with _GarbageCollectionPaused():
        _time_invokes(interpreter, warmup)
        timings = _time_invokes(interpreter, runs)
    return {**summarize(timings), "runs": runs, "warmup": warmup, "timings_ms": timings}


def compare(
    original,
    pruned,
    runs: int = 100,
    warmup: int = 10,
    block: int = 10,
    flops_original: float | None = None,
    flops_pruned: float | None = None,
) -> dict:
    """Times two models against each other in one process.

    The timed runs are interleaved in blocks of `block` runs, in the order
    original, pruned, pruned, original, original, ... so that background load
    and CPU frequency changes fall on both models alike instead of on whichever
    ran second. The latency ratio is taken between the medians.

    Args:
        original: Interpreter of the unpruned model, from `load`.
        pruned: Interpreter of the pruned model, from `load`.
        runs: Number of timed invocations per model. Defaults to `100`.
        warmup: Number of untimed invocations per model first. Defaults to
            `10`.
        block: Number of consecutive runs of one model before switching.
            Defaults to `10`.
        flops_original: FLOPs of the original model, to put the FLOPs ratio
            next to the latency ratio (e.g. from `singe_keras.count_flops`).
            Defaults to `None`.
        flops_pruned: FLOPs of the pruned model. Defaults to `None`.

    Returns:
        A dict with `original` and `pruned` (each as from `benchmark`),
        `latency_ratio` (pruned median / original median), `block`, and, when
        FLOPs are given, `flops_original`, `flops_pruned` and `flops_ratio`.

    Raises:
        ValueError: If a count is out of range, or only one FLOPs count is
            given, or a FLOPs count is not positive.

    Example:

    >>> result = compare(load("resnet.tflite"), load("resnet_pruned.tflite"))
    >>> print(f"{result['latency_ratio']:.2f}x the original latency")
    """
    _check_count("runs", runs, 1)
    _check_count("warmup", warmup, 0)
    _check_count("block", block, 1)
    if (flops_original is None) != (flops_pruned is None):
        raise ValueError(
            "Pass both `flops_original` and `flops_pruned`, or neither. Received: "
            f"flops_original={flops_original}, flops_pruned={flops_pruned}"
        )
    for name, value in (("flops_original", flops_original), ("flops_pruned", flops_pruned)):
        if value is not None and not value > 0:
            raise ValueError(f"`{name}` must be positive. Received: {name}={value}")

    interpreters = {"original": original, "pruned": pruned}
    for interpreter in interpreters.values():
        _set_inputs(interpreter, random_inputs(interpreter))
    timings = {name: [] for name in interpreters}
    with _GarbageCollectionPaused():
        for interpreter in interpreters.values():
            _time_invokes(interpreter, warmup)
        done, round_index = 0, 0
        while done < runs:
            count = min(block, runs - done)
            order = ("original", "pruned") if round_index % 2 == 0 else ("pruned", "original")
            for name in order:
                timings[name].extend(_time_invokes(interpreters[name], count))
            done += count
            round_index += 1

    result = {"block": block}
    for name, values in timings.items():
        result[name] = {**summarize(values), "runs": runs, "warmup": warmup, "timings_ms": values}
    result["latency_ratio"] = result["pruned"]["median_ms"] / result["original"]["median_ms"]
    if flops_original is not None:
        result["flops_original"] = float(flops_original)
        result["flops_pruned"] = float(flops_pruned)
        result["flops_ratio"] = float(flops_pruned) / float(flops_original)
    return result


# The format singe_keras.latency reads (its FORMAT).
PROBE_FORMAT = "singe_keras.latency/1"


def probe(directory, threads: int = 1, xnnpack: bool = True, runs: int = 50,
          warmup: int = 5) -> dict:
    """Times every probe file of a `write_probes` folder: the device's latency table.

    Reads `manifest.json` (written by `singe_keras.latency.write_probes`),
    times each probe .tflite file, the whole model and the thinned models
    that calibrate the table's scale (`benchmark`, medians) and returns the
    record `singe_keras.latency.from_measurements` reads.

    Args:
        directory: The folder with `manifest.json` and the probe files.
        threads: CPU threads of the interpreter. Defaults to `1`.
        xnnpack: Whether to apply the XNNPACK delegate. Defaults to `True`.
        runs: Timed invocations per file. Defaults to `50`.
        warmup: Untimed invocations per file first. Defaults to `5`.

    Returns:
        A dict: `format`, `precision`, `threads`, `delegate`, `layers` (from
        the manifest), `measurements` (one per probe: `table`, `channels`,
        `file` and the `summarize` statistics), `model_ms`, `thinned` (the
        manifest's thinned models, each with its `median_ms`) and `runtime`.

    Raises:
        FileNotFoundError: If the folder has no `manifest.json` or a probe file
            is missing.
        ValueError: If the manifest is not a singe_keras probe manifest, or a
            count is out of range.

    Example:

    >>> table = probe("probes", threads=4)
    >>> write_json(table, "table.json")
    """
    _check_count("runs", runs, 1)
    _check_count("warmup", warmup, 0)
    manifest_path = os.path.join(os.fspath(directory), "manifest.json")
    if not os.path.exists(manifest_path):
        raise FileNotFoundError(
            f"No manifest.json in '{directory}': write the probes with "
            "`singe_keras.latency.write_probes(model, directory)`."
        )
    with open(manifest_path) as file:
        manifest = json.load(file)
    if manifest.get("format") != PROBE_FORMAT:
        raise ValueError(
            f"'{manifest_path}' is not a singe_keras probe manifest (format "
            f"{manifest.get('format')!r}, expected {PROBE_FORMAT!r})."
        )

    def median(name):
        path = os.path.join(os.fspath(directory), name)
        return benchmark(load(path, threads, xnnpack), runs, warmup)

    measurements = []
    for entry in manifest["probes"]:
        result = median(entry["file"])
        del result["timings_ms"]
        measurements.append({**entry, **result})
    thinned = [{**entry, "median_ms": median(entry["file"])["median_ms"]}
               for entry in manifest.get("thinned", [])]
    runtime = _runtime_record()
    runtime["runtime"] = f"ai-edge-litert {runtime['ai_edge_litert']}"
    return {
        "format": PROBE_FORMAT,
        "command": "probe",
        "precision": manifest["precision"],
        "threads": threads,
        "delegate": "xnnpack" if xnnpack else "none",
        "layers": manifest["layers"],
        "measurements": measurements,
        "model_ms": median(manifest["model"])["median_ms"],
        "thinned": thinned,
        "runtime": runtime,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


# ----------------------------------------------------------------------------
# Records


def _runtime_record() -> dict:
    from importlib import metadata

    try:
        litert_version = metadata.version("ai-edge-litert")
    except metadata.PackageNotFoundError:
        litert_version = None
    return {
        "ai_edge_litert": litert_version,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "system": platform.system(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
    }


def write_json(record: dict, path) -> None:
    """Writes `record` as JSON atomically.

    The file is written to a temporary file in the same directory and moved
    into place with `os.replace`, so an interrupted run never leaves a
    half-written file behind.

    Args:
        record: A JSON-serialisable dict.
        path: Destination file.

    Example:

    >>> write_json(benchmark(load("model.tflite")), "bench.json")
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    handle, temporary = tempfile.mkstemp(
        dir=directory, prefix=f".{os.path.basename(path)}.", suffix=".tmp"
    )
    try:
        with os.fdopen(handle, "w") as file:
            json.dump(record, file, indent=2)
            file.write("\n")
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise


# ----------------------------------------------------------------------------
# Command line


def _format_shape(shape) -> str:
    return "(" + ", ".join(str(int(d)) for d in shape) + ")"


def _format_quantization(detail) -> str:
    parameters = detail.get("quantization_parameters") or {}
    scales = np.asarray(parameters.get("scales", []))
    zero_points = np.asarray(parameters.get("zero_points", []))
    if scales.size > 1:
        return (
            f"per-axis quantized (axis {parameters.get('quantized_dimension')}, "
            f"{scales.size} scales)"
        )
    if not _is_quantized(detail):
        return "not quantized"
    scale, zero_point = detail["quantization"]
    if zero_points.size == 1:
        zero_point = int(zero_points[0])
    return f"scale {scale:.6g}  zero point {zero_point}"


def _print_tensors(title: str, details) -> None:
    print(title)
    for position, detail in enumerate(details):
        signature = detail.get("shape_signature")
        dynamic = ""
        if signature is not None and tuple(signature) != tuple(detail["shape"]):
            dynamic = f"  signature {_format_shape(signature)}"
        print(
            f"  [{position}] {detail['name']}  shape {_format_shape(detail['shape'])}"
            f"{dynamic}  {np.dtype(detail['dtype']).name}  {_format_quantization(detail)}"
        )


def _count_in_order(names) -> list[tuple[str, int]]:
    counts: dict[str, int] = {}
    for name in names:
        counts[name] = counts.get(name, 0) + 1
    return list(counts.items())


def _command_info(args) -> int:
    interpreter = _open(args.model, args.threads, not args.no_xnnpack)
    print(f"model    {args.model}  {os.path.getsize(args.model):,} bytes")
    _print_tensors("inputs", interpreter.get_input_details())
    _print_tensors("outputs", interpreter.get_output_details())
    signatures = interpreter.get_signature_list()
    if signatures:
        print(f"signatures  {', '.join(signatures)}")
    ops = model_ops(interpreter)
    if ops is None:
        print("ops      not listed by this version of ai-edge-litert")
    else:
        listed = ", ".join(
            name if count == 1 else f"{name} x{count}" for name, count in _count_in_order(ops)
        )
        print(f"ops      {len(ops)} nodes: {listed}")
        flex = sorted({name for name in ops if name.startswith("Flex")})
        if flex:
            print(
                f"warning  Select TensorFlow (Flex) ops {', '.join(flex)}: GPU/NPU "
                "delegates cannot run them, and LiteRT only with the Flex delegate linked in"
            )
    try:
        _allocate(interpreter, args.model)
    except ValueError as error:
        print(f"runnable no: {error}")
        return 1
    if args.no_xnnpack:
        print("XNNPACK  off")
    elif ops is not None:
        delegated = (model_ops(interpreter) or [])[len(ops):].count("DELEGATE")
        state = f"took {delegated} partition(s)" if delegated else "took no ops"
        print(f"XNNPACK  {state}")
    return 0


def _format_values(array: np.ndarray, count: int = 8) -> str:
    flat = array.reshape(-1)
    shown = np.array2string(flat[:count], precision=5, separator=", ", suppress_small=False)
    return shown + (" ..." if flat.size > count else "")


def _command_run(args) -> int:
    interpreter = load(args.model, args.threads, not args.no_xnnpack)
    if args.input:
        inputs = [np.load(path, allow_pickle=False) for path in args.input]
        source = ", ".join(args.input)
    else:
        inputs = random_inputs(interpreter, args.seed)
        source = f"random (seed {args.seed})"
    start = time.perf_counter()
    outputs = run(interpreter, inputs)
    elapsed = (time.perf_counter() - start) * 1e3
    print(f"model    {args.model}")
    print(f"input    {source}")
    print(f"time     {_ms(elapsed)} ms (one first run: includes warm-up, not a benchmark)")
    for position, (detail, output) in enumerate(zip(interpreter.get_output_details(), outputs)):
        print(
            f"output [{position}] {detail['name']}  shape {_format_shape(output.shape)}  "
            f"{output.dtype.name}"
        )
        print(f"  values       {_format_values(output)}")
        if _is_quantized(detail):
            print(f"  dequantized  {_format_values(dequantize(output, detail))}")
        if output.ndim >= 1 and output.shape[-1] > 1:
            print(f"  argmax       {np.argmax(output, axis=-1).reshape(-1).tolist()}")
    return 0


def _ms(value: float) -> str:
    # Tiny models take microseconds: below 1 ms show down to the nanosecond.
    return f"{value:.3f}" if value >= 1 else f"{value:.6f}"


def _format_stats(stats: dict) -> str:
    return (
        f"median {_ms(stats['median_ms'])} ms  p10 {_ms(stats['p10_ms'])}  "
        f"p90 {_ms(stats['p90_ms'])}  mean {_ms(stats['mean_ms'])}  std {_ms(stats['std_ms'])}"
    )


def _check_json_path(path) -> None:
    # Fail before a long benchmark, not after it.
    if path is None:
        return
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise ValueError(f"Cannot write '{path}': folder '{directory}' does not exist.")


def _model_record(path: str) -> dict:
    return {"model": os.path.abspath(path), "size_bytes": os.path.getsize(path)}


def _command_bench(args) -> int:
    _check_json_path(args.json)
    interpreter = load(args.model, args.threads, not args.no_xnnpack)
    result = benchmark(
        interpreter, args.runs, args.warmup, random_inputs(interpreter, args.seed)
    )
    print(f"model    {args.model}  {os.path.getsize(args.model):,} bytes")
    print(f"setup    {args.threads} thread(s), XNNPACK {'off' if args.no_xnnpack else 'on'}, "
          f"{args.runs} timed runs after {args.warmup} warm-up")
    print(f"latency  {_format_stats(result)}")
    if args.json:
        write_json(
            {
                "command": "bench",
                **_model_record(args.model),
                "threads": args.threads,
                "xnnpack": not args.no_xnnpack,
                **result,
                "runtime": _runtime_record(),
                "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            },
            args.json,
        )
        print(f"wrote    {args.json}")
    return 0


def _command_compare(args) -> int:
    xnnpack = not args.no_xnnpack
    _check_json_path(args.json)
    original = load(args.original, args.threads, xnnpack)
    pruned = load(args.pruned, args.threads, xnnpack)
    result = compare(
        original, pruned, args.runs, args.warmup, args.block,
        args.flops_original, args.flops_pruned,
    )
    print(f"setup     {args.threads} thread(s), XNNPACK {'on' if xnnpack else 'off'}, "
          f"{args.runs} timed runs each after {args.warmup} warm-up, "
          f"interleaved in blocks of {args.block}")
    for name, path in (("original", args.original), ("pruned", args.pruned)):
        print(f"{name:<9} {path}  {os.path.getsize(path):,} bytes")
        print(f"          {_format_stats(result[name])}")
    print(f"latency ratio pruned/original  {result['latency_ratio']:.3f}  (medians)")
    if "flops_ratio" in result:
        print(f"FLOPs ratio pruned/original    {result['flops_ratio']:.3f}")
    if args.json:
        record = {
            "command": "compare",
            "threads": args.threads,
            "xnnpack": xnnpack,
            "runs": args.runs,
            "warmup": args.warmup,
            **result,
            "runtime": _runtime_record(),
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        record["original"] = {**_model_record(args.original), **result["original"]}
        record["pruned"] = {**_model_record(args.pruned), **result["pruned"]}
        write_json(record, args.json)
        print(f"wrote     {args.json}")
    return 0


def _command_probe(args) -> int:
    _check_json_path(args.json)
    record = probe(args.directory, args.threads, not args.no_xnnpack, args.runs, args.warmup)
    print(f"probes   {len(record['measurements'])} files in {args.directory}, "
          f"{args.threads} thread(s), XNNPACK {'off' if args.no_xnnpack else 'on'}, "
          f"{record['precision']}")
    print(f"model    median {_ms(record['model_ms'])} ms")
    if args.json:
        write_json(record, args.json)
        print(f"wrote    {args.json}")
    return 0


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a non-negative integer, got {text}")
    return value


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="litert_bench",
        description="Inspect, run and time .tflite models with ai-edge-litert and NumPy only.",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    runtime = argparse.ArgumentParser(add_help=False)
    runtime.add_argument("--threads", type=_positive_int, default=1,
                         help="CPU threads for the kernels (default: 1)")
    runtime.add_argument("--no-xnnpack", action="store_true",
                         help="disable the default XNNPACK delegate (builtin CPU kernels only)")

    timing = argparse.ArgumentParser(add_help=False)
    timing.add_argument("--runs", type=_positive_int, default=100,
                        help="timed runs per model (default: 100)")
    timing.add_argument("--warmup", type=_non_negative_int, default=10,
                        help="untimed runs first (default: 10)")
    timing.add_argument("--seed", type=int, default=0, help="seed of the random input (default: 0)")
    timing.add_argument("--json", metavar="PATH", help="also write the result as JSON")

    info = commands.add_parser("info", parents=[runtime],
                               help="input/output tensors, quantization, ops, file size")
    info.add_argument("model", help=".tflite file")
    info.set_defaults(handler=_command_info)

    run_parser = commands.add_parser("run", parents=[runtime], help="run once, print the outputs")
    run_parser.add_argument("model", help=".tflite file")
    run_parser.add_argument("--input", action="append", metavar="FILE.npy",
                            help="input array; repeat once per model input, in order "
                                 "(default: random input)")
    run_parser.add_argument("--seed", type=int, default=0, help="seed of the random input (default: 0)")
    run_parser.set_defaults(handler=_command_run)

    bench = commands.add_parser("bench", parents=[runtime, timing],
                                help="time invoke() on random input")
    bench.add_argument("model", help=".tflite file")
    bench.set_defaults(handler=_command_bench)

    compare_parser = commands.add_parser(
        "compare", parents=[runtime, timing],
        help="time an original and a pruned model, interleaved, and print the ratio",
    )
    compare_parser.add_argument("original", help="original .tflite file")
    compare_parser.add_argument("pruned", help="pruned .tflite file")
    compare_parser.add_argument("--block", type=_positive_int, default=10,
                                help="runs of one model before switching to the other (default: 10)")
    compare_parser.add_argument("--flops-original", type=float, metavar="N",
                                help="FLOPs of the original model, to print the FLOPs ratio")
    compare_parser.add_argument("--flops-pruned", type=float, metavar="M",
                                help="FLOPs of the pruned model")
    compare_parser.set_defaults(handler=_command_compare)

    probe_parser = commands.add_parser(
        "probe", parents=[runtime, timing],
        help="time singe_keras latency probes and write the latency table (--json)",
    )
    probe_parser.add_argument("directory", help="folder written by singe_keras.latency.write_probes")
    probe_parser.set_defaults(handler=_command_probe, runs=50, warmup=5)
    return parser


def main(argv=None) -> int:
    """Runs the command line; returns the exit status.

    Args:
        argv: Arguments without the program name, or `None` for `sys.argv[1:]`.
            Defaults to `None`.

    Returns:
        `0` on success, `1` when the model cannot be read or run (the reason
        goes to stderr). Bad arguments exit with status `2` through argparse.

    Example:

    >>> main(["bench", "model.tflite", "--runs", "50"])
    """
    parser = _build_parser()
    args = parser.parse_args(argv)
    if args.command == "compare" and (args.flops_original is None) != (args.flops_pruned is None):
        parser.error("--flops-original and --flops-pruned go together")
    try:
        return args.handler(args)
    except (FileNotFoundError, ValueError, TypeError, ImportError, RuntimeError, OSError) as error:
        print(f"litert_bench: error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
