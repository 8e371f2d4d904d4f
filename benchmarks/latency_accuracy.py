"""Latency-targeted vs FLOPs-targeted pruning at the same latency: accuracy.

The pretrained CIFAR-10 ResNet-20 of ../shared (6 epochs), SInGE scored on
64 training images (a different draw per seed), float32 LiteRT latency tables
of this host (batch 1, 1 thread, XNNPACK; built once and saved next to the
results, so a resumed run uses the same tables). Per seed:

1. latency arm: `prune(target_latency=T)` (its default `"latency"`
   normalization);
2. FLOPs arm: `prune(target_flops=f)` (the criterion's default
   normalization), where f is the largest FLOPs target whose one-shot plan,
   from the same round-1 scores, has the latency arm's predicted latency
   (bisection on the latency model): the two arms aim at the same latency;
3. both arms once without fine-tuning (one round, BatchNorm statistics
   re-estimated, `prune`'s default) and once with the standard fine-tuning
   budget of the CIFAR-10 benchmark (4 rounds x 100 steps + 1 final epoch,
   batch 64, the model's compiled optimizer);
4. every pruned model is timed against the original (`litert_bench.compare`:
   interleaved blocks, medians) and tested on all 10,000 test images.

The training arrays are permuted per seed; the first 64 rows are the seed's
scoring draw (scoring reads a dataset from its start). Results are saved
after every run; a rerun skips finished runs.

    python benchmarks/latency_accuracy.py \
        --output benchmarks/results/latency_accuracy_resnet20.json
"""

import argparse
import os
import sys
import tempfile
import time

import keras
import numpy as np

import singe_keras
from singe_keras import allocation, criteria, latency

from cifar10 import Results, accuracy  # the CIFAR-10 benchmark's results file and top-1
import latency_target  # its interleaved timing of a pruned model against the original

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "examples"))
import cifar10_data  # noqa: E402

SCORING_SAMPLES = 64
BUDGETS = {
    "no_finetuning": {"rounds": 1, "finetune_steps": 0, "final_epochs": 0},
    "standard_finetuning": {"rounds": 4, "finetune_steps": 100, "final_epochs": 1},
}


def latency_model_of(baseline, path):
    """The float32 tables of this host, built once and then read from `path`."""
    if os.path.exists(path):
        return latency.LatencyModel.load(path)
    with tempfile.TemporaryDirectory() as cache:
        started = time.perf_counter()
        model = latency.build(baseline, cache_dir=cache, verbose=1)
    print(f"Latency tables built in {time.perf_counter() - started:.0f}s", flush=True)
    model.save(path)
    return model


def flops_target_at(baseline, data, seed, latency_model, target_ms):
    """The largest FLOPs fraction whose one-shot singe plan is predicted at `target_ms`.

    The scores are `prune(seed=seed)`'s round-1 scores: the same data and
    the same random seed (`seed + 1`).
    """
    graph = singe_keras.trace(baseline)
    criterion = criteria.IntegratedGradients(samples=SCORING_SAMPLES)
    keras.utils.set_random_seed(seed + 1)
    relevance = singe_keras.score(graph, data, criterion).flat()
    full_flops = singe_keras.count_flops(graph)

    def predicted_ms(fraction):
        plan = allocation.allocate(graph, relevance, fraction * full_flops,
                                   normalization=criterion.normalization)
        return latency_model.predict(graph, plan)

    low, high = 0.0, 1.0  # predicted_ms(high) > target_ms >= predicted_ms(low)
    for _ in range(30):
        middle = (low + high) / 2
        if predicted_ms(middle) <= target_ms:
            low = middle
        else:
            high = middle
    return low, predicted_ms(low)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", type=float, default=0.5,
                        help="the latency arm's target_latency (a fraction)")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--budgets", nargs="+", default=list(BUDGETS), choices=list(BUDGETS))
    parser.add_argument("--runs", type=int, default=500,
                        help="timed runs per model for the pruned/original ratio")
    parser.add_argument("--output",
                        default="benchmarks/results/latency_accuracy_resnet20.json")
    parser.add_argument("--data", default=cifar10_data.SHARED_DATA)
    parser.add_argument("--model", default=cifar10_data.PRETRAINED)
    args = parser.parse_args()
    results = Results(args.output)
    results.put("settings", "arguments", vars(args))
    train = cifar10_data.load_split(args.data, "train")
    test = cifar10_data.load_split(args.data, "test")
    baseline = keras.models.load_model(args.model)
    if results.get("baseline", "test_accuracy") is None:
        results.put("baseline", "test_accuracy", accuracy(baseline, *test))
    latency_model = latency_model_of(
        baseline, os.path.splitext(args.output)[0] + "_tables.json")
    target_ms = args.target * latency_model.predict(singe_keras.trace(baseline))
    timer = latency.LiteRTTimer()
    with tempfile.TemporaryDirectory() as directory:
        for budget in args.budgets:
            for seed in args.seeds:
                order = np.random.default_rng(seed).permutation(len(train[0]))
                data = (train[0][order], train[1][order])
                key = f"{budget}/seed{seed}"
                if results.get("flops_target", f"seed{seed}") is None:
                    # The latency arm's one-shot plan sets the latency both arms aim at.
                    fraction, predicted = flops_target_at(
                        baseline, (data[0][:SCORING_SAMPLES], data[1][:SCORING_SAMPLES]),
                        seed, latency_model, target_ms)
                    results.put("flops_target", f"seed{seed}", {
                        "target_flops": fraction, "predicted_ms": predicted,
                        "latency_arm_target_ms": target_ms})
                target_flops = results.get("flops_target", f"seed{seed}")["target_flops"]
                arms = {"latency": {"target_latency": args.target,
                                    "latency_model": latency_model},
                        "flops": {"target_flops": target_flops}}
                for arm, target in arms.items():
                    if results.get(arm, key) is not None:
                        continue
                    started = time.perf_counter()
                    pruned, report = singe_keras.prune(
                        baseline, data, **target, **BUDGETS[budget],
                        criterion=criteria.IntegratedGradients(samples=SCORING_SAMPLES),
                        batch_size=64, seed=seed, return_report=True, verbose=2,
                    )
                    seconds = time.perf_counter() - started
                    timed = latency_target._compare(timer, baseline, pruned, directory,
                                                    args.runs)
                    results.put(arm, key, {
                        **{k: v for k, v in target.items() if k != "latency_model"},
                        "test_accuracy": accuracy(pruned, *test),
                        "flops_ratio": (singe_keras.count_flops(pruned)
                                        / singe_keras.count_flops(baseline)),
                        "predicted_ms": latency_model.predict(singe_keras.trace(pruned)),
                        "measured": timed,
                        "filters": [layer.filters for layer in pruned.layers
                                    if isinstance(layer, keras.layers.Conv2D)],
                        "seconds": seconds,
                        "load_average": os.getloadavg(),
                    })


if __name__ == "__main__":
    main()
