"""Scoring and pruning under tf.distribute, in a process of its own (for test_distribute).

    python distribute_worker.py mirrored OUTPUT.json
    python distribute_worker.py worker OUTPUT_DIR      (TF_CONFIG set by the caller)

`mirrored` splits the one CPU into two logical devices (which must happen
before TensorFlow starts) and writes the single-device and the 2-replica
results of `score`, `prune` and `PruningCallback` to OUTPUT.json. `worker`
is one task of a MultiWorkerMirroredStrategy: it scores, and prunes (without
fine-tuning, which Keras cannot do there) with a
checkpoint directory and a saved report of its own (only the chief should
write them), and saves its relevances and pruned weights (the test's
output, written by every worker) as OUTPUT_DIR/worker<task id>.npz.
"""

import json
import os
import sys

import numpy as np
import tensorflow as tf

import singe_keras
import zoo

CRITERION = dict(steps=3, samples=13, batch_size=4, draws=2)
PRUNING = dict(target_flops=0.5, rounds=2, finetune_steps=2, batch_size=4, seed=0, verbose=0)


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
        }
    with open(output, "w") as f:
        json.dump(results, f)


def worker(directory):
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    task = strategy.cluster_resolver.task_id
    model, data = problem()
    with strategy.scope():
        relevance = scores(model, data)
        try:  # Keras's fit does not run under a multi-worker strategy
            singe_keras.prune(model, data, **PRUNING)
            refused = ""
        except ValueError as error:
            refused = str(error)
        pruned, report = singe_keras.prune(
            model, data, checkpoint_dir=os.path.join(directory, f"checkpoint{task}"),
            return_report=True, **{**PRUNING, "finetune_steps": 0})
        report.save(os.path.join(directory, f"report{task}.json"))
    np.savez(os.path.join(directory, f"worker{task}.npz"), *pruned.get_weights(),
             group=relevance["group"], random=relevance["random"], refused=refused)


if __name__ == "__main__":
    {"mirrored": mirrored, "worker": worker}[sys.argv[1]](sys.argv[2])
