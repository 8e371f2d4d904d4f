"""CIFAR-10 evidence: SInGE against the baseline criteria, side by side.

Uses the pretrained ResNet-20 and the offline CIFAR-10 copy of ../shared
(decoded with tf.io.decode_jpeg). Every method sees the same data order,
the same scoring samples and the same fine-tuning budget. Results go to
benchmarks/results/cifar10_resnet20.json after every finished cell, so an
interrupted run resumes where it stopped.

    python benchmarks/cifar10.py            # everything (about 1.5 h on 2 cores)
    python benchmarks/cifar10.py --parts 1  # one part

Parts:
 1. criterion quality without fine-tuning: 50% and 35% FLOPs, one round and
    4 rounds of rescoring, test accuracy with and without re-estimated
    BatchNorm statistics, 3 seeds of the scoring-sample draw;
 2. with fine-tuning at 50% FLOPs: singe entwined vs singe one-shot with the
    same optimizer steps vs the best baseline entwined;
 3. deployment: TFLite float32 and int8 of the part-2 SInGE model vs the
    baseline (size, accuracy, latency);
 4. singe options: steps K, and allocation normalization (one round, no
    fine-tuning, 50% and 35% FLOPs, 3 seeds).
"""

import argparse
import json
import os
import sys
import time

import keras
import numpy as np
import tensorflow as tf

import results_io
import singe_keras
import training
from singe_keras import criteria

# The CIFAR-10 loader of the examples (examples/ is a folder of scripts).
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "examples"))
import cifar10_data  # noqa: E402

OUTPUT = os.path.join(os.path.dirname(__file__), "results", "cifar10_resnet20.json")
SCORING_SAMPLES = 64
EVAL_SUBSET = 2000  # test images for part 1 and 4 (part 2 and 3: all 10,000)
SEEDS = (0, 1, 2)
ROUNDS = 4
FINETUNE_STEPS = 100  # per round; one-shot gets ROUNDS x this in its single round
FINAL_EPOCHS = 1
BATCH = 64


class Results:
    """The results JSON, rewritten atomically after every cell.

    Each write re-reads the file first, so runs of other rows or seeds may
    write to it at the same time.

    Its `runs` list the distinct invocations (command and commit) that
    wrote cells, by first write; a file from before the list starts it with
    its last writer, the only one it recorded.
    """

    def __init__(self, path):
        self.path = path
        self.data = {}
        if os.path.exists(path):
            with open(path) as f:
                self.data = json.load(f)
        if "runs" not in self.data:
            earlier = self.data.get("environment")
            self.data["runs"] = [_run_of(earlier)] if earlier else []
        self.run = _run_of(results_io.environment())

    def get(self, part, key):
        return self.data.get(part, {}).get(key)

    def put(self, part, key, value):
        if os.path.exists(self.path):  # keeps the cells other processes wrote meanwhile
            with open(self.path) as f:
                on_disk = json.load(f)
            self.data = {**on_disk, "runs": on_disk.get("runs", self.data["runs"])}
        if self.run not in self.data["runs"]:
            self.data["runs"].append(self.run)
        self.data.setdefault(part, {})[key] = value
        results_io.save({k: v for k, v in self.data.items() if k != "environment"}, self.path)
        print(f"[{part}] {key}: {json.dumps(value)}", flush=True)


def _run_of(environment):
    return {k: environment[k] for k in ("command", "git_commit")}


def accuracy(model, x, y):
    logits = model.predict(x, batch_size=500, verbose=0)
    return float(np.mean(np.argmax(logits, -1) == y))


def pruned_record(pruned, report, baseline, criterion, test, started):
    """What the entwined and recovery benchmarks keep of one `prune` run."""
    return {
        "criterion": criteria.serialize(criterion),
        "test_accuracy": accuracy(pruned, *test),
        "flops_ratio": singe_keras.count_flops(pruned) / singe_keras.count_flops(baseline),
        "params": pruned.count_params(),
        "scoring_seconds": sum(r.get("scoring_seconds", 0) for r in report.rounds),
        "seconds": time.perf_counter() - started,
    }


def recalibrate_batchnorm(model, x, batches=20):
    """Re-estimates BatchNorm moving statistics as an exact average over batches."""
    layers = [l for l in _leaves(model) if isinstance(l, keras.layers.BatchNormalization)]
    momenta = [l.momentum for l in layers]
    for i in range(batches):
        for layer in layers:
            layer.momentum = i / (i + 1)  # 0 first: overwrite, then running mean
        model(x[i * BATCH : (i + 1) * BATCH], training=True)
    for layer, momentum in zip(layers, momenta):
        layer.momentum = momentum


