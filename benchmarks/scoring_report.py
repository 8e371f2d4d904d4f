"""Issue 23's time/quality table: SInGE estimators against Taylor, in one table.

Reads the criteria grids (criteria_grid.py's JSON: the saved ones, the
issue's own `_issue23` runs and the `_samples256` runs) and the per-sample
times (scoring_time.py's JSON), and writes
benchmarks/results/scoring_time_quality.md.

    python benchmarks/scoring_report.py
"""

import json
import os

import numpy as np

from criteria_grid_report import cells, summary

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
GRID_MODELS = ("resnet20", "resnet20_long", "vgg")
TIME_MODELS = ("resnet20", "mobilenetv2", "resnet50")
#: Rows: (label, grid criterion name, timing name, points per sample).
ROWS = (
    ("`taylor`", "taylor", "taylor", "1"),
    ("default before (`path=\"random\"`, halves of each group, K=4)",
     "singe_random_square", "singe_before", "8 per group"),
    ("8 blocks across groups, all 8 per sample, K=1", "singe_across8", "singe_across8", "8"),
    ("8 blocks across groups, 3 per sample, K=1", "singe_across8_s3", "singe_across8_s3", "3"),
    ("**new default**: 8 blocks across groups, 2 per sample, K=1",
     "singe_across8_s2", "singe", "2"),
)


def load(name):
    path = os.path.join(RESULTS, name)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def grid_table(suffixes):
    """`{(model, criterion, normalization, target): [accuracies]}`, later files first."""
    merged = {}
    for model in GRID_MODELS:
        for suffix in suffixes:
            results = load(f"criteria_grid_{model}{suffix}.json")
            if results is None:
                continue
            table, _ = cells(results)
            for (criterion, normalization, target), values in table.items():
                merged.setdefault((model, criterion, normalization, target), values)
    return merged


def cell(table, model, criterion, normalization, target):
    values = table.get((model, criterion, normalization, target))
    return summary(values) if values else "–"


def main():
    times = {m: load(f"scoring_time_{m}.json") for m in TIME_MODELS}
    for model in TIME_MODELS:  # the 3-blocks variant was timed in its own runs
        extra = load(f"scoring_time_{model}_s3.json")
        if extra and times[model]:
            for key in ("best_seconds_per_sample", "ratio_to_taylor"):
                times[model][key]["singe_across8_s3"] = extra[key]["singe_across8_s3"]
    lines = ["# SInGE estimators: time and quality (issue 23)", ""]
    for title, suffixes, normalization in (
        ("64 scoring images per draw (the grid's protocol)", ("_issue23", ""), "mean"),
        ("64 scoring images per draw, `flops` normalization", ("_issue23", ""), "flops"),
        ("256 scoring images per draw (the criteria's default `samples`)",
         ("_samples256",), "mean"),
    ):
        table = grid_table(suffixes)
        lines += [f"## Top-1 (%) after one-shot pruning: {title}", "",
                  f"Normalization `{normalization}`; mean ± std over 3 draws.", "",
                  "| estimator | points per sample | "
                  + " | ".join(f"{m} {t}%" for m in GRID_MODELS for t in (50, 35))
                  + " | s per sample, ResNet-20 | ratio to Taylor: "
                  + " / ".join(TIME_MODELS) + " |",
                  "|---" * (2 + 2 * len(GRID_MODELS) + 2) + "|"]
        for label, criterion, timing, points in ROWS:
            row = [label, points]
            row += [cell(table, m, criterion, normalization, t)
                    for m in GRID_MODELS for t in (0.5, 0.35)]
            resnet20 = times["resnet20"]
            row.append(f"{resnet20['best_seconds_per_sample'][timing]:.4f}"
                       if resnet20 and timing in resnet20["best_seconds_per_sample"] else "–")
            ratios = [f"{times[m]['ratio_to_taylor'][timing]:.1f}x"
                      if times[m] and timing in times[m]["ratio_to_taylor"] else "–"
                      for m in TIME_MODELS]
            row.append(" / ".join(ratios))
            lines.append("| " + " | ".join(row) + " |")
        lines.append("")
    lines += ["## Per-sample times (best of the repeats; tracing apart)", "",
              "| model | samples | trace and gate (s) | first call, Taylor / new default (s) | "
              "Taylor s/sample | new default s/sample | ratio (best) | ratio (median) | "
              "before s/sample | before ratio |",
              "|---" * 10 + "|"]
    for model in TIME_MODELS:
        t = times[model]
        if t is None:
            continue
        before = t["best_seconds_per_sample"].get("singe_before")
        lines.append("| " + " | ".join([
            model,
            f"{t['samples']['taylor']} (before: {t['samples'].get('singe_before', '–')})",
            f"{t['trace_and_gate_seconds']:.2f}",
            f"{t['first_call_seconds']['taylor']:.1f} / {t['first_call_seconds']['singe']:.1f}",
            f"{t['best_seconds_per_sample']['taylor']:.4f}",
            f"{t['best_seconds_per_sample']['singe']:.4f}",
            f"{t['ratio_to_taylor']['singe']:.2f}x",
            f"{t['median_ratio_to_taylor']['singe']:.2f}x",
            f"{before:.4f}" if before else "–",
            f"{t['ratio_to_taylor']['singe_before']:.0f}x" if before else "–",
        ]) + " |")
    full = load("scoring_full_resnet50.json")
    if full:
        lines += ["", f"ResNet50 at 224 px, default `singe`, {full['samples']} samples in full "
                  f"(`scoring_full_resnet50.json`): {full['score_seconds_first_call']:.0f} s "
                  f"scoring (its step's tracing included) + {full['trace_and_gate_seconds']:.1f} s "
                  f"tracing and gating; peak RSS {full['peak_rss_gib']:.2f} GiB."]
    text = "\n".join(lines) + "\n"
    with open(os.path.join(RESULTS, "scoring_time_quality.md"), "w") as f:
        f.write(text)
    print(text)


if __name__ == "__main__":
    main()
