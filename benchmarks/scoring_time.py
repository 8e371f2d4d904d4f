"""Scoring time of each data criterion, as a ratio to Taylor's, in one process.

The criteria of criteria_grid.py score the pretrained ResNet-20 (or the VGG
net) on the same 64 training images, interleaved over `--repeats` rounds
(after one warm-up scoring each, which traces the step); the medians and
their ratio to Taylor's median are written to
benchmarks/results/scoring_time_<model>.json.

    python benchmarks/scoring_time.py --model resnet20
"""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "examples"))
import cifar10_data  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet20")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--data", default=cifar10_data.SHARED_DATA)
    args = parser.parse_args()

    import keras
    import numpy as np

    import results_io
    import singe_keras
    from criteria_grid import CRITERIA, MODELS, SCORING_SAMPLES
    from singe_keras import criteria

    folder, name = MODELS[args.model]
    path = (os.path.join(cifar10_data.SHARED, folder, name) if folder
            else os.path.join(os.path.dirname(__file__), "results", name))
    x, y = cifar10_data.load_split(args.data, "train", SCORING_SAMPLES)
    gated = singe_keras.GatedModel(singe_keras.trace(keras.models.load_model(path)))
    names = ["taylor", "fisher", "singe_group", "singe_random", "singe_random_square"]
    chosen = {n: criteria.get(CRITERIA[n](0)) for n in names}
    seconds = {n: [] for n in names}
    for repeat in range(args.repeats + 1):
        for n, criterion in chosen.items():
            started = time.perf_counter()
            singe_keras.score(gated, (x, y), criterion)
            if repeat:  # the first scoring traces the step
                seconds[n].append(time.perf_counter() - started)
    medians = {n: float(np.median(s)) for n, s in seconds.items()}
    results = {
        "model": name,
        "samples": SCORING_SAMPLES,
        "median_seconds": medians,
        "ratio_to_taylor": {n: medians[n] / medians["taylor"] for n in names},
        "seconds": seconds,
    }
    output = os.path.join(os.path.dirname(__file__), "results", f"scoring_time_{args.model}.json")
    results_io.save(results, output)
    print(results["ratio_to_taylor"])


if __name__ == "__main__":
    main()
