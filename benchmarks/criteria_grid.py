"""Criterion x normalization grid: one-shot pruning without fine-tuning.

Issue 9's protocol: each criterion scores the units of a pretrained CIFAR-10
model once per draw of scoring images (3 draws of 64 training images; the
data-free criteria need one), then for every allocation normalization and
target the model is pruned in one round, its BatchNorm statistics are
re-estimated on 20 training batches (training mode), and top-1 is measured
on the first 2,000 test images. Every criterion sees the same draws, the
same normalizations and the same targets; results go to a JSON file after
every cell, so an interrupted run resumes.

    python benchmarks/criteria_grid.py --model resnet20
    python benchmarks/criteria_grid.py --model vgg
    python benchmarks/criteria_grid.py --model resnet20_long
"""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "examples"))
import cifar10_data  # noqa: E402

MODELS = {
    "resnet20": ("models", "resnet20_cifar10.keras"),
    "resnet20_long": ("models", "resnet20_cifar10_long.keras"),
    "vgg": (None, "vgg_cifar10.keras"),  # benchmarks/results, train_vgg.py
}
CRITERIA = {
    "l1": lambda seed: "l1",
    "l2": lambda seed: "l2",
    "group_l1": lambda seed: "group_l1",
    "bn_scale": lambda seed: "bn_scale",
    "random": lambda seed: {"class_name": "random", "config": {"seed": seed}},
    "taylor": lambda seed: {"class_name": "taylor", "config": {"samples": 64}},
    "fisher": lambda seed: {"class_name": "fisher", "config": {"samples": 64}},
    # Explicit configs: the results were measured when "singe" defaulted to
    # path="group", reduction="abs" (the defaults changed after this grid).
    "singe_group": lambda seed: {"class_name": "singe", "config": {
        "samples": 64, "path": "group", "reduction": "abs", "steps": 4}},
    "singe_random": lambda seed: {"class_name": "singe", "config": {
        "samples": 64, "path": "random", "reduction": "abs", "block_fraction": 0.5, "steps": 4,
        "seed": seed}},
    "singe_random_square": lambda seed: {"class_name": "singe", "config": {
        "samples": 64, "path": "random", "reduction": "square", "block_fraction": 0.5, "steps": 4,
        "seed": seed}},
    "singe_unit": lambda seed: {"class_name": "singe", "config": {
        "samples": 64, "path": "unit", "reduction": "abs", "steps": 4}},
    # Issue 23: blocks dealt across all groups (path="across"), K = 1, each
    # point read by its block's units (`read="block"`, explicit since the
    # default of "across" became "all").
    # `singe_random_square` above is the default before issue 23.
    "singe_across8": lambda seed: {"class_name": "singe", "config": {
        "samples": 64, "path": "across", "steps": 1, "block_fraction": 0.125,
        "blocks_per_sample": 8, "read": "block", "seed": seed}},
    "singe_across8_s2": lambda seed: {"class_name": "singe", "config": {
        "samples": 64, "path": "across", "steps": 1, "block_fraction": 0.125,
        "blocks_per_sample": 2, "read": "block", "seed": seed}},
    "singe_across8_s3": lambda seed: {"class_name": "singe", "config": {
        "samples": 64, "path": "across", "steps": 1, "block_fraction": 0.125,
        "blocks_per_sample": 3, "read": "block", "seed": seed}},
    "singe_across16_s2": lambda seed: {"class_name": "singe", "config": {
        "samples": 64, "path": "across", "steps": 1, "block_fraction": 0.0625,
        "blocks_per_sample": 2, "read": "block", "seed": seed}},
    # read="all": every unit reads the gradient of every point (the mean
    # over the sample's points), not only the units of the point's block.
    "singe_across8_s1_all": lambda seed: {"class_name": "singe", "config": {
        "samples": 64, "path": "across", "steps": 1, "block_fraction": 0.125,
        "blocks_per_sample": 1, "read": "all", "seed": seed}},
    "singe_across8_s2_all": lambda seed: {"class_name": "singe", "config": {
        "samples": 64, "path": "across", "steps": 1, "block_fraction": 0.125,
        "blocks_per_sample": 2, "read": "all", "seed": seed}},
    "singe_across4_s1_all": lambda seed: {"class_name": "singe", "config": {
        "samples": 64, "path": "across", "steps": 1, "block_fraction": 0.25,
        "blocks_per_sample": 1, "read": "all", "seed": seed}},
    "singe_across4_s1": lambda seed: {"class_name": "singe", "config": {
        "samples": 64, "path": "across", "steps": 1, "block_fraction": 0.25,
        "blocks_per_sample": 1, "read": "block", "seed": seed}},
}
DATA_FREE = ("l1", "l2", "group_l1", "bn_scale")
# "sum" is left out: it ranks like "l2" (both divide by a statistic that grows
# with the group's width) and shrank ResNet-20's stage 3 to 1-6 channels.
NORMALIZATIONS = ("none", "mean", "max", "gaussian", "l2", "flops")
# "auto" (issue 27, run on request): the plan of "mean", "flops" or "gaussian"
# with the lowest loss on HELD_OUT training images (BatchNorm re-estimated on
# them), as `prune` chooses; the images just before the re-estimation ones.
TARGETS = (0.5, 0.35)
SEEDS = (0, 1, 2)
SCORING_SAMPLES = 64
EVAL_SUBSET = 2000
RECALIBRATION_BATCHES = 20
BATCH = 64


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=sorted(MODELS), default="resnet20")
    parser.add_argument("--criteria", default=",".join(c for c in CRITERIA if c != "singe_unit"),
                        help="singe_unit (the exact path, ~30x the group path's time) "
                        "is run on request only")
    parser.add_argument("--normalizations", default=",".join(NORMALIZATIONS))
    parser.add_argument("--seeds", default=",".join(map(str, SEEDS)))
    parser.add_argument("--data", default=cifar10_data.SHARED_DATA,
                        help="the CIFAR-10 .npz copy (../shared/data/README.md)")
    parser.add_argument("--scoring-samples", type=int, default=SCORING_SAMPLES,
                        help="scoring images per draw; every data criterion then scores "
                        "on all of them (issue 23: the defaults' own 256)")
    parser.add_argument("--output", default=None)
    args = parser.parse_args()

    import keras
    import numpy as np

    from cifar10 import Results, accuracy
    import singe_keras
    from singe_keras import allocation, criteria, selection
    from singe_keras.surgery import rebuild

    folder, name = MODELS[args.model]
    path = (os.path.join(cifar10_data.SHARED, folder, name) if folder
            else os.path.join(os.path.dirname(__file__), "results", name))
    suffix = "" if args.scoring_samples == SCORING_SAMPLES else f"_samples{args.scoring_samples}"
    output = args.output or os.path.join(
        os.path.dirname(__file__), "results", f"criteria_grid_{args.model}{suffix}.json")
    results = Results(output)
    print("decoding CIFAR-10 ...", flush=True)
    train = cifar10_data.load_split(args.data, "train")
    x_test, y_test = cifar10_data.load_split(args.data, "test", EVAL_SUBSET)
    recalibration = train[0][-RECALIBRATION_BATCHES * BATCH:]
    held_out = slice(-RECALIBRATION_BATCHES * BATCH - selection.HELD_OUT,
                     -RECALIBRATION_BATCHES * BATCH)
    held_out = selection.held_out_batches((train[0][held_out], train[1][held_out]), 0)
    baseline = keras.models.load_model(path)
    graph = singe_keras.trace(baseline)
    total = singe_keras.count_flops(baseline)
    loss_fn = criteria.resolve_loss(None, baseline)
    if results.get("grid", "baseline") is None:
        results.put("grid", "baseline", {"accuracy": accuracy(baseline, x_test, y_test),
                                         "flops": total, "model": name})

    for criterion_name in args.criteria.split(","):
        for seed in map(int, args.seeds.split(",")):
            if seed > 0 and criterion_name in DATA_FREE:
                continue  # no scoring draw: the same for every seed
            cells = [(n, t) for n in args.normalizations.split(",") for t in TARGETS
                     if results.get("grid", f"{criterion_name}/{n}/flops{t}/seed{seed}") is None]
            if not cells:
                continue
            draw = np.random.default_rng(seed).choice(len(train[0]), args.scoring_samples,
                                                      replace=False)
            criterion = criteria.get(CRITERIA[criterion_name](seed))
            if criterion.needs_data:
                criterion.samples = args.scoring_samples
            started = time.perf_counter()
            relevance = singe_keras.score(graph, (train[0][draw], train[1][draw]), criterion).flat()
            scoring_seconds = time.perf_counter() - started
            for normalization, target in cells:
                def allocate(normalization, target=target):
                    return allocation.allocate(graph, relevance, target * total,
                                               normalization=normalization)

                chosen = None
                if normalization == "auto":
                    chosen, plan, losses = selection.choose(graph, allocate, held_out, loss_fn)
                else:
                    plan = allocate(normalization)
                pruned = rebuild(graph, plan)
                singe_keras.recalibrate_batchnorm(pruned, recalibration,
                                                  batches=RECALIBRATION_BATCHES, batch_size=BATCH)
                results.put("grid", f"{criterion_name}/{normalization}/flops{target}/seed{seed}", {
                    "accuracy": accuracy(pruned, x_test, y_test),
                    "flops_ratio": singe_keras.count_flops(pruned) / total,
                    "scoring_seconds": scoring_seconds,
                    "min_channels": int(min(len(k) for k in plan.keep.values())),
                    **({"chosen": chosen, "held_out_losses": losses} if chosen else {}),
                })


if __name__ == "__main__":
    main()
