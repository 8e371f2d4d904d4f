"""Latency-targeted vs FLOPs-targeted pruning at the same latency: accuracy.

The pretrained CIFAR-10 ResNet-20 of ../shared (6 epochs), SInGE scored on
64 training images (a different draw per seed), float32 LiteRT latency tables
of this host (batch 1, 1 thread, XNNPACK; built once and saved next to the
results, so a resumed run uses the same tables). Per seed:

1. latency arm: `prune(target_latency=T)` (its default `"latency"`
   normalization), one round without fine-tuning (BatchNorm statistics
   re-estimated, `prune`'s default); its measured latency ratio is the
   latency both arms are compared at;
2. FLOPs arm: `prune(target_flops=f)` (the criterion's default
   normalization), where f is the FLOPs target whose one-shot plan, from the
   same round-1 scores, measures at the latency arm's ratio (bisection on
   measured ratios: the predicted latency of off-grid channel counts is too
   high, see benchmarks/README.md);
3. both arms without fine-tuning and with the standard fine-tuning budget
   of the CIFAR-10 benchmark (4 rounds x 100 steps + 1 final epoch, batch 64,
   the model's compiled optimizer), f fixed per seed;
4. every pruned model is timed against the original in a fresh process
   (`export/litert_bench.py compare`: 500 interleaved runs each, medians; no
   TensorFlow thread or tf.data worker of this process competes) and tested
   on all 10,000 test images.

The training arrays are permuted per seed; the first 64 rows are the seed's
scoring draw (scoring reads a dataset from its start). Results are saved
after every run; a rerun skips finished runs.

    python benchmarks/latency_accuracy.py \
        --output benchmarks/results/latency_accuracy_resnet20.json
"""

import argparse
import gc
import json
import os
import subprocess
import sys
import tempfile
import time

import keras
import numpy as np

import singe_keras
from singe_keras import allocation, criteria, latency

from cifar10 import Results, accuracy  # the CIFAR-10 benchmark's results file and top-1

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "examples"))
import cifar10_data  # noqa: E402

LITERT_BENCH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "export",
                            "litert_bench.py")
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


class Timer:
    """Times Keras models against the original .tflite file in a fresh process.

    A comparison whose original timing is more than 15% off `original_ms`
    (the latency model's calibrated value) is repeated, up to 3 times: the
    machine was busy.
    """

    def __init__(self, baseline, directory, original_ms):
        self.converter = latency.LiteRTTimer()
        self.directory, self.original_ms = directory, original_ms
        self.original = self._write(baseline, "original")

    def _write(self, model, name):
        path = os.path.join(self.directory, f"{name}.tflite")
        with open(path, "wb") as f:
            f.write(self.converter.convert(model))
        return path

    def __call__(self, model, runs):
        pruned = self._write(model, "pruned")
        output = os.path.join(self.directory, "compare.json")
        for attempt in range(1, 4):
            gc.collect()
            subprocess.run(
                [sys.executable, LITERT_BENCH, "compare", self.original, pruned,
                 "--runs", str(runs), "--warmup", "100", "--json", output],
                check=True, capture_output=True)
            with open(output) as f:
                record = json.load(f)
            if abs(record["original"]["median_ms"] / self.original_ms - 1) <= 0.15:
                break
            time.sleep(5)
        return {"original_ms": record["original"]["median_ms"],
                "pruned_ms": record["pruned"]["median_ms"], "ratio": record["latency_ratio"],
                "attempts": attempt}


def flops_target_at(baseline, data, seed, timer, ratio, runs):
    """The FLOPs fraction whose one-shot singe plan measures at `ratio` of the latency.

    The scores are `prune(seed=seed)`'s round-1 scores: the same data and
    the same random seed (`seed + 1`). Bisection on measured ratios.
    """
    graph = singe_keras.trace(baseline)
    criterion = criteria.IntegratedGradients(samples=SCORING_SAMPLES)
    keras.utils.set_random_seed(seed + 1)
    relevance = singe_keras.score(graph, data, criterion).flat()
    full_flops = singe_keras.count_flops(graph)

    def measured(fraction):
        plan = allocation.allocate(graph, relevance, fraction * full_flops,
                                   normalization=criterion.normalization)
        return timer(singe_keras.rebuild(graph, plan), runs)["ratio"]

    low, high = 0.0, 1.0  # measured(high) > ratio >= measured(low)
    for _ in range(8):
        middle = (low + high) / 2
        if measured(middle) <= ratio:
            low = middle
        else:
            high = middle
    return low


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", type=float, default=0.5,
                        help="the latency arm's target_latency (a fraction)")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--budgets", nargs="+", default=list(BUDGETS), choices=list(BUDGETS))
    parser.add_argument("--runs", type=int, default=500,
                        help="timed runs per model for the pruned/original ratio")
    parser.add_argument("--search-runs", type=int, default=300,
                        help="timed runs per model in the FLOPs target's bisection")
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
    criterion = criteria.IntegratedGradients(samples=SCORING_SAMPLES)
    with tempfile.TemporaryDirectory() as directory:
        timer = Timer(baseline, directory, latency_model.predict(singe_keras.trace(baseline)))

        def run(arm, budget, seed, data, target):
            key = f"{budget}/seed{seed}"
            if results.get(arm, key) is None:
                started = time.perf_counter()
                pruned = singe_keras.prune(
                    baseline, data, **target, **BUDGETS[budget], criterion=criterion,
                    batch_size=64, seed=seed, verbose=2)
                seconds = time.perf_counter() - started
                results.put(arm, key, {
                    **{k: v for k, v in target.items() if k != "latency_model"},
                    "test_accuracy": accuracy(pruned, *test),
                    "flops_ratio": (singe_keras.count_flops(pruned)
                                    / singe_keras.count_flops(baseline)),
                    "predicted_ms": latency_model.predict(singe_keras.trace(pruned)),
                    "measured": timer(pruned, args.runs),
                    "filters": [layer.filters for layer in pruned.layers
                                if isinstance(layer, keras.layers.Conv2D)],
                    "seconds": seconds,
                    "load_average": os.getloadavg(),
                })
            return results.get(arm, key)

        for budget in ("no_finetuning", "standard_finetuning"):
            for seed in args.seeds:
                order = np.random.default_rng(seed).permutation(len(train[0]))
                data = (train[0][order], train[1][order])
                # The latency arm's one-shot model sets the latency both arms are at.
                reference = run("latency", "no_finetuning", seed, data, {
                    "target_latency": args.target, "latency_model": latency_model})
                if results.get("flops_target", f"seed{seed}") is None:
                    ratio = reference["measured"]["ratio"]
                    results.put("flops_target", f"seed{seed}", {
                        "latency_ratio": ratio,
                        "target_flops": flops_target_at(
                            baseline, (data[0][:SCORING_SAMPLES], data[1][:SCORING_SAMPLES]),
                            seed, timer, ratio, args.search_runs)})
                if budget not in args.budgets:
                    continue
                target_flops = results.get("flops_target", f"seed{seed}")["target_flops"]
                run("latency", budget, seed, data, {
                    "target_latency": args.target, "latency_model": latency_model})
                run("flops", budget, seed, data, {"target_flops": target_flops})


if __name__ == "__main__":
    main()
