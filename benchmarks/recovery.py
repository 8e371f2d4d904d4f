"""Accuracy recovery (issue 12): pruned and fine-tuned vs the unpruned model fine-tuned.

The best-trained ResNet-20 of ../shared/models (85.1%) is pruned by
`singe_keras.prune` to 50% and 35% of its FLOPs in 4 rounds of 100
optimizer steps and one final epoch (batch 64, random flips: the CIFAR-10
benchmark's budget, 1,182 steps), and every row gets the same budget and the
same fine-tuning optimizer: SGD, Nesterov momentum 0.9, learning rate 0.01
cosine-decayed to 0 over the 1,182 steps (the model's own compiled optimizer
is at the end of its schedule, 5e-4). Rows:

- control: the unpruned model fine-tuned for the same 1,182 steps;
- singe with and without BatchNorm re-estimation (`recalibration_batches` 20
  or 0) and with and without distillation from the unpruned model;
- taylor and l1 with the full recovery (re-estimation and distillation);
- label-free singe: inputs only, so scoring and fine-tuning are distillation,
  and l1 label-free, fine-tuned alike (l1 reads no data);
- singe with the full recovery and the "flops" allocation normalization, its
  best one-shot on this model (criteria_grid_resnet20_long.md; every other row
  uses "mean", the default then, which is also l1's best there);
- default and l1_default (issue 27): `prune`'s default recipe, only the
  criterion (the default "singe", or "l1") and the budget given;
  l1_default_mean and default_mean: the same with the former fixed
  normalization; default_6x197 and default_4x491: the default recipe with
  the same budget spread over 6 rounds of 197 steps (one final epoch fewer)
  or 4 rounds of 491 steps (two fewer); default_1x400: one round, so
  one-shot pruning and all 3,528 steps after it; default_t2 and
  default_t8: distillation temperature 2 or 8 instead of 4; default_a05:
  the task loss and distillation weighed equally (alpha 0.5, not 0);
  default_cap50 and default_flops_cap50: the default recipe ("auto", or
  "flops") with `max_pruning_ratio=0.5`, so that no layer loses more than
  half its units (the architecture the allocation picks, issue 27);
  default_feat1 and default_feat10: the default recipe, whose final epochs
  also match each residual block's output (the `_relu2` layers) to the
  unpruned model's on the channels it kept, a squared error relative to
  the teacher's mean square, averaged over the 9 blocks and weighed 1 or
  10 against the distillation loss (a probe of feature distillation, run
  by this script, not by `prune`; the rounds' steps do not see it).

The singe and taylor rows score 64 training images per round; the default
rows, the default criterion's 256. Each seed changes
the data order (so the scoring images) and Keras's seeds. Top-1 on all
10,000 test images. Results go to benchmarks/results/recovery_resnet20.json
after every run (an interrupted run resumes). Rows run seed by seed, the
50% target first.

    python benchmarks/recovery.py                       # everything (~7 h on 2 cores)
    python benchmarks/recovery.py --rows control,singe_bn_kd --targets 0.5 --seeds 0

`--final-epochs 4` gives every row 4 final epochs
instead of 1: 3,528 steps, 4.5 epochs in all, for the issue's goal of
recovery within 5 epochs; with `--round-steps 194` too, 3,904 steps, 5.0
epochs. `--learning-rate` sets every row's peak learning rate, the
control's included, and `--batch-size` every row's batch (with
`--batch-size 32 --round-steps 200`, the same 4.5 epochs in twice the
steps); `--augmentation crop` fine-tunes every row on random
crops (4-pixel reflect padding) and flips, as the model was trained,
instead of flips alone, and `--augmentation none` on the images as they
are. Each of these flags needs another `--output`: a
file refuses runs of another budget.
"""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "examples"))
import cifar10_data  # noqa: E402

