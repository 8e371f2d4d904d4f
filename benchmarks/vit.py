"""Attention heads and MLP units of a CIFAR-10 ViT: singe vs taylor vs random.

The ViT of `train_vit.py` (benchmarks/results/vit_cifar10.keras) is pruned
in one round to 0.7 of its FLOPs without fine-tuning:
`prune(model, data, target_flops=0.7, criterion=..., rounds=1,
finetune_steps=0)`, where `data` is a draw of 256 training images (the
criteria's default sample count) that changes with the seed, as do the
random criterion and SInGE's random gate paths. Top-1 on all 10,000 test
images, 3 seeds, and how many heads and MLP units each block kept. Results
go to a JSON file after every run, so an interrupted run resumes.

    python benchmarks/train_vit.py
    python benchmarks/vit.py
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "examples"))
import cifar10_data  # noqa: E402

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
CRITERIA = {
    "singe": lambda seed: {"class_name": "singe", "config": {"seed": seed}},
    "taylor": lambda seed: "taylor",
    "random": lambda seed: {"class_name": "random", "config": {"seed": seed}},
}
SEEDS = (0, 1, 2)
TARGET = 0.7
SCORING_SAMPLES = 256


def kept_units(model):
    """Per block, the heads of its attention and the hidden units of its MLP."""
    import keras

    kept = {}
    for layer in model.layers:
        if isinstance(layer, keras.layers.MultiHeadAttention):
            kept[layer.name] = layer.num_heads
        elif isinstance(layer, keras.layers.Dense) and layer.name.endswith("_mlp1"):
            kept[layer.name] = layer.units
    return kept


def markdown(data, command):
    """The report of the results JSON: accuracy mean ± std, kept heads and units."""
    import numpy as np

    vit = data["vit"]
    base = vit["baseline"]
    blocks = sorted(k for k in base["kept"] if k.endswith("_attention"))
    lines = [
        "# Heads and MLP units of a CIFAR-10 ViT at 0.7 of the FLOPs\n",
        f"Command: `{command}` (one round, no fine-tuning; {SCORING_SAMPLES} scoring "
        "images drawn by the seed; top-1 on all 10,000 test images). Model "
        f"`{base['model']}`: {base['accuracy']:.2%} unpruned, {base['flops']:,} FLOPs, "
        f"{base['prunable_flops_share']:.1%} of them in prunable layers.\n",
        "| criterion | top-1 (mean ± std) | per seed | FLOPs kept | scoring s |",
        "|---|---|---|---|---|",
    ]
    runs = {}
    for key, value in vit.items():
        if key != "baseline":
            runs.setdefault(key.split("/")[0], []).append((key, value))
    for name, entries in runs.items():
        acc = np.array([v["accuracy"] for _, v in entries])
        lines.append(
            f"| {name} | {100 * acc.mean():.2f} ± {100 * acc.std(ddof=1 if len(acc) > 1 else 0):.2f} | "
            + ", ".join(f"{100 * a:.2f}" for a in acc)
            + f" | {np.mean([v['flops_ratio'] for _, v in entries]):.3f} | "
            + f"{np.mean([v['scoring_seconds'] for _, v in entries]):.0f} |"
        )
    header = " | ".join(f"{b.split('_')[0]} heads / MLP" for b in blocks)
    lines += ["", "Heads (of "
              f"{base['kept'][blocks[0]]}) and MLP hidden units (of "
              f"{base['kept'][blocks[0].replace('_attention', '_mlp1')]}) kept per block:\n",
              f"| run | {header} |", "|---|" + "---|" * len(blocks)]
    for name, entries in runs.items():
        for key, value in entries:
            cells = " | ".join(
                f"{value['kept'][b]} / {value['kept'][b.replace('_attention', '_mlp1')]}"
                for b in blocks
            )
            lines.append(f"| {key} | {cells} |")
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=os.path.join(RESULTS, "vit_cifar10.keras"))
    parser.add_argument("--output", default=os.path.join(RESULTS, "vit_cifar10.json"))
    parser.add_argument("--criteria", default=",".join(CRITERIA))
    parser.add_argument("--seeds", default=",".join(map(str, SEEDS)))
    parser.add_argument("--data", default=cifar10_data.SHARED_DATA,
                        help="the CIFAR-10 .npz copy (../shared/data/README.md)")
    args = parser.parse_args()

    import keras
    import numpy as np

    from cifar10 import Results, accuracy
    import results_io
    import singe_keras

    results = Results(args.output)
    train = cifar10_data.load_split(args.data, "train")
    x_test, y_test = cifar10_data.load_split(args.data, "test")
    baseline = keras.models.load_model(args.model)
    total = singe_keras.count_flops(baseline)
    if results.get("vit", "baseline") is None:
        graph = singe_keras.trace(baseline)
        results.put("vit", "baseline", {
            "accuracy": accuracy(baseline, x_test, y_test), "flops": total,
            "prunable_flops_share": graph.prunable_flops_share(),
            "kept": kept_units(baseline), "model": os.path.basename(args.model),
        })
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    for name in args.criteria.split(","):
        for seed in map(int, args.seeds.split(",")):
            key = f"{name}/seed{seed}"
            if results.get("vit", key) is not None:
                continue
            draw = np.random.default_rng(seed).choice(len(train[0]), SCORING_SAMPLES, replace=False)
            pruned, report = singe_keras.prune(
                baseline, (train[0][draw], train[1][draw]), target_flops=TARGET,
                criterion=CRITERIA[name](seed), rounds=1, finetune_steps=0, loss=loss,
                seed=seed, return_report=True, verbose=0,
            )
            results.put("vit", key, {
                "accuracy": accuracy(pruned, x_test, y_test),
                "flops_ratio": singe_keras.count_flops(pruned) / total,
                "scoring_seconds": report.rounds[0]["scoring_seconds"],
                "kept": kept_units(pruned),
            })
    with open(args.output.rsplit(".", 1)[0] + ".md", "w") as f:
        f.write(markdown(results.data, results_io.environment()["command"]))


if __name__ == "__main__":
    main()
