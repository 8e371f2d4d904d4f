"""Does thinning every layer make a LiteRT model faster? Whole-model latency by width.

Every coupling group of the model keeps the same fraction of its units (the
first ones: latency does not depend on which), the thinned model is rebuilt,
converted to float32 and to full-integer int8 .tflite files, and timed against
the unpruned model with the device-side toolkit (`litert_bench.compare`: batch
1, 1 thread, XNNPACK, interleaved blocks, medians). This is the ground truth
behind the latency tables: if a precision's whole model does not get faster
when every layer is thinner, no allocation can meet a latency target there.

    python benchmarks/width_latency.py --output benchmarks/results/width_latency.json
"""

import argparse
import os
import tempfile

import numpy as np

import results_io
import singe_keras
from singe_keras import latency

import latency_target  # the models and the interleaved timing of the latency benchmark


def _uniform_plan(graph, fraction):
    keep = {g.name: np.arange(max(1, int(round(fraction * g.size)))) for g in graph.groups}
    return singe_keras.Plan(keep, {g.name: g.size for g in graph.groups})


def run(name, precision, args, directory):
    model = latency_target._model(name, args)
    graph = singe_keras.trace(model)
    timer = latency.LiteRTTimer(precision=precision)
    directory = os.path.join(directory, f"{name}_{precision}")  # its own original file
    os.makedirs(directory)
    rows = []
    for fraction in args.fractions:
        plan = _uniform_plan(graph, fraction)
        rows.append({
            "fraction": fraction,
            "flops_ratio": singe_keras.count_flops(graph, plan) / singe_keras.count_flops(graph),
        })
        try:
            timed = latency_target._compare(timer, model, singe_keras.rebuild(graph, plan),
                                            directory, args.runs)
        except ValueError as error:  # a file XNNPACK cannot prepare: recorded
            rows[-1]["error"] = str(error)
            print(f"{name} {precision} keep {fraction:.3f}: {error}", flush=True)
            continue
        rows[-1].update({"original_ms": timed["original_ms"], "thinned_ms": timed["pruned_ms"],
                         "latency_ratio": timed["ratio"]})
        print(f"{name} {precision} keep {fraction:.3f}: FLOPs ratio "
              f"{rows[-1]['flops_ratio']:.3f}, latency ratio {timed['ratio']:.3f}",
              flush=True)
    return {"model": name, "precision": precision, "widths": rows}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["resnet20", "mobilenetv2"],
                        choices=["resnet20", "mobilenetv2"])
    parser.add_argument("--precisions", nargs="+", default=list(latency.PRECISIONS),
                        choices=list(latency.PRECISIONS))
    parser.add_argument("--fractions", nargs="+", type=float,
                        default=[1.0, 0.75, 0.5, 0.25, 0.125])
    parser.add_argument("--runs", type=int, default=300,
                        help="timed runs per model and comparison")
    parser.add_argument("--output", default="benchmarks/results/width_latency.json")
    parser.add_argument("--model", default=latency_target.cifar10_data.PRETRAINED)
    args = parser.parse_args()
    results = {"settings": vars(args), "load_average_start": os.getloadavg(), "runs": []}
    with tempfile.TemporaryDirectory() as directory:
        for name in args.models:
            for precision in args.precisions:
                results["runs"].append(run(name, precision, args, directory))
                results["load_average_end"] = os.getloadavg()
                results_io.save(results, args.output)


if __name__ == "__main__":
    main()
