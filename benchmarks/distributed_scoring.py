"""Speed of SInGE scoring of ResNet-20 with 2 MultiWorkerMirroredStrategy workers vs 1 process.

One process scores `--samples` CIFAR-10 training images without a strategy;
then two worker processes on 127.0.0.1 score the same images under a
MultiWorkerMirroredStrategy (each computes the rows of its replica; the sums
are all-reduced). Each process scores once to trace the step (on the same
images), then times `--repeats` scorings; the median is reported, with the
speed-up and the largest relative difference of the relevances, in
benchmarks/results/distributed_scoring_resnet20.json. Both workers run on
this machine's cores (with TensorFlow's default thread pools).

    python benchmarks/distributed_scoring.py --samples 64 --repeats 3
"""

import argparse
import contextlib
import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "examples"))
import cifar10_data  # noqa: E402

MODEL = cifar10_data.PRETRAINED


def child(samples, repeats, data):
    import numpy as np
    import tensorflow as tf

    strategy = tf.distribute.MultiWorkerMirroredStrategy() if "TF_CONFIG" in os.environ else None
    import keras

    import singe_keras

    x, y = cifar10_data.load_split(data, "train", samples)
    criterion = singe_keras.criteria.IntegratedGradients(samples=samples)
    seconds = []
    with strategy.scope() if strategy else contextlib.nullcontext():
        gated = singe_keras.GatedModel(singe_keras.trace(keras.models.load_model(MODEL)))
        for repeat in range(repeats + 1):
            started = time.perf_counter()
            relevance = singe_keras.score(gated, (x, y), criterion).flat()
            if repeat:  # the first scoring traces the step
                seconds.append(time.perf_counter() - started)
    print(json.dumps({"median_seconds": float(np.median(seconds)), "seconds": seconds,
                      "relevance": relevance.tolist()}))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--data", default=cifar10_data.SHARED_DATA)
    parser.add_argument("--child", action="store_true")
    args = parser.parse_args()
    arguments = ["--samples", str(args.samples), "--repeats", str(args.repeats),
                 "--data", args.data]
    if args.child:
        child(args.samples, args.repeats, args.data)
        return

    import numpy as np

    import local_workers
    import results_io

    load = os.getloadavg()
    single, = local_workers.run(__file__, arguments, [{}])
    chief, other = local_workers.run(__file__, arguments,
                                     local_workers.worker_environments(2))
    reference = np.asarray(single["relevance"])
    results = {
        "model": os.path.basename(MODEL),
        "criterion": "singe (its defaults at the commit recorded below)",
        "samples": args.samples,
        "repeats": args.repeats,
        "one_process_seconds": single["median_seconds"],
        "two_workers_seconds": chief["median_seconds"],
        "speed_up": single["median_seconds"] / chief["median_seconds"],
        "max_relative_difference": float(
            np.abs(np.asarray(chief["relevance"]) - reference).max() / np.abs(reference).max()),
        "workers_agree": chief["relevance"] == other["relevance"],
        "load_average_before": load,
        "conditions": "both workers on this machine's 2 CPU cores, shared with other jobs",
    }
    results_io.save(results, os.path.join(os.path.dirname(__file__), "results",
                                          "distributed_scoring_resnet20.json"))
    print({k: v for k, v in results.items()})


if __name__ == "__main__":
    main()
