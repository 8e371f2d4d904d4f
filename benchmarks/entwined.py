"""Entwined pruning and fine-tuning at 50% of the FLOPs, criteria side by side.

The pretrained ResNet-20 of ../shared/models is pruned by `singe_keras.prune`
with each criterion (configs of criteria_grid.py, 64 scoring images) and its
default normalization, in 4 rounds of 100 optimizer steps and one final
epoch (the CIFAR-10 benchmark's budget: SGD as the model was compiled, batch
64, random flips), BatchNorm statistics re-estimated after every rebuild
(prune's default). Each seed changes the data order (so the scoring images)
and Keras's seeds. Top-1 on all 10,000 test images; results after every run
go to benchmarks/results/entwined_resnet20.json (resumable).

    python benchmarks/entwined.py --criteria singe_group,fisher --seeds 0,1,2
"""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "examples"))
import cifar10_data  # noqa: E402

TARGET = 0.5


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--criteria", default="singe_group,fisher")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--data", default=cifar10_data.SHARED_DATA)
    parser.add_argument("--model", default=cifar10_data.PRETRAINED)
    parser.add_argument("--output", default=os.path.join(
        os.path.dirname(__file__), "results", "entwined_resnet20.json"))
    args = parser.parse_args()

    import keras

    import singe_keras
    from cifar10 import (BATCH, FINAL_EPOCHS, FINETUNE_STEPS, ROUNDS, Results, accuracy,
                         pruned_record, training_dataset)
    from criteria_grid import CRITERIA
    from singe_keras import criteria

    results = Results(args.output)
    train = cifar10_data.load_split(args.data, "train")
    test = cifar10_data.load_split(args.data, "test")
    baseline = keras.models.load_model(args.model)
    if results.get("entwined", "baseline") is None:
        results.put("entwined", "baseline", {"test_accuracy": accuracy(baseline, *test)})
    for seed in map(int, args.seeds.split(",")):
        for name in args.criteria.split(","):
            key = f"{name}/seed{seed}"
            if results.get("entwined", key) is not None:
                continue
            criterion = criteria.get(CRITERIA[name](seed))
            started = time.perf_counter()
            pruned, report = singe_keras.prune(
                baseline, training_dataset(train, seed), target_flops=TARGET,
                criterion=criterion, rounds=ROUNDS, finetune_steps=FINETUNE_STEPS,
                final_epochs=FINAL_EPOCHS, batch_size=BATCH, seed=seed, verbose=1,
                return_report=True,
            )
            results.put("entwined", key, {
                **pruned_record(pruned, report, baseline, criterion, test, started),
                "normalization": criterion.normalization,
            })


if __name__ == "__main__":
    main()
