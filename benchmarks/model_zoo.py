"""Models a Keras user brings: how much of their FLOPs singe_keras can prune.

For each model (random weights with random normalization statistics, small
inputs): keras.applications, and keras-hub backbones built from constructor
arguments under a small classifier head (tests/zoo.py), it traces the model and
reports the share of its FLOPs in layer calls with a prunable channel
(`CouplingGraph.prunable_flops_share`), prunes it as a new user would,
`prune(model, None, target_flops=0.7, criterion="random", rounds=1, finetune_steps=0)`,
and reports the FLOPs kept and how far the rebuilt model of a random plan is
from the gated model (relative; large only through layers the graph names
inexact, e.g. ConvNeXt's LayerNormalization).

    PYTHONPATH=. python benchmarks/model_zoo.py
    PYTHONPATH=. python benchmarks/model_zoo.py --models MobileNetV3Small hub:mobilenet_v3
"""

import argparse
import os
import sys
import time
import warnings

import keras
import numpy as np

import results_io
import singe_keras

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
import zoo  # noqa: E402  (the test zoo's model factories)

APPLICATIONS = {
    "MobileNetV3Small": 64, "MobileNetV3Large": 64, "ConvNeXtTiny": 64,
    "EfficientNetB0": 64, "EfficientNetV2B0": 64, "InceptionResNetV2": 75,
    "DenseNet121": 64, "NASNetMobile": 64, "MobileNetV2": 64, "ResNet50V2": 64,
}
MODELS = list(APPLICATIONS) + [f"hub:{name}" for name in zoo.KERAS_HUB]


def build(name):
    if name.startswith("hub:"):
        return zoo.keras_hub_classifier(name[len("hub:"):])
    size = APPLICATIONS[name]
    keras.utils.set_random_seed(0)
    model = getattr(keras.applications, name)(
        weights=None, input_shape=(size, size, 3), classes=10
    )
    return zoo.randomize_statistics(model)


def measure(name):
    model = build(name)
    started = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        graph = singe_keras.trace(model)
    traced = time.perf_counter() - started
    summary = graph.summary()
    costs = singe_keras.count_costs(graph)
    started = time.perf_counter()
    pruned = singe_keras.prune(
        model, None, target_flops=0.7, criterion="random", rounds=1,
        finetune_steps=0, seed=0, verbose=0,
    )
    pruning = time.perf_counter() - started
    plan = zoo.random_plan(graph)
    gated = singe_keras.GatedModel(graph)
    gated.set_plan(plan)
    x = np.random.default_rng(1).normal(size=(2,) + model.input_shape[1:]).astype("float32")
    expected = np.asarray(gated(x))
    actual = np.asarray(singe_keras.rebuild(graph, plan)(x))
    return {
        "input_size": model.input_shape[1],
        "flops": costs.flops,
        "prunable_flops_share": graph.prunable_flops_share(),
        "groups": len(graph.groups),
        "units": graph.num_units,
        "barrier_warnings": [str(w.message) for w in caught],
        "inexact_layers": len(graph.inexact_layers),
        "uncosted_layers": len(costs.uncosted),
        "pruned_flops_ratio": singe_keras.count_flops(pruned) / costs.flops,
        "rebuilt_vs_gated_relative_error": float(
            np.abs(actual - expected).max() / np.abs(expected).max()
        ),
        "trace_seconds": traced,
        "prune_seconds": pruning,
        "summary": summary,
    }


def table(results):
    lines = [
        "| model | input | FLOPs | prunable share | groups | barrier causes | inexact layers "
        "| FLOPs kept after prune(0.7) | rebuilt vs gated (rel.) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        lines.append(
            f"| {name} | {r['input_size']} | {r['flops']:,} | "
            f"{100 * r['prunable_flops_share']:.1f}% | {r['groups']} | "
            f"{len(r['barrier_warnings'])} | {r['inexact_layers']} | "
            f"{r['pruned_flops_ratio']:.3f} | {r['rebuilt_vs_gated_relative_error']:.1e} |"
        )
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="*", default=MODELS)
    parser.add_argument("--output", default="benchmarks/results/model_zoo.json")
    args = parser.parse_args()
    results = {}
    for name in args.models:
        results[name] = measure(name)
        print(name, f"{100 * results[name]['prunable_flops_share']:.1f}%", flush=True)
    results_io.save({"models": results}, args.output)
    markdown = args.output.rsplit(".", 1)[0] + ".md"
    with open(markdown, "w") as f:
        f.write(
            "# Prunable FLOPs of models a Keras user brings\n\n"
            f"Command: `PYTHONPATH=. {results_io.environment()['command']}` (random "
            "weights; prunable share = FLOPs of layer calls with a prunable input or "
            "output channel; `hub:` models are keras-hub backbones from tests/zoo.py "
            "under a small head).\n\n" + table(results) + "\n\n## Barriers\n\n"
        )
        for name, r in results.items():
            for message in r["barrier_warnings"]:
                f.write(f"- {name}: {message}\n")
    print(table(results))


if __name__ == "__main__":
    main()
