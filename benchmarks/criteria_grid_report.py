"""Tables of the criterion x normalization grid (criteria_grid.py's JSON).

    python benchmarks/criteria_grid_report.py benchmarks/results/criteria_grid_resnet20.json

Writes a Markdown file next to the JSON: for every criterion and target, the
mean ± standard deviation (over the draws of scoring images) of top-1 under
each normalization, the best normalization in bold, and a summary of each
criterion at its best normalization.
"""

import collections
import json
import sys

import numpy as np


def cells(results):
    """`{(criterion, normalization, target): [accuracy per seed]}` and the seconds."""
    table, seconds = collections.defaultdict(list), collections.defaultdict(list)
    for key, value in results["grid"].items():
        if key == "baseline":
            continue
        criterion, normalization, target, seed = key.split("/")
        table[criterion, normalization, float(target[len("flops"):])].append(value["accuracy"])
        seconds[criterion].append(value["scoring_seconds"])
    return table, seconds


def summary(values):
    values = 100 * np.asarray(values)
    return f"{values.mean():.1f} ± {values.std():.1f}" if len(values) > 1 else f"{values[0]:.1f}"


def run_lines(results):
    """A Markdown list of the invocations that wrote the results (cifar10.Results)."""
    return [f"- `{run['command']}` (commit {run['git_commit'][:7]})"
            + (f": {run['note']}" if "note" in run else "")
            for run in results.get("runs", [results["environment"]])]


def report(results):
    table, seconds = cells(results)
    criteria = list(dict.fromkeys(c for c, _, _ in table))
    normalizations = list(dict.fromkeys(n for _, n, _ in table))
    targets = sorted({t for _, _, t in table}, reverse=True)
    baseline = results["grid"]["baseline"]
    lines = [
        f"# Criterion x normalization: {baseline['model']}",
        "",
        f"Unpruned: {100 * baseline['accuracy']:.2f}% top-1 on the first 2,000 test images. "
        "One round, no fine-tuning, BatchNorm statistics re-estimated on 20 batches; "
        "mean ± std over 3 draws of 64 scoring images (data-free criteria: one value). "
        "Runs (`cd benchmarks`, then):",
        "",
    ] + run_lines(results) + [
        "",
        "## Each criterion at its best normalization",
        "",
        "| criterion | " + " | ".join(f"{int(t * 100)}% FLOPs (normalization)" for t in targets)
        + " | scoring seconds |",
        "|---" * (len(targets) + 2) + "|",
    ]
    for criterion in criteria:
        row = [criterion]
        for target in targets:
            options = {n: table[criterion, n, target] for n in normalizations
                       if (criterion, n, target) in table}
            best = max(options, key=lambda n: np.mean(options[n]))
            row.append(f"{summary(options[best])} ({best})")
        row.append(f"{np.mean(seconds[criterion]):.1f}")
        lines.append("| " + " | ".join(row) + " |")
    for target in targets:
        lines += ["", f"## {int(target * 100)}% of the FLOPs, every normalization", "",
                  "| criterion | " + " | ".join(normalizations) + " |",
                  "|---" * (len(normalizations) + 1) + "|"]
        for criterion in criteria:
            means = {n: np.mean(table[criterion, n, target]) for n in normalizations
                     if (criterion, n, target) in table}
            best = max(means, key=means.get) if means else None
            row = [criterion]
            for n in normalizations:
                if (criterion, n, target) not in table:
                    row.append("")
                    continue
                text = summary(table[criterion, n, target])
                row.append(f"**{text}**" if n == best else text)
            lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def main(report=report):
    """Writes `report(results)` of the JSON named on the command line next to it, as .md."""
    path = sys.argv[1]
    with open(path) as f:
        results = json.load(f)
    text = report(results)
    with open(path.replace(".json", ".md"), "w") as f:
        f.write(text)
    print(text)


if __name__ == "__main__":
    main()
