"""The table of recovery.py's JSON: every row at every target, against the control.

    python benchmarks/recovery_report.py benchmarks/results/recovery_resnet20.json

Writes a Markdown file next to the JSON: top-1 mean ± std over the seeds
that finished (with the seed count and each seed's value), and the gap to
the control (the unpruned model fine-tuned with the same budget).
"""

import collections

import numpy as np

import criteria_grid_report
from recovery import (AUGMENTATION, FEATURE_WEIGHT, MAX_PRUNING_RATIO, ROWS, SCHEDULES,
                      recorded_budget)


def description(row):
    name, recalibrate, distill, labels, normalization = ROWS[row]
    if recalibrate is None:  # the library's default recipe, or one part changed
        rounds, moved = SCHEDULES.get(row, (None, 0))
        distill = {"alpha": 0, "temperature": 4, **(distill or {})}
        return (f"{'singe' if name == 'singe_default' else name}, `prune`'s default recipe "
                + ("(distillation only" if distill["alpha"] == 0
                   else f"(task loss and distillation, alpha {distill['alpha']:g}")
                + f" at T = {distill['temperature']:g}, BN re-estimated only where no "
                f'fine-tuning follows, "{normalization or "auto"}" normalization)'
                + (f", {rounds} round{'s' * (rounds > 1)} sharing the 4 rounds' steps"
                   f" and {moved} of the final epochs" if rounds else "")
                + (f", max_pruning_ratio {MAX_PRUNING_RATIO[row]:g}"
                   if row in MAX_PRUNING_RATIO else "")
                + (f", final epochs also matching the 9 block outputs to the teacher's"
                   f" kept channels, weight {FEATURE_WEIGHT[row]:g}"
                   if row in FEATURE_WEIGHT else ""))
    recovery = [text for text, on in (("BN re-estimation", recalibrate),
                                      ("distillation (alpha 0.5)", distill)) if on]
    return ", ".join([name] + [f'"{normalization}" normalization']
                     + ([] if labels else ["label-free (inputs only)"])
                     + (recovery or ["neither BN re-estimation nor distillation"]))


def report(results):
    runs = results["recovery"]
    budget = recorded_budget(runs["baseline"])
    cells = collections.defaultdict(dict)  # (row, target) -> {seed: accuracy}
    for key, value in runs.items():
        if key == "baseline":
            continue
        parts = key.split("/")
        target = "control" if parts[0] == "control" else parts[1][len("flops"):]
        cells[parts[0], target][parts[-1]] = value["test_accuracy"]
    control = cells.get(("control", "control"), {})
    targets = sorted({t for _, t in cells if t != "control"}, key=float, reverse=True)
    lines = [
        "# Accuracy recovery: ResNet-20 (30 epochs, 85.1%) pruned and fine-tuned",
        "",
        f"Unpruned: {100 * runs['baseline']['test_accuracy']:.2f}% top-1 on all 10,000 test "
        f"images. Every row: {budget['finetune_steps_per_row']} optimizer steps "
        f"(4 rounds x {budget['round_steps']}, then whole epochs; batch "
        f"{budget['batch_size']}), SGD Nesterov 0.9, lr {budget['learning_rate']} cosine to 0, "
        f"{AUGMENTATION[budget['augmentation']]}. "
        "Mean ± std over the seeds that finished (n); per-seed values after n; "
        "gap = mean - the control's mean.",
        "",
        "Runs (`cd benchmarks`, then):",
        "",
        *criteria_grid_report.run_lines(results),
        "",
        "| row | " + " | ".join(f"{float(t):.0%} FLOPs | gap" for t in targets) + " |",
        "|---" * (2 * len(targets) + 1) + "|",
    ]

    def cell(values):
        if not values:
            return ["", ""]
        ordered = [values[k] for k in sorted(values)]
        seeds = ", ".join(f"{100 * v:.2f}" for v in ordered)
        gap = (f"{100 * (np.mean(ordered) - np.mean(list(control.values()))):+.2f}"
               if control else "")
        mean, std = 100 * np.mean(ordered), 100 * np.std(ordered)
        return [f"{mean:.2f} ± {std:.2f} (n={len(ordered)}: {seeds})", gap]

    if control:
        lines.append("| control: unpruned, fine-tuned | " + " | ".join(
            cell(control)[0] + " | 0" for _ in targets) + " |")
    for row in ROWS:
        if any((row, t) in cells for t in targets):
            lines.append(f"| {description(row)} | " + " | ".join(
                " | ".join(cell(cells.get((row, t), {}))) for t in targets) + " |")
    for target in targets:  # at equal FLOPs: does recovery follow the parameters kept?
        pruned = [(run["params"], run["test_accuracy"]) for key, run in runs.items()
                  if key.split("/")[1:2] == [f"flops{target}"]]
        if len(pruned) > 2:
            params, accuracies = np.array(pruned).T
            lines += ["", f"At {float(target):.0%} of the FLOPs, over the {len(pruned)} pruned "
                      f"runs, the correlation of top-1 with the parameters kept is "
                      f"{np.corrcoef(params, accuracies)[0, 1]:.2f} ({params.min():,.0f} to "
                      f"{params.max():,.0f} parameters, {100 * accuracies.min():.2f} to "
                      f"{100 * accuracies.max():.2f}%)."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    criteria_grid_report.main(report)
