"""Scoring, pruning and fine-tuning under tf.distribute, in a process of its own (for test_distribute).

    python distribute_worker.py mirrored OUTPUT.json
    python distribute_worker.py worker OUTPUT_DIR [KILL_AT_ROUND]   (TF_CONFIG set by the caller)

`mirrored` splits the one CPU into two logical devices (which must happen
before TensorFlow starts) and writes the single-device and the 2-replica
results of `score`, `prune` and `PruningCallback` to OUTPUT.json. `worker`
is one task of a MultiWorkerMirroredStrategy: it scores, checks that
`PruningCallback` refuses the strategy, and prunes with fine-tuning (the
distributed training step) and a checkpoint in OUTPUT_DIR/checkpoint (which
all workers share and only the chief writes), saves its report as
OUTPUT_DIR/report<task id>.json (only the chief's is kept) and its
relevances, pruned weights and refusal message (the test's output, written
by every worker) as OUTPUT_DIR/worker<task id>.npz. With KILL_AT_ROUND, the
process kills itself (SIGKILL, like a crash) as soon as that round has
finished fine-tuning, before its checkpoint is written.
"""

import json
import os
import sys

import numpy as np
import tensorflow as tf

import prune_worker
import singe_keras
import zoo
from singe_keras import data as data_lib
from singe_keras import distributed_training
from singe_keras.distillation import DistillationLoss, Distiller

CRITERION = dict(steps=3, samples=13, batch_size=4, draws=2)
PRUNING = dict(target_flops=0.5, rounds=2, finetune_steps=2, batch_size=4, seed=0, verbose=0)
# 25 samples in batches of 8: every epoch ends on one row, fewer than the replicas.
FINETUNING = dict(target_flops=0.6, rounds=2, finetune_steps=8, final_epochs=1, batch_size=8,
                  seed=0, verbose=0)


def problem():
    """A compiled residual model and 16 labelled samples."""
    model = zoo.build("residual")
    model.compile(
        optimizer="sgd",
        loss=zoo.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    rng = np.random.default_rng(0)
    return model, (zoo.sample_inputs(model, batch=16, seed=0), rng.integers(0, 3, 16))


def scores(model, data):
    """Relevances of the group and random paths (13 samples: an uneven split)."""
    return {
        path: singe_keras.score(
            model, data, singe_keras.criteria.IntegratedGradients(path=path, **CRITERION)
        ).flat().tolist()
        for path in ("group", "random")
    }


def architecture(model):
    return {g.name: g.size for g in singe_keras.trace(model).groups}


def pruned_by_callback(model, data):
    model.fit(*data, epochs=2, batch_size=4, verbose=0, callbacks=[singe_keras.PruningCallback(
        target_flops=0.5, dataset=data, criterion=singe_keras.criteria.IntegratedGradients(
            path="group", **CRITERION), rounds=2, verbose=0)])
    return architecture(singe_keras.strip(model))


def step_against_fit():
    """Trainable weights and logs after an epoch of Keras's `fit` and of the distributed step.

    Both under the enclosing strategy, from the same model and batches; for
    the model and for a `Distiller` of it (as `prune` distills).
    """
    results = {}
    for kind in ("model", "distiller"):
        for name in ("fit", "distributed"):
            model, data = learnable_problem()
            config = {**model.get_compile_config(), "steps_per_execution": 1,
                      "jit_compile": False}
            if kind == "distiller":
                model = Distiller(model, zoo.build("residual", seed=1),
                                  DistillationLoss("logits"), 0.5)
                config["loss_weights"] = 0.5
            model.compile_from_config(config)
            # Unshuffled (fit reads a batch to build the model before its epoch).
            batches = data_lib.epoch(tf.data.Dataset.from_tensor_slices(data).batch(8), 8, 0)
            if name == "fit":
                logs = model.fit(batches, epochs=1, shuffle=False, verbose=0).history
            else:
                logs = distributed_training.fit(model, batches, verbose=0).history
            results[f"{kind} {name}"] = {
                "logs": {k: v[-1] for k, v in logs.items()},
                "weights": [zoo.keras.ops.convert_to_numpy(w).tolist()
                            for w in model.trainable_weights],
            }
    return results


def mirrored(output):
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    model, data = problem()
    # 13 samples in batches of 4: every epoch of fine-tuning ends on one row.
    uneven = (data[0][:13], data[1][:13])
    results = {"single": {
        "original": architecture(model),
        "scores": scores(model, data),
        "prune": architecture(singe_keras.prune(model, uneven, **PRUNING)),
        "callback": pruned_by_callback(problem()[0], data),
    }}
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    with strategy.scope():
        pruned = singe_keras.prune(model, uneven, **PRUNING)
        results["mirrored"] = {
            "replicas": strategy.num_replicas_in_sync,
            "scores": scores(model, data),
            "prune": architecture(pruned),
            "mirrored_weights": all(
                isinstance(w.value, tf.distribute.DistributedValues) for w in pruned.weights),
            "callback": pruned_by_callback(problem()[0], data),
            "epoch_rows": {
                size: [len(batch[0]) for batch in data_lib.epoch(uneven, size, 0)]
                for size in (4, 5)
            },
            "step_against_fit": step_against_fit(),
        }
    with open(output, "w") as f:
        json.dump(results, f)


def learnable_problem():
    """A compiled residual model and 25 samples whose labels follow their inputs.

    Sample weights make the compiled loss and the weighted metric depend on them.
    """
    model = zoo.build("residual")
    model.compile(
        optimizer=zoo.keras.optimizers.Adam(
            zoo.keras.optimizers.schedules.ExponentialDecay(0.01, 10, 0.5)),
        loss=zoo.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"], weighted_metrics=["sparse_categorical_accuracy"],
    )
    rng = np.random.default_rng(1)
    x = rng.normal(size=(25, 8, 8, 3)).astype("float32")
    y = np.argmax(x.mean(axis=(1, 2)), axis=-1)
    return model, (x, y, rng.uniform(0.5, 1.5, 25).astype("float32"))


def worker(directory, kill_at=None):
    if kill_at is not None:
        prune_worker.kill_at_round(int(kill_at))
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    task = strategy.cluster_resolver.task_id
    model, data = problem()
    with strategy.scope():
        relevance = scores(model, data)
        try:  # the callback runs inside Keras's fit, which does not run here
            singe_keras.PruningCallback(target_flops=0.5, data=data)
            refused = ""
        except ValueError as error:
            refused = str(error)
        tuned, report = singe_keras.prune(
            *learnable_problem(), checkpoint_dir=os.path.join(directory, "checkpoint"),
            return_report=True, **FINETUNING)
        report.save(os.path.join(directory, f"report{task}.json"))
    np.savez(os.path.join(directory, f"worker{task}.npz"), *tuned.get_weights(),
             group=relevance["group"], random=relevance["random"], refused=refused)


if __name__ == "__main__":
    {"mirrored": mirrored, "worker": worker}[sys.argv[1]](*sys.argv[2:])
