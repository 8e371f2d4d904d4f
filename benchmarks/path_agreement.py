"""How closely the fast `group` path ranks units like the exact `unit` path.

docs/method.md leaves this to measurement: the `group` path (K passes per coupling
group) is the default estimator, the `unit` path (K passes per unit) the
reference. This scores the pretrained CIFAR-10 ResNet-20 of ../shared/models
with both, on the same training images, and reports per group the Spearman
rank correlation and how many of the 25% least relevant units both agree on.

    python benchmarks/path_agreement.py --samples 32 --steps 8
"""

import argparse
import os
import sys
import time

import keras
import numpy as np

import results_io
import singe_keras
from singe_keras import criteria

# The CIFAR-10 loader of the examples (examples/ is a folder of scripts).
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "examples"))
import cifar10_data  # noqa: E402


def ranks(values):
    return np.argsort(np.argsort(values)).astype(float)


def spearman(a, b):
    return float(np.corrcoef(ranks(a), ranks(b))[0, 1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=32)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--output", default="benchmarks/results/path_agreement.json")
    parser.add_argument("--data", default=cifar10_data.SHARED_DATA,
                        help="CIFAR-10 .npz (default: %(default)s)")
    parser.add_argument("--model", default=cifar10_data.PRETRAINED,
                        help="pretrained ResNet-20 (default: %(default)s)")
    args = parser.parse_args()

    model = keras.models.load_model(args.model)
    model.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    data = cifar10_data.load_split(args.data, "train", args.samples)
    gated = singe_keras.GatedModel(singe_keras.trace(model))
    scores, seconds = {}, {}
    for path in ("group", "unit"):
        start = time.perf_counter()
        criterion = criteria.IntegratedGradients(
            steps=args.steps, path=path, samples=args.samples
        )
        scores[path] = singe_keras.score(gated, data, criterion)
        seconds[path] = time.perf_counter() - start
        print(f"{path} path: {seconds[path]:.1f} s", flush=True)
    groups = {}
    for group in gated.graph.groups:
        a, b = scores["group"][group.name], scores["unit"][group.name]
        quarter = max(1, group.size // 4)
        overlap = len(set(np.argsort(a)[:quarter]) & set(np.argsort(b)[:quarter]))
        groups[group.name] = {
            "units": group.size,
            "spearman": spearman(a, b),
            "bottom_quarter_overlap": overlap / quarter,
        }
    # Across groups too: the global ranking is what allocation uses.
    overall = spearman(scores["group"].flat(), scores["unit"].flat())
    results = {
        "model": "resnet20_cifar10 (../shared/models)",
        "scoring_samples": args.samples,
        "steps": args.steps,
        "seconds": seconds,
        "spearman_all_units": overall,
        "groups": groups,
    }
    results_io.save(results, args.output)
    for name, row in groups.items():
        print(f"{name:24s} {row['units']:3d} units  spearman {row['spearman']:.3f}  "
              f"bottom-25% overlap {row['bottom_quarter_overlap']:.2f}")
    print(f"all units: spearman {overall:.3f}")


if __name__ == "__main__":
    main()