LONG_MODEL = os.path.join(cifar10_data.SHARED, "models", "resnet20_cifar10_long.keras")
LEARNING_RATE = 0.01
SCORING_SAMPLES = 64
# row: (criterion, BatchNorm re-estimation, distillation, labels, normalization).
# The rows before issue 27 spell out what the defaults then were (20 batches
# after every round, distillation alpha 0.5, the criterion's "mean"); None
# leaves the choice to `prune` (its default recipe, issue 27).
ROWS = {
    "singe_bn_kd": ("singe", True, True, True, "mean"),
    "taylor_bn_kd": ("taylor", True, True, True, "mean"),
    "l1_bn_kd": ("l1", True, True, True, "mean"),
    "singe_bn": ("singe", True, False, True, "mean"),
    "singe_kd": ("singe", False, True, True, "mean"),
    "singe": ("singe", False, False, True, "mean"),
    "singe_label_free_kd": ("singe", True, True, False, "mean"),
    "singe_flops_bn_kd": ("singe", True, True, True, "flops"),
    "l1_label_free_kd": ("l1", True, True, False, "mean"),
    "default": ("singe_default", None, None, True, None),
    "l1_default": ("l1", None, None, True, None),
    "l1_default_mean": ("l1", None, None, True, "mean"),
    "default_mean": ("singe_default", None, None, True, "mean"),
    "default_6x197": ("singe_default", None, None, True, None),
    "default_4x491": ("singe_default", None, None, True, None),
    "default_1x400": ("singe_default", None, None, True, None),
    "default_t2": ("singe_default", None, {"temperature": 2.0}, True, None),
    "default_t8": ("singe_default", None, {"temperature": 8.0}, True, None),
    "default_a05": ("singe_default", None, {"alpha": 0.5}, True, None),
    "default_cap50": ("singe_default", None, None, True, None),
    "default_flops_cap50": ("singe_default", None, None, True, "flops"),
    "default_feat1": ("singe_default", None, None, True, None),
    "default_feat10": ("singe_default", None, None, True, None),
}
# row: its `max_pruning_ratio` where not None (no layer loses more than this share).
MAX_PRUNING_RATIO = {"default_cap50": 0.5, "default_flops_cap50": 0.5}
# row: the weight of its feature-distillation term in the final epochs.
FEATURE_WEIGHT = {"default_feat1": 1.0, "default_feat10": 10.0}
FEATURE_LAYERS = [f"s{stage}b{block}_relu2" for stage in (1, 2, 3) for block in (1, 2, 3)]
# row: (rounds, final epochs moved into the rounds) where not (ROUNDS, 0); the
# steps between rounds fill the rest of the same budget.
SCHEDULES = {"default_6x197": (6, 1), "default_4x491": (4, 2), "default_1x400": (1, 0)}
# What a results file from before each budget flag ran with.
BEFORE_FLAGS = {"round_steps": 100, "learning_rate": LEARNING_RATE, "augmentation": "flip",
                "batch_size": 64}
# --augmentation: how the reports name each choice.
AUGMENTATION = {"none": "no augmentation", "flip": "random flips",
                "crop": "random crops and flips"}
RECALIBRATION = {True: 20, False: 0, None: None}
DISTILLATION = {True: {"alpha": 0.5}, False: False, None: None}


def criterion_config(name, seed):
    if name == "singe_default":  # the default criterion, seeded like the run
        return {"class_name": "singe", "config": {"seed": seed}}
    if name == "singe":
        return {"class_name": "singe", "config": {"samples": SCORING_SAMPLES, "seed": seed}}
    if name == "taylor":
        return {"class_name": "taylor", "config": {"samples": SCORING_SAMPLES}}
    return name


def schedule(row, round_steps, final_epochs, epoch_steps):
    """`(rounds, steps between rounds, final epochs)` of `row`, all rows the same budget.

    The budget: `ROUNDS` rounds of `round_steps`, then `final_epochs`.
    """
    from cifar10 import ROUNDS

    rounds, moved = SCHEDULES.get(row, (ROUNDS, 0))
    steps, remainder = divmod(ROUNDS * round_steps + moved * epoch_steps, rounds)
    if remainder or moved > final_epochs:
        raise ValueError(f"{row}'s schedule does not fit the budget of the other rows")
    return rounds, steps, final_epochs - moved


