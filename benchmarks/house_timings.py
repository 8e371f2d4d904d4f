"""Issue 14's timings: `prune()` of ResNet-20 (scoring vs the rest), `allocate` on ResNet-50, demo `--help`.

Three measurements, each `--repeats` times, medians kept:

- `prune()` of the pretrained ResNet-20 to `target_flops=0.5` in one round
  without fine-tuning (the default criterion, 64 training images), split
  into the round's `scoring_seconds` and the rest of the call;
- one `allocate` on keras.applications ResNet-50 (random weights, 224 x 224
  input, seeded random relevances) to half its FLOPs, normalization "mean";
- `python -m singe_keras.demo --help`, in a subprocess.

The `singe_keras` measured is the one on `PYTHONPATH` (recorded in the
results), so that old and new code can run the same script one after the
other:

    git archive <old commit> singe_keras | tar -x -C /tmp/old
    PYTHONPATH=/tmp/old python benchmarks/house_timings.py --output house_timings_before.json
    PYTHONPATH=. python benchmarks/house_timings.py --output house_timings_after.json
"""

import argparse
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "examples"))
import cifar10_data  # noqa: E402

cifar10_data.quiet_tensorflow()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", required=True, help="file name in benchmarks/results")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--data", default=cifar10_data.SHARED_DATA)
    parser.add_argument("--model", default=cifar10_data.PRETRAINED)
    args = parser.parse_args()

    import keras
    import numpy as np

    import results_io
    import singe_keras
    from singe_keras import allocation

    x, y = cifar10_data.load_split(args.data, "train", 64)
    pretrained = keras.models.load_model(args.model)
    resnet50 = keras.applications.ResNet50(weights=None, input_shape=(224, 224, 3))
    graph50 = singe_keras.trace(resnet50)
    relevance = np.random.default_rng(0).random(graph50.num_units)
    flops50 = singe_keras.count_flops(graph50)
    package = os.path.dirname(os.path.dirname(os.path.abspath(singe_keras.__file__)))

    runs = {"prune_total": [], "prune_scoring": [], "prune_rest": [], "allocate_resnet50": [],
            "demo_help": []}
    for repeat in range(args.repeats):
        started = time.perf_counter()
        _, report = singe_keras.prune(
            pretrained, (x, y), target_flops=0.5, rounds=1, finetune_steps=0, final_epochs=0,
            seed=repeat, verbose=0, return_report=True,
        )
        total = time.perf_counter() - started
        scoring = report.rounds[0]["scoring_seconds"]
        runs["prune_total"].append(total)
        runs["prune_scoring"].append(scoring)
        runs["prune_rest"].append(total - scoring)

        started = time.perf_counter()
        allocation.allocate(graph50, relevance, max_flops=0.5 * flops50, normalization="mean")
        runs["allocate_resnet50"].append(time.perf_counter() - started)

        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "singe_keras.demo", "--help"], check=True,
                       capture_output=True, cwd=package)
        runs["demo_help"].append(time.perf_counter() - started)
        print(repeat, {k: round(v[-1], 2) for k, v in runs.items()}, flush=True)

    results = {
        "singe_keras": package,
        "note": "2 shared cores: other agents' processes ran at the same time",
        "median_seconds": {k: float(np.median(v)) for k, v in runs.items()},
        "seconds": runs,
    }
    results_io.save(results, os.path.join(os.path.dirname(__file__), "results", args.output))
    print(results["median_seconds"])


if __name__ == "__main__":
    main()
