"""Pruning to a latency target: measured latency ratio, table build time, prediction error.

For the pretrained CIFAR-10 ResNet-20 of ../shared/models and a MobileNetV2
(alpha 0.35, 96x96 inputs, random weights), per precision:

1. the latency tables are built in a fresh cache (the time is recorded);
2. the model is pruned with `target_latency=0.5` (one round, no fine-tuning:
   latency does not depend on the weights' values; SInGE scored on 64
   CIFAR-10 images for ResNet-20, `l1` for the random MobileNetV2), and the
   original and pruned .tflite files are timed against each other with the
   device-side toolkit (`litert_bench.compare`: batch 1, 1 thread, XNNPACK,
   interleaved blocks, medians);
3. 20 random plans (every group keeps a random 30-100% of its units, with
   `--plan-step 4` a multiple of 4 as the allocation's plans) are
   rebuilt, timed against the original the same way, and their measured
   latency ratios compared with the latency model's predicted ratios.

    python benchmarks/latency_target.py --output benchmarks/results/latency_target.json
    python benchmarks/latency_target.py --models resnet20 --precisions int8 \
        --output benchmarks/results/latency_target_int8.json
"""

import argparse
import os
import sys
import tempfile
import time

import keras
import numpy as np

import results_io
import singe_keras
from singe_keras import latency

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "export"))
import litert_bench  # noqa: E402  (the device-side toolkit, not a package)

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "examples"))
import cifar10_data  # noqa: E402


def _model(name, args):
    if name == "resnet20":
        return keras.models.load_model(args.model)
    keras.utils.set_random_seed(0)
    return keras.applications.MobileNetV2(input_shape=(96, 96, 3), alpha=0.35, weights=None)


def _compare(timer, original, pruned, directory, runs):
    """Interleaved LiteRT timing of two Keras models (the timer's settings).

    The original is converted once per folder.
    """
    paths = []
    for name, model in (("original", original), ("pruned", pruned)):
        paths.append(os.path.join(directory, f"{name}.tflite"))
        if name == "pruned" or not os.path.exists(paths[-1]):
            with open(paths[-1], "wb") as f:
                f.write(timer.convert(model))
    result = litert_bench.compare(
        *(litert_bench.load(p, threads=timer.threads, xnnpack=timer.delegate == "xnnpack")
          for p in paths),
        runs=runs, warmup=20,
    )
    return {
        "original_ms": result["original"]["median_ms"],
        "pruned_ms": result["pruned"]["median_ms"],
        "ratio": result["latency_ratio"],
    }