def _leaves(model):
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from _leaves(layer)
        else:
            yield layer


def scoring_draw(train, seed):
    """The `SCORING_SAMPLES` training images that score the units for `seed`."""
    draw = np.random.default_rng(seed).choice(len(train[0]), SCORING_SAMPLES, replace=False)
    return train[0][draw], train[1][draw]


def criterion_of(name, samples=SCORING_SAMPLES, seed=0, **options):
    if name == "singe":
        return criteria.IntegratedGradients(samples=samples, **options)
    if name == "taylor":
        return criteria.Taylor(samples=samples)
    if name == "random":
        return criteria.Random(seed=seed)
    return criteria.get(name)


def part1(results, train, test, baseline):
    """Criterion quality without fine-tuning."""
    x_test, y_test = test[0][:EVAL_SUBSET], test[1][:EVAL_SUBSET]
    if results.get("part1", "baseline") is None:
        results.put("part1", "baseline", {"accuracy": accuracy(baseline, x_test, y_test)})
    for seed in SEEDS:
        scoring = scoring_draw(train, seed)
        for name in ("singe", "taylor", "l1", "bn_scale", "random"):
            if seed > 0 and name in ("l1", "bn_scale"):
                continue  # no scoring samples: the same for every seed
            for target in (0.5, 0.35):
                for rounds in (1, ROUNDS):
                    key = f"{name}/flops{target}/rounds{rounds}/seed{seed}"
                    if results.get("part1", key) is not None:
                        continue
                    started = time.perf_counter()
                    pruned = singe_keras.prune(
                        baseline, scoring, target_flops=target,
                        criterion=criterion_of(name, seed=seed), rounds=rounds,
                        finetune_steps=0, verbose=0,
                    )
                    seconds = time.perf_counter() - started
                    before = accuracy(pruned, x_test, y_test)
                    recalibrate_batchnorm(pruned, train[0][-20 * BATCH :])
                    results.put("part1", key, {
                        "accuracy": before,
                        "accuracy_bn_recalibrated": accuracy(pruned, x_test, y_test),
                        "flops": singe_keras.count_flops(pruned),
                        "seconds": seconds,
                    })


def training_dataset(train, seed=0, augmentation="flip", batch_size=BATCH):
    """Shuffled training batches, with `augmentation`: random flips (`"flip"`),
    random crops and flips (`"crop"`) or none (`"none"`).

    The same order for every method.
    """

    def augment(image, label):
        if augmentation == "crop":
            image = training.random_crop(image, seed=seed)
        return tf.image.random_flip_left_right(image, seed=seed), label

    dataset = tf.data.Dataset.from_tensor_slices(train).shuffle(
        len(train[0]), seed=seed, reshuffle_each_iteration=True)
    if augmentation != "none":
        dataset = dataset.map(augment)
    return dataset.batch(batch_size)


def best_baseline(results):
    """The baseline criterion with the best mean part-1 accuracy at 50%, 4 rounds."""
    means = {}
    for name in ("taylor", "l1", "bn_scale", "random"):
        values = [
            v["accuracy_bn_recalibrated"]
            for k, v in results.data.get("part1", {}).items()
            if k.startswith(f"{name}/flops0.5/rounds{ROUNDS}/")
        ]
        if values:
            means[name] = float(np.mean(values))
    return max(means, key=means.get)


def part2(results, train, test, baseline):
    """Fine-tuning at 50% FLOPs with the same number of optimizer steps."""
    dataset = training_dataset(train)
    runs = {
        "singe_entwined": ("singe", ROUNDS, FINETUNE_STEPS),
        "singe_one_shot": ("singe", 1, ROUNDS * FINETUNE_STEPS),
        "baseline_entwined": (best_baseline(results), ROUNDS, FINETUNE_STEPS),
    }
    for key, (name, rounds, steps) in runs.items():
        if results.get("part2", key) is not None:
            continue
        started = time.perf_counter()
        pruned, report = singe_keras.prune(
            baseline, dataset, target_flops=0.5, criterion=criterion_of(name),
            rounds=rounds, finetune_steps=steps, final_epochs=FINAL_EPOCHS,
            seed=0, return_report=True,
        )
        pruned.save(os.path.join(os.path.dirname(OUTPUT), f"cifar10_{key}.keras"))
        results.put("part2", key, {
            "criterion": name,
            "rounds": rounds,
            "finetune_steps_per_round": steps,
            "final_epochs": FINAL_EPOCHS,
            "test_accuracy": accuracy(pruned, *test),
            "flops": singe_keras.count_flops(pruned),
            "params": pruned.count_params(),
            "scoring_seconds": sum(r.get("scoring_seconds", 0) for r in report.rounds),
            "seconds": time.perf_counter() - started,
            "rounds_report": report.rounds,
        })


