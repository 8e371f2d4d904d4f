"""Tables (markdown) and a plot (PNG) from benchmarks/results/cifar10_resnet20.json.

    python benchmarks/cifar10_report.py

Writes benchmarks/results/cifar10_resnet20.md and cifar10_resnet20.png.
"""

import collections
import json
import os

import numpy as np

RESULTS = os.path.join(os.path.dirname(__file__), "results")
CRITERIA = ("singe", "taylor", "l1", "bn_scale", "random")


def _mean_std(values):
    values = np.asarray(values) * 100
    return f"{values.mean():.1f} ± {values.std():.1f}" if len(values) > 1 else f"{values[0]:.1f}"


def part1_table(part1):
    cells = collections.defaultdict(list)
    for key, value in part1.items():
        if key == "baseline":
            continue
        name, target, rounds, _ = key.split("/")
        cells[name, target, rounds].append(value)
    lines = [
        "| criterion | FLOPs | rounds | top-1 (%) | top-1, BN re-estimated (%) | seeds |",
        "|---|---|---|---|---|---|",
    ]
    for name in CRITERIA:
        for target in ("flops0.5", "flops0.35"):
            for rounds in ("rounds1", "rounds4"):
                runs = cells.get((name, target, rounds))
                if not runs:
                    continue
                lines.append(
                    f"| {name} | {target[5:]} | {rounds[6:]} | "
                    f"{_mean_std([r['accuracy'] for r in runs])} | "
                    f"{_mean_std([r['accuracy_bn_recalibrated'] for r in runs])} | {len(runs)} |"
                )
    return "\n".join(lines)


def part2_table(part2):
    lines = [
        "| run | criterion | rounds x steps + final epochs | test top-1 (%) | FLOPs (M) | params | scoring (s) | total (s) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for key, r in part2.items():
        lines.append(
            f"| {key} | {r['criterion']} | {r['rounds']} x {r['finetune_steps_per_round']}"
            f" + {r['final_epochs']} | {100 * r['test_accuracy']:.2f} | {r['flops'] / 1e6:.1f} | "
            f"{r['params']:,} | {r['scoring_seconds']:.0f} | {r['seconds']:.0f} |"
        )
    return "\n".join(lines)


def part3_table(part3):
    lines = ["| model | format | size (KB) | test top-1 (%) |", "|---|---|---|---|"]
    for key, r in part3.items():
        model, precision = key.split("/")
        lines.append(f"| {model} | {precision} | {r['bytes'] / 1024:.1f} | "
                     f"{100 * r['test_accuracy']:.2f} |")
    return "\n".join(lines)


def part4_table(part4):
    cells = collections.defaultdict(list)
    for key, value in part4.items():
        steps, normalization, target, _ = key.split("/")
        cells[steps, normalization, target].append(value)
    lines = [
        "| K (steps) | normalization | FLOPs | top-1, BN re-estimated (%) | seconds | seeds |",
        "|---|---|---|---|---|---|",
    ]
    order = lambda cell: (cell[0][1], int(cell[0][0][5:]), float(cell[0][2][5:]))
    for (steps, normalization, target), runs in sorted(cells.items(), key=order):
        lines.append(
            f"| {steps[5:]} | {normalization} | {target[5:]} | "
            f"{_mean_std([r['accuracy_bn_recalibrated'] for r in runs])} | "
            f"{np.mean([r['seconds'] for r in runs]):.0f} | {len(runs)} |"
        )
    return "\n".join(lines)


def plot(part1, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    baseline = part1["baseline"]["accuracy"]
    for axis, rounds in zip(axes, ("rounds1", "rounds4")):
        for name in CRITERIA:
            xs, means, stds = [], [], []
            for target in ("flops0.35", "flops0.5"):
                runs = [v for k, v in part1.items()
                        if k.startswith(f"{name}/{target}/{rounds}/")]
                if runs:
                    xs.append(float(target[5:]))
                    values = [100 * r["accuracy_bn_recalibrated"] for r in runs]
                    means.append(np.mean(values))
                    stds.append(np.std(values))
            axis.errorbar(xs, means, yerr=stds, marker="o", capsize=3, label=name)
        axis.axhline(100 * baseline, color="gray", linestyle="--", label="unpruned")
        axis.set_title(f"no fine-tuning, {rounds[6:]} round(s), BN re-estimated")
        axis.set_xlabel("FLOPs kept (fraction)")
    axes[0].set_ylabel("CIFAR-10 test top-1 (%)")
    axes[1].legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)


def main():
    with open(os.path.join(RESULTS, "cifar10_resnet20.json")) as f:
        results = json.load(f)
    sections = [
        "# CIFAR-10 ResNet-20: SInGE against the baselines",
        "Runs: " + "; ".join(
            f"`{run['command']}` (commit `{run['git_commit'][:10]}`)"
            + (f": {run['produced']}" if "produced" in run else "")
            for run in results.get("runs", [])
        ) + f". Machine: {results['environment']['machine']}; TensorFlow "
        f"{results['environment']['tensorflow']}, Keras {results['environment']['keras']}.",
        "Part 1, part 2 and part 4 at 50% FLOPs/seed 0 ran with the defaults of the time, "
        "K = 8 and normalization 'l2' (part 2 also at K = 8, 'l2'); part 4 compares the "
        "options explicitly.",
        f"Unpruned test top-1 on the 2,000-image subset: "
        f"{100 * results['part1']['baseline']['accuracy']:.2f}%.",
        "## 1. Criteria without fine-tuning (2,000 test images)",
        part1_table(results["part1"]),
    ]
    if "part2" in results:
        sections += ["## 2. With fine-tuning at 50% FLOPs (10,000 test images)",
                     part2_table(results["part2"])]
    if "part3" in results:
        sections += ["## 3. TFLite", part3_table(results["part3"])]
    if "part4" in results:
        sections += ["## 4. singe options (one round, no fine-tuning, 2,000 test images)",
                     part4_table(results["part4"])]
    with open(os.path.join(RESULTS, "cifar10_resnet20.md"), "w") as f:
        f.write("\n\n".join(sections) + "\n")
    plot(results["part1"], os.path.join(RESULTS, "cifar10_resnet20.png"))


if __name__ == "__main__":
    main()
