"""One full default scoring of a 224 px `keras.applications` model: wall time and peak memory.

Issue 23, acceptance 3: ResNet50 at 224 px (random weights, `weights=None`:
time and memory only), default `singe`, 256 random samples, measured in full
in a fresh process: the seconds to trace and gate, to score (the first call,
tracing its step included) and the peak resident memory of the process
(`resource.getrusage`, kilobytes on Linux).

    python benchmarks/scoring_full.py --model resnet50 --samples 256

Writes benchmarks/results/scoring_full_<model>.json.
"""

import argparse
import os
import resource
import time


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet50", choices=("resnet50", "mobilenetv2"))
    parser.add_argument("--samples", type=int, default=256)
    parser.add_argument("--criterion", default="singe")
    parser.add_argument("--output", default=None,
                        help="default: benchmarks/results/scoring_full_<model>.json")
    args = parser.parse_args()

    started_process = time.perf_counter()
    import keras
    import numpy as np

    import results_io
    import singe_keras
    from scoring_time import APPLICATIONS
    from singe_keras import criteria

    model = getattr(keras.applications, APPLICATIONS[args.model])(
        weights=None, input_shape=(224, 224, 3), classes=1000)
    model.compile(loss=keras.losses.SparseCategoricalCrossentropy())
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (args.samples, 224, 224, 3)).astype("float32")
    y = rng.integers(0, 1000, args.samples)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    gated = singe_keras.GatedModel(singe_keras.trace(model))
    trace_seconds = time.perf_counter() - started
    criterion = criteria.get(args.criterion)
    criterion.samples = args.samples
    started = time.perf_counter()
    scores = singe_keras.score(gated, (x, y), criterion, verbose=1)
    score_seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    results = {
        "model": args.model,
        "samples": args.samples,
        "criterion": criteria.serialize(criterion),
        "units": gated.graph.num_units,
        "pass_rows": criteria.pass_rows(gated.graph),
        "trace_and_gate_seconds": trace_seconds,
        "score_seconds_first_call": score_seconds,
        "total_seconds": trace_seconds + score_seconds,
        "process_seconds": time.perf_counter() - started_process,
        "peak_rss_gib": peak / 2**20,
        "rss_before_scoring_gib": rss_before / 2**20,
        "input_data_gib": x.nbytes / 2**30,
        "finite": bool(np.isfinite(scores.flat()).all()),
    }
    output = args.output or os.path.join(os.path.dirname(os.path.abspath(__file__)), "results",
                                         f"scoring_full_{args.model}.json")
    results_io.save(results, output)
    print(results)


if __name__ == "__main__":
    main()