def _random_plan(graph, rng, step):
    """Every group keeps a random 30-100% of its units, a multiple of `step` (or all)."""
    keep = {}
    for group in graph.groups:
        count = max(1, int(round(rng.uniform(0.3, 1.0) * group.size)))
        count = min(group.size, -(-count // step) * step)
        keep[group.name] = np.sort(rng.choice(group.size, count, replace=False))
    return singe_keras.Plan(keep, {g.name: g.size for g in graph.groups})


def run(name, precision, args, calibration):
    model = _model(name, args)
    graph = singe_keras.trace(model)
    timer = latency.LiteRTTimer(precision=precision, runs=args.probe_runs)
    with tempfile.TemporaryDirectory() as cache:
        started = time.perf_counter()
        latency_model = latency.build(model, timer=timer, cache_dir=cache, verbose=1)
        build_seconds = time.perf_counter() - started
    probes = sum(len(t.points) for t in latency_model.tables.values())
    print(f"{name} {precision}: tables built in {build_seconds:.0f}s ({probes} probes)",
          flush=True)
    record = {
        "model": name, "precision": precision, "plan_step": args.plan_step,
        "table_build_seconds": build_seconds, "probes": probes,
        "tables": len(latency_model.tables), "timed_layers": len(latency_model.layers),
        "constant_ms": latency_model.constant, "scale": latency_model.scale,
        "smallest_plan_predicted_ms": latency_model.predict(
            graph, singe_keras.allocation._smallest_plan(graph, 1, 1, None)),
    }
    full_ms = latency_model.predict(graph)
    with tempfile.TemporaryDirectory() as directory:
        if not args.skip_prune:
            try:
                record.update(_prune(name, model, latency_model, timer, args, directory,
                                     calibration))
            except ValueError as error:  # an unreachable target: recorded, plans still run
                print(f"{name} {precision}: {error}", flush=True)
                record["prune_error"] = str(error)
        rng = np.random.default_rng(args.seed)
        plans = []
        for index in range(args.plans):
            plan = _random_plan(graph, rng, args.plan_step)
            predicted = latency_model.predict(graph, plan)
            timed = _compare(timer, model, singe_keras.rebuild(graph, plan), directory,
                             args.plan_runs)
            plans.append({
                "flops_ratio": singe_keras.count_flops(graph, plan) / singe_keras.count_flops(graph),
                "predicted_ratio": predicted / full_ms, "measured_ratio": timed["ratio"],
                "predicted_ms": predicted, "measured_ms": timed["pruned_ms"],
                "original_ms": timed["original_ms"],
            })
            print(f"  random plan {index + 1}: predicted ratio {predicted / full_ms:.3f}, "
                  f"measured {timed['ratio']:.3f}", flush=True)
    ratio_errors = np.array([abs(p["predicted_ratio"] - p["measured_ratio"]) / p["measured_ratio"]
                             for p in plans])
    record.update({
        "original_predicted_ms": full_ms,
        "random_plans": plans,
        "prediction_error_of_ratio": {"mean": float(ratio_errors.mean()),
                                      "max": float(ratio_errors.max())},
    })
    print(f"{name} {precision}: random-plan ratio error mean {ratio_errors.mean():.1%}, "
          f"max {ratio_errors.max():.1%}", flush=True)
    return record


def _prune(name, model, latency_model, timer, args, directory, calibration):
    """`target_latency` pruning, and the pruned model timed against the original."""
    if name == "resnet20":
        data = (calibration[0][:64], calibration[1][:64])
        criterion = singe_keras.criteria.IntegratedGradients(samples=64)
    else:
        data, criterion = None, "l1"
    pruned, report = singe_keras.prune(
        model, data, target_latency=args.target, latency_model=latency_model,
        criterion=criterion, rounds=1, finetune_steps=0, return_report=True, verbose=1,
    )
    measured = _compare(timer, model, pruned, directory, args.runs)
    flops_ratio = singe_keras.count_flops(pruned) / singe_keras.count_flops(model)
    print(f"{name} {timer.precision}: measured latency ratio {measured['ratio']:.3f} "
          f"(FLOPs ratio {flops_ratio:.3f})", flush=True)
    return {
        "target_latency": args.target,
        "flops_ratio": flops_ratio,
        "filters": [l.filters for l in pruned.layers if isinstance(l, keras.layers.Conv2D)
                    and not isinstance(l, keras.layers.DepthwiseConv2D)],
        "report_latency": report.latency,
        "measured_interleaved": measured,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["resnet20", "mobilenetv2"],
                        choices=["resnet20", "mobilenetv2"])
    parser.add_argument("--precisions", nargs="+", default=["float32"],
                        choices=list(latency.PRECISIONS))
    parser.add_argument("--target", type=float, default=0.5)
    parser.add_argument("--runs", type=int, default=500,
                        help="timed runs per model for the pruned/original ratio")
    parser.add_argument("--plans", type=int, default=20)
    parser.add_argument("--plan-runs", type=int, default=200)
    parser.add_argument("--plan-step", type=int, default=1,
                        help="random plans keep multiples of this many units per group "
                             "(4: on the tables' finest grid, as the allocation's plans)")
    parser.add_argument("--skip-prune", action="store_true",
                        help="only the tables and the random plans")
    parser.add_argument("--probe-runs", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--conditions", default="",
                        help="free text on the machine's load, stored in the results")
    parser.add_argument("--output", default="benchmarks/results/latency_target.json")
    parser.add_argument("--data", default=cifar10_data.SHARED_DATA)
    parser.add_argument("--model", default=cifar10_data.PRETRAINED)
    args = parser.parse_args()
    calibration = cifar10_data.load_split(args.data, "train", 64)
    results = {"settings": {k: v for k, v in vars(args).items()}, "runs": [],
               "load_average_start": os.getloadavg()}
    for name in args.models:
        for precision in args.precisions:
            results["runs"].append(run(name, precision, args, calibration))
            results["load_average_end"] = os.getloadavg()
            results_io.save(results, args.output)  # after each run: partial results survive


if __name__ == "__main__":
    main()