def feature_fine_tuning(pruned, report, teacher, data, optimizer, step, epochs, weight):
    """`epochs` epochs of `pruned` on distillation plus `weight` x feature matching.

    Each of `FEATURE_LAYERS` in `pruned` is matched to the same layer of
    `teacher` on the channels it kept (`report.layers`), by the squared
    error relative to the teacher's mean square; the terms are averaged.
    The optimizer's schedule continues at `step`, as `prune`'s does.
    """
    import functools

    import keras
    import numpy as np
    import tensorflow as tf

    import singe_keras
    from singe_keras import compiling

    def features(model):
        return keras.Model(model.inputs, [model.output, *(model.get_layer(name).output
                                                          for name in FEATURE_LAYERS)])

    kept = [np.array(report.layers[name]["kept_outputs"]) for name in FEATURE_LAYERS]
    for name, channels in zip(FEATURE_LAYERS, kept):
        if pruned.get_layer(name).output.shape[-1] != len(channels):
            raise ValueError(f"{name}: {len(channels)} kept channels in the report, "
                             f"{pruned.get_layer(name).output.shape[-1]} in the model")

    class FeatureDistiller(keras.Model):
        def __init__(self):
            super().__init__()
            self.student = features(pruned)
            self._teacher = functools.partial(features(teacher), training=False)
            self.distillation_loss = singe_keras.DistillationLoss("logits", 4.0)

        def call(self, inputs, training=None):
            return self.student(inputs, training=training)[0]

        def train_step(self, data):
            x = data[0]
            targets = [tf.stop_gradient(t) for t in self._teacher(x)]
            with tf.GradientTape() as tape:
                outputs = self.student(x, training=True)
                distillation = self.distillation_loss(targets[0], outputs[0])
                matching = tf.add_n([
                    tf.reduce_mean(tf.square(s - tf.gather(t, channels, axis=-1)))
                    / tf.reduce_mean(tf.square(t))
                    for s, t, channels in zip(outputs[1:], targets[1:], kept)]) / len(kept)
                loss = distillation + weight * matching
            variables = self.student.trainable_variables
            self.optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
            return {"loss": loss, "distillation": distillation, "matching": matching}

    distiller = FeatureDistiller()
    compiling.compile_fresh(distiller, {"optimizer": optimizer, "loss": None}, step)
    distiller.fit(data, epochs=epochs, shuffle=False, verbose=2)


