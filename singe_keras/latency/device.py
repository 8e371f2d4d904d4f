"""Latency tables timed on a device: probe files out, measurements in."""

import json
import os

from singe_keras import graph as graph_lib
from singe_keras.files import write_atomically
from singe_keras.latency.model import (
    FORMAT,
    LatencyModel,
    LayerTable,
    _check_format,
    channel_counts,
    table_key,
    timed_layers,
)
from singe_keras.latency.tables import (
    _THINNED,
    _calibration,
    _layer_sum,
    _probe_points,
    _thinned_plan,
    probe,
)
from singe_keras.latency.timer import PRECISIONS, LiteRTTimer, _check_choice
from singe_keras.surgery import rebuild


def write_probes(model, directory, ignored_layers=None, *, precision="float32"):
    """Writes the probe .tflite files of a model, to time them on a device.

    The folder gets one .tflite file per probe, the whole model
    (`model.tflite`) and the two thinned models that calibrate the scale
    (see the module docstring), and `manifest.json`; copy it to the device and run
    `python litert_bench.py probe DIR --threads N --json table.json` there
    (export/README.md), then read the result with `from_measurements`.
    Probes are the coarse grid only (refinement needs timings).

    Args:
        model: the model to prune.
        directory: an existing folder for the files.
        ignored_layers: as in `prune`. Defaults to `None`.
        precision: `"float32"` or `"int8"`. Defaults to `"float32"`.

    Returns:
        The path of the manifest.

    Raises:
        ValueError: for a bad `precision` or a missing folder.

    Example:

    ```python
    singe_keras.latency.write_probes(model, "probes", precision="int8")
    ```
    """
    _check_choice("precision", precision, PRECISIONS)
    if not os.path.isdir(directory):
        raise ValueError(f"`directory` must be an existing folder. Received: {directory!r}")
    converter = LiteRTTimer(precision=precision)
    graph = graph_lib.trace(model, ignored_layers)
    runtime = {"precision": precision}
    entries, layers, written = [], {}, set()
    for node, description in timed_layers(graph):
        key = table_key(description, runtime)
        layers[node.path] = {"key": key, "full": description["full"],
                             "tied": description["tied"]}
        if key in written:
            continue
        written.add(key)
        for inputs, outputs in _probe_points(description):
            name = f"{key}_{inputs}_{outputs}.tflite"
            write_atomically(os.path.join(directory, name),
                             converter.convert(probe(node, inputs, outputs)))
            entries.append({"file": name, "table": key, "channels": [inputs, outputs]})
    write_atomically(os.path.join(directory, "model.tflite"), converter.convert(model))
    thinned = []
    for fraction in _THINNED:
        plan = _thinned_plan(graph, fraction)
        name = f"model_keep{fraction}.tflite"
        write_atomically(os.path.join(directory, name),
                         converter.convert(rebuild(graph, plan)))
        thinned.append({"file": name, "channels": [
            [path, *count] for path, count in channel_counts(graph, layers, plan)]})
    manifest = {"format": FORMAT, "precision": precision, "model": "model.tflite",
                "thinned": thinned, "layers": layers, "probes": entries}
    path = os.path.join(directory, "manifest.json")
    write_atomically(path, json.dumps(manifest, indent=1).encode())
    return path


def from_measurements(path):
    """A `LatencyModel` from the JSON of `litert_bench.py probe` (a device's timings).

    Args:
        path: the JSON file the toolkit wrote.

    Returns:
        A `LatencyModel` without a timer (`measure` is for the device).

    Raises:
        ValueError: if the file is not such a table.

    Example:

    ```python
    latency_model = singe_keras.latency.from_measurements("phone_table.json")
    pruned = singe_keras.prune(model, data, target_latency=0.5,
                               latency_model=latency_model)
    ```
    """
    with open(path) as f:
        data = json.load(f)
    _check_format(data)
    points = {}
    for entry in data["measurements"]:
        points.setdefault(entry["table"], {})[tuple(entry["channels"])] = entry["median_ms"]
    tables, layers = {}, {}
    for path_name, layer in data["layers"].items():
        key = layer["key"]
        layers[path_name] = key
        if key not in tables:
            tables[key] = LayerTable(key, layer["full"], layer["tied"], points.get(key, {}))
    whole = [(data["model_ms"], [(path, tables[key].full) for path, key in layers.items()])]
    # Thinned models: timed by toolkits that know them (scale 1 without).
    whole += [(entry["median_ms"], [(path, (a, b)) for path, a, b in entry["channels"]])
              for entry in data.get("thinned", [])]
    constant, scale = _calibration(
        [_layer_sum(tables, layers, counts) for _, counts in whole], [ms for ms, _ in whole])
    runtime = {"runtime": data["runtime"].get("runtime"), "delegate": data["delegate"],
               "threads": data["threads"], "precision": data["precision"],
               "device": data["runtime"].get("machine")}
    return LatencyModel(tables, layers, constant, runtime, scale=scale)
