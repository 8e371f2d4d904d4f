"""Scoring time of gradient criteria, per sample and as a ratio to Taylor's, in one process.

Issue 23's protocol: the model is traced and gated once (timed: "trace and
gate seconds"), each criterion scores it once to trace its step (timed:
"first call seconds", reported separately), then the criteria score it
again, interleaved over `--repeats` rounds, on the same samples. The
per-sample time of a criterion is its best (and its median) round divided
by its number of samples; the ratio to Taylor is taken on the per-sample
times. Models: the pretrained CIFAR-10 ResNet-20 (and the other models of
criteria_grid.py) on training images, or MobileNetV2 / ResNet50 at 224 px
built by `keras.applications` with random weights (`weights=None`, time
only) on random images and labels.

    python benchmarks/scoring_time.py --model resnet20
    python benchmarks/scoring_time.py --model mobilenetv2 --samples 16 --before-samples 8
    python benchmarks/scoring_time.py --model resnet50 --samples 16 --before-samples 2

Writes benchmarks/results/scoring_time_<model>.json (or `--output`).
"""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "examples"))
import cifar10_data  # noqa: E402

APPLICATIONS = {"mobilenetv2": "MobileNetV2", "resnet50": "ResNet50"}
#: The default `singe` before issue 23: per-group halves, K = 4, square.
BEFORE = {"class_name": "singe", "config": {"path": "random", "block_fraction": 0.5,
                                            "steps": 4, "reduction": "square"}}


def build(name, samples, data_path):
    """`(model, x, y)`: a compiled model and `samples` scoring examples."""
    import keras
    import numpy as np

    if name in APPLICATIONS:
        model = getattr(keras.applications, APPLICATIONS[name])(
            weights=None, input_shape=(224, 224, 3), classes=1000)
        model.compile(loss=keras.losses.SparseCategoricalCrossentropy())
        rng = np.random.default_rng(0)
        x = rng.uniform(-1, 1, (samples, 224, 224, 3)).astype("float32")
        return model, x, rng.integers(0, 1000, samples)
    from criteria_grid import MODELS

    folder, file = MODELS[name]
    path = (os.path.join(cifar10_data.SHARED, folder, file) if folder
            else os.path.join(os.path.dirname(__file__), "results", file))
    x, y = cifar10_data.load_split(data_path, "train", samples)
    return keras.models.load_model(path), x, y


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet20")
    parser.add_argument("--samples", type=int, default=64,
                        help="samples of Taylor and of the new criteria")
    parser.add_argument("--before-samples", type=int, default=None,
                        help="samples of the pre-issue-23 default (default: --samples; "
                        "0 leaves it out)")
    parser.add_argument("--criteria", default="taylor,singe",
                        help="names of criteria_grid.CRITERIA, or 'singe' (the default)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--data", default=cifar10_data.SHARED_DATA)
    parser.add_argument("--output", default=None)
    args = parser.parse_args()

    import numpy as np

    import results_io
    import singe_keras
    from criteria_grid import CRITERIA
    from singe_keras import criteria

    before_samples = args.samples if args.before_samples is None else args.before_samples
    model, x, y = build(args.model, max(args.samples, before_samples), args.data)
    started = time.perf_counter()
    gated = singe_keras.GatedModel(singe_keras.trace(model))
    trace_seconds = time.perf_counter() - started

    chosen, samples = {}, {}
    for name in args.criteria.split(","):
        config = "singe" if name == "singe" else CRITERIA[name](0)
        chosen[name] = criteria.get(config)
        samples[name] = args.samples
    if before_samples:
        chosen["singe_before"] = criteria.get(BEFORE)
        samples["singe_before"] = before_samples
    for name, criterion in chosen.items():
        criterion.samples = samples[name]  # on the same (first) samples

    first_call, seconds = {}, {n: [] for n in chosen}
    for repeat in range(args.repeats + 1):
        for name, criterion in chosen.items():
            data = (x[: samples[name]], y[: samples[name]])
            started = time.perf_counter()
            singe_keras.score(gated, data, criterion)
            elapsed = time.perf_counter() - started
            if repeat:
                seconds[name].append(elapsed)
            else:  # the first scoring traces the step
                first_call[name] = elapsed
            print(f"{name}: {elapsed:.3f} s ({samples[name]} samples)", flush=True)
    per_sample = {n: min(s) / samples[n] for n, s in seconds.items()}
    median = {n: float(np.median(s)) / samples[n] for n, s in seconds.items()}
    results = {
        "model": args.model,
        "units": gated.graph.num_units,
        "groups": len(gated.graph.groups),
        "pass_rows": criteria.pass_rows(gated.graph),
        "samples": samples,
        "criteria": {n: criteria.serialize(c) for n, c in chosen.items()},
        "trace_and_gate_seconds": trace_seconds,
        "first_call_seconds": first_call,
        "best_seconds_per_sample": per_sample,
        "median_seconds_per_sample": median,
        "ratio_to_taylor": {n: per_sample[n] / per_sample["taylor"] for n in chosen},
        "median_ratio_to_taylor": {n: median[n] / median["taylor"] for n in chosen},
        "seconds": seconds,
    }
    output = args.output or os.path.join(
        os.path.dirname(__file__), "results", f"scoring_time_{args.model}.json")
    results_io.save(results, output)
    print({n: round(r, 2) for n, r in results["ratio_to_taylor"].items()})


if __name__ == "__main__":
    main()