def recorded_budget(baseline_cell):
    """The budget a results file's runs had, from its baseline cell."""
    return {"finetune_steps_per_row": baseline_cell["finetune_steps_per_row"],
            **{key: baseline_cell.get(key, value) for key, value in BEFORE_FLAGS.items()}}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default=",".join(["control", *ROWS]))
    parser.add_argument("--targets", default="0.5,0.35")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--data", default=cifar10_data.SHARED_DATA)
    parser.add_argument("--model", default=LONG_MODEL)
    parser.add_argument("--learning-rate", type=float, default=LEARNING_RATE,
                        help="peak of every row's cosine learning rate (default: 0.01)")
    parser.add_argument("--augmentation", choices=tuple(AUGMENTATION), default="flip",
                        help="fine-tuning augmentation: none, flips, or 4-pixel reflect-pad crops "
                             "and flips as the model was trained (default: flip)")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="fine-tuning batch size of every row (default: the benchmark's 64)")
    parser.add_argument("--round-steps", type=int, default=None,
                        help="fine-tuning steps after each of the 4 rounds (default: the "
                             "benchmark's 100)")
    parser.add_argument("--final-epochs", type=int, default=None,
                        help="final fine-tuning epochs of every row (default: the benchmark's 1)")
    parser.add_argument("--output", default=os.path.join(
        os.path.dirname(__file__), "results", "recovery_resnet20.json"))
    args = parser.parse_args()
    cifar10_data.quiet_tensorflow()

    import keras

    import singe_keras
    from cifar10 import (BATCH, FINAL_EPOCHS, FINETUNE_STEPS, ROUNDS, Results, accuracy,
                         pruned_record, training_dataset)
    from singe_keras import criteria

    results = Results(args.output)
    train = cifar10_data.load_split(args.data, "train")
    test = cifar10_data.load_split(args.data, "test")
    baseline = keras.models.load_model(args.model)
    final_epochs = FINAL_EPOCHS if args.final_epochs is None else args.final_epochs
    batch_size = BATCH if args.batch_size is None else args.batch_size
    epoch_steps = -(-len(train[0]) // batch_size)
    round_steps = FINETUNE_STEPS if args.round_steps is None else args.round_steps
    steps = ROUNDS * round_steps + final_epochs * epoch_steps
    budget = {"finetune_steps_per_row": steps, "round_steps": round_steps,
              "learning_rate": args.learning_rate, "augmentation": args.augmentation,
              "batch_size": batch_size}
    recorded = recorded_budget(results.get("recovery", "baseline") or budget)
    if recorded != budget:
        parser.error(f"{args.output} holds runs of {recorded}; these flags give {budget}: "
                     "pass another --output")

    def optimizer():
        schedule = keras.optimizers.schedules.CosineDecay(args.learning_rate, steps)
        return keras.optimizers.SGD(schedule, momentum=0.9, nesterov=True)

    if results.get("recovery", "baseline") is None:
        results.put("recovery", "baseline", {
            "test_accuracy": accuracy(baseline, *test), **budget})
    rows = args.rows.split(",")
    for seed in map(int, args.seeds.split(",")):
        keys = [f"control/seed{seed}"] if "control" in rows else []
        keys += [f"{row}/flops{target}/seed{seed}"
                 for target in args.targets.split(",") for row in rows if row != "control"]
        for key in keys:
            if results.get("recovery", key) is not None:
                continue
            keras.utils.set_random_seed(seed)
            data = training_dataset(train, seed, args.augmentation, batch_size)
            started = time.perf_counter()
            if key.startswith("control/"):
                model = keras.models.clone_model(baseline)
                model.set_weights(baseline.get_weights())
                model.compile(optimizer(), baseline.loss)
                model.fit(data.repeat(), steps_per_epoch=steps, epochs=1, verbose=2)
                results.put("recovery", key, {
                    "test_accuracy": accuracy(model, *test), "flops_ratio": 1.0,
                    "seconds": time.perf_counter() - started})
                continue
            row, target = key.split("/")[0], float(key.split("/")[1][len("flops"):])
            name, recalibrate, distill, labels, normalization = ROWS[row]
            criterion = criteria.get(criterion_config(name, seed))
            distillation = distill if isinstance(distill, dict) else DISTILLATION[distill]
            rounds, row_steps, row_final_epochs = schedule(row, round_steps, final_epochs,
                                                           epoch_steps)
            pruned, report = singe_keras.prune(
                baseline, data if labels else data.map(lambda x, y: x),
                target_flops=target, criterion=criterion, normalization=normalization,
                rounds=rounds, finetune_steps=row_steps,
                final_epochs=0 if row in FEATURE_WEIGHT else row_final_epochs,
                batch_size=batch_size, max_pruning_ratio=MAX_PRUNING_RATIO.get(row),
                optimizer=optimizer(), recalibration_batches=RECALIBRATION[recalibrate],
                distillation=distillation, seed=seed, verbose=1,
                return_report=True,
            )
            if row in FEATURE_WEIGHT:
                feature_fine_tuning(pruned, report, baseline, data, optimizer(),
                                    rounds * row_steps, row_final_epochs, FEATURE_WEIGHT[row])
            record = pruned_record(pruned, report, baseline, criterion, test, started)
            record["normalization"] = normalization or [r.get("normalization")
                                                        for r in report.rounds[:rounds]]
            record["filters"] = {layer.name: layer.filters for layer in pruned.layers
                                 if hasattr(layer, "filters")}
            results.put("recovery", key, record)


if __name__ == "__main__":
    main()