def part3(results, train, test, baseline):
    """TFLite float32 and int8: size, accuracy, latency."""
    from singe_keras import export  # lands with the export issue

    directory = os.path.dirname(OUTPUT)
    pruned = keras.models.load_model(os.path.join(directory, "cifar10_singe_entwined.keras"))
    for model_name, model in (("baseline", baseline), ("singe_50", pruned)):
        for quantization in (None, "int8"):
            key = f"{model_name}/{quantization or 'float32'}"
            if results.get("part3", key) is not None:
                continue
            path = os.path.join(directory, f"cifar10_{model_name}_{quantization or 'float32'}.tflite")
            info = export.export_tflite(
                model, path, quantization=quantization,
                representative_dataset=train[0][:200] if quantization else None,
            )
            results.put("part3", key, {
                "bytes": info.size_bytes,
                "flops": singe_keras.count_flops(model),
                "test_accuracy": tflite_accuracy(path, *test),
            })


def tflite_accuracy(path, x, y):
    """Top-1 accuracy of a .tflite classifier, one image at a time, in LiteRT."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=path)
    interpreter.allocate_tensors()
    (source,), (target,) = interpreter.get_input_details(), interpreter.get_output_details()
    scale, zero = source["quantization"]
    correct = 0
    for image, label in zip(x, y):
        if source["dtype"] != np.float32:
            image = np.round(image / scale + zero).astype(source["dtype"])
        interpreter.set_tensor(source["index"], image[None])
        interpreter.invoke()
        correct += int(np.argmax(interpreter.get_tensor(target["index"])[0]) == label)
    return correct / len(y)


def part4(results, train, test, baseline):
    """singe's options: steps K, and allocation normalization, over seeds."""
    x_test, y_test = test[0][:EVAL_SUBSET], test[1][:EVAL_SUBSET]
    settings = [(k, "l2") for k in (1, 4, 8, 16)] + [(8, "none"), (8, "flops"), (4, "flops")]
    for seed in SEEDS:
        scoring = scoring_draw(train, seed)
        for target in (0.5, 0.35):
            for steps, normalization in settings:
                key = f"steps{steps}/{normalization}/flops{target}/seed{seed}"
                if results.get("part4", key) is not None:
                    continue
                started = time.perf_counter()
                pruned = singe_keras.prune(
                    baseline, scoring, target_flops=target,
                    criterion=criterion_of("singe", steps=steps), rounds=1,
                    finetune_steps=0, normalization=normalization, verbose=0,
                )
                seconds = time.perf_counter() - started
                recalibrate_batchnorm(pruned, train[0][-20 * BATCH :])
                results.put("part4", key, {
                    "accuracy_bn_recalibrated": accuracy(pruned, x_test, y_test),
                    "flops": singe_keras.count_flops(pruned),
                    "seconds": seconds,
                })


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", default="1,4,2,3")
    parser.add_argument("--output", default=OUTPUT)
    parser.add_argument("--data", default=cifar10_data.SHARED_DATA,
                        help="CIFAR-10 .npz (default: %(default)s)")
    parser.add_argument("--model", default=cifar10_data.PRETRAINED,
                        help="pretrained ResNet-20 (default: %(default)s)")
    args = parser.parse_args()
    results = Results(args.output)
    print("decoding CIFAR-10 ...", flush=True)
    train, test = cifar10_data.load_split(args.data, "train"), cifar10_data.load_split(
        args.data, "test")
    baseline = keras.models.load_model(args.model)
    parts = {"1": part1, "2": part2, "3": part3, "4": part4}
    for part in args.parts.split(","):
        started = time.perf_counter()
        parts[part](results, train, test, baseline)
        print(f"part {part} done in {time.perf_counter() - started:.0f} s", flush=True)


if __name__ == "__main__":
    main()
