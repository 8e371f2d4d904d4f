"""Peak memory and speed of SInGE scoring on ImageNet-size keras.applications models.

Each model is scored in a child process of its own (random weights, 224x224,
random images and labels streamed from a `tf.data.Dataset` in batches of
`--batch`), with `IntegratedGradients(path="group", steps=4)` and its default
`batch_size=None` (passes sized to about 2 GiB of activations). The parent
reads the child's peak resident memory from `os.wait4` (ru_maxrss) and writes
benchmarks/results/scoring_memory.json; it also polls the child's resident
memory and stops it above `--limit-gib` (the machine is shared), recording
that run as stopped. The seconds per sample include the
one-time tracing of the step. Each run is `model:samples`; one model at two
sample counts shows whether peak memory grows with them.

    python benchmarks/scoring_memory.py --runs resnet50:8 mobilenet_v2:8 mobilenet_v2:32
"""

import argparse
import json
import os
import signal
import subprocess
import sys
import time

MODELS = {"resnet50": "ResNet50", "mobilenet_v2": "MobileNetV2"}


def child(name, samples, batch, steps):
    import keras
    import tensorflow as tf

    import singe_keras

    model = getattr(keras.applications, MODELS[name])(weights=None, input_shape=(224, 224, 3))
    model.compile(loss="sparse_categorical_crossentropy")
    data = tf.data.Dataset.range(-(-samples // batch)).map(lambda i: (
        tf.random.stateless_uniform((batch, 224, 224, 3), (0, i), -1.0, 1.0),
        tf.random.stateless_uniform((batch,), (1, i), 0, 1000, "int32"),
    ))
    criterion = singe_keras.criteria.IntegratedGradients(steps=steps, path="group", samples=samples)
    graph = singe_keras.trace(model)
    started = time.perf_counter()
    singe_keras.score(graph, data, criterion)
    seconds = time.perf_counter() - started
    print(json.dumps({
        "seconds": seconds,
        "seconds_per_sample": seconds / samples,
        "pass_rows": singe_keras.criteria.pass_rows(graph),
        "groups": len(graph.groups),
        "units": graph.num_units,
        "singe_keras": os.path.dirname(singe_keras.__file__),
    }))


def _watch(pid, limit_gib):
    """Waits for `pid` to exit; kills it (and returns True) if its RSS exceeds the limit."""
    while True:
        try:
            with open(f"/proc/{pid}/status") as f:
                fields = dict(line.split(":", 1) for line in f)
        except FileNotFoundError:
            return False
        if fields.get("State", "").strip().startswith("Z"):  # exited, not yet reaped
            return False
        if int(fields.get("VmRSS", "0 kB").split()[0]) > limit_gib * 2**20:
            os.kill(pid, signal.SIGKILL)
            return True
        time.sleep(0.5)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", nargs="+", default=[f"{m}:256" for m in MODELS],
                        help="model:samples, model in " + ", ".join(MODELS))
    parser.add_argument("--samples", type=int, default=256, help="(the child's)")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--limit-gib", type=float, default=12.0)
    parser.add_argument("--child", choices=list(MODELS))
    args = parser.parse_args()
    if args.child:
        child(args.child, args.samples, args.batch, args.steps)
        return

    import results_io

    runs = []
    for run in args.runs:
        name, samples = run.split(":")
        process = subprocess.Popen(
            [sys.executable, __file__, "--child", name, "--samples", samples,
             "--batch", str(args.batch), "--steps", str(args.steps)],
            stdout=subprocess.PIPE, text=True,
            # The singe_keras of this checkout, not whichever is installed.
            env=dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(
                os.path.abspath(__file__)))),
        )
        stopped = _watch(process.pid, args.limit_gib)
        output = process.stdout.read()
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = status  # reaped here, for its rusage
        result = {"model": name, "samples": int(samples),
                  "peak_rss_gib": usage.ru_maxrss / 2**20}  # KiB on Linux
        if stopped:
            result["stopped_above_gib"] = args.limit_gib
        elif status:
            raise SystemExit(f"{name}: the scoring process failed (status {status}).")
        else:
            result.update(json.loads(output.strip().splitlines()[-1]))
        runs.append(result)
        print(result, flush=True)
    results = {
        "criterion": {"class_name": "singe", "path": "group", "steps": args.steps,
                      "batch_size": None},
        "input_shape": [224, 224, 3],
        "weights": "random",
        "data_batch": args.batch,
        "runs": runs,
        "note": "2 shared CPU cores (another benchmark running); seconds include tracing.",
    }
    results_io.save(results, os.path.join(os.path.dirname(__file__), "results",
                                          "scoring_memory.json"))


if __name__ == "__main__":
    main()
