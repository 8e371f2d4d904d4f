"""Fine-tuning of ResNet-20 with 2 MultiWorkerMirroredStrategy workers vs 1 process.

Two measurements, each made once in one process without a strategy (Keras's
`fit`) and once by two worker processes on 127.0.0.1 under a
MultiWorkerMirroredStrategy (`singe_keras.distributed_training.fit`, the path
`prune` takes there), on the same `--samples` CIFAR-10 training images:

- speed: the pretrained model fine-tuned with a global batch of
  `--batch-size` (each of two workers computes half of every batch): after
  a call of `--warmup` steps, a call of `--warmup` steps and one of
  `--warmup + --steps` steps are timed; `--steps` over their difference is
  the fine-tuning steps per second, without the tracing that each call of
  the distributed step repeats (Keras's `fit` keeps its traced function);
- loss: `singe_keras.prune` to half the FLOPs with the `"l1"` criterion
  (no scoring cost), `--rounds` rounds of `--finetune-steps` steps and one
  final epoch, seed 0; the report's training loss after each stage.

Results in benchmarks/results/distributed_finetuning_resnet20.json. Both
workers run on this machine's cores (with TensorFlow's default thread
pools): take the ratio as this machine's, not as a prediction for hosts.

    python benchmarks/distributed_finetuning.py --samples 1024 --steps 30
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


def child(args):
    import numpy as np
    import tensorflow as tf

    strategy = tf.distribute.MultiWorkerMirroredStrategy() if "TF_CONFIG" in os.environ else None
    import keras

    import singe_keras
    from singe_keras import data as data_lib
    from singe_keras import distributed_training

    x, y = cifar10_data.load_split(args.data, "train", args.samples)
    with strategy.scope() if strategy else contextlib.nullcontext():
        model = keras.models.load_model(MODEL)
        # One step per call on both paths (the distributed step has no
        # steps_per_execution).
        model.compile_from_config({**model.get_compile_config(), "steps_per_execution": 1})
        stream = data_lib.training_stream((x, y), args.batch_size, seed=0)

        def train(steps):
            batches = stream.take(steps)
            started = time.perf_counter()
            if strategy is None:
                model.fit(batches, epochs=1, shuffle=False, verbose=0)
            else:
                distributed_training.fit(model, batches, verbose=0)
            return time.perf_counter() - started

        train(args.warmup)  # traces Keras's train function (kept by the model)
        # Each distributed call traces its step again: the difference of a
        # short and a long call is the time of `steps` steps on both paths.
        short, long = train(args.warmup), train(args.warmup + args.steps)
        pruned, report = singe_keras.prune(
            keras.models.load_model(MODEL), (x, y), target_flops=0.5, criterion="l1",
            rounds=args.rounds, finetune_steps=args.finetune_steps, final_epochs=1,
            batch_size=args.batch_size, seed=0, verbose=0, return_report=True)
    print(json.dumps({
        "steps_per_second": args.steps / (long - short),
        "short_call_seconds": short,
        "long_call_seconds": long,
        "losses": {str(r["round"]): r["metrics"]["train_loss"] for r in report.rounds},
        "accuracies": {str(r["round"]): r["metrics"]["train_accuracy"] for r in report.rounds},
        "params": pruned.count_params(),
        "weights_checksum": float(sum(np.abs(w).sum() for w in pruned.get_weights())),
    }))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=1024)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--finetune-steps", type=int, default=10)
    parser.add_argument("--data", default=cifar10_data.SHARED_DATA)
    parser.add_argument("--child", action="store_true")
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    arguments = [
        "--samples", str(args.samples), "--batch-size", str(args.batch_size),
        "--steps", str(args.steps), "--warmup", str(args.warmup), "--rounds", str(args.rounds),
        "--finetune-steps", str(args.finetune_steps), "--data", args.data,
    ]

    import local_workers
    import results_io

    load = os.getloadavg()
    single, = local_workers.run(__file__, arguments, [{}])
    chief, other = local_workers.run(__file__, arguments,
                                     local_workers.worker_environments(2))
    results = {
        "model": os.path.basename(MODEL),
        "samples": args.samples,
        "global_batch_size": args.batch_size,
        "timed_steps": args.steps,
        "warmup_steps": args.warmup,
        "one_process": single,
        "two_workers": chief,
        "two_workers_speed_ratio": chief["steps_per_second"] / single["steps_per_second"],
        "workers_agree": chief["weights_checksum"] == other["weights_checksum"],
        "pruning": f"target_flops=0.5, criterion='l1', rounds={args.rounds}, "
                   f"finetune_steps={args.finetune_steps}, final_epochs=1, seed=0",
        "load_average_before": load,
        "conditions": "both workers on this machine's 2 CPU cores, shared with other jobs",
    }
    results_io.save(results, os.path.join(os.path.dirname(__file__), "results",
                                          "distributed_finetuning_resnet20.json"))
    print(results)


if __name__ == "__main__":
    main()
