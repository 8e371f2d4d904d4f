"""Issue 23's time/quality table: SInGE estimators against Taylor, in one table.

Reads the criteria grids (criteria_grid.py's JSON: the saved ones, the
issue's own `_issue23` runs and the `_samples256` runs) and the per-sample
times (scoring_time.py's JSON), and writes
benchmarks/results/scoring_time_quality.md.

    python benchmarks/scoring_report.py
"""

import json
import os

from criteria_grid_report import cells, summary

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
GRID_MODELS = ("resnet20", "resnet20_long", "vgg")
TIME_MODELS = ("resnet20", "mobilenetv2", "resnet50")
#: Rows: (label, grid criterion name, timing name, points per sample).
ROWS = (
    ("`taylor`", "taylor", "taylor", "1"),
    ("default before (`path=\"random\"`, halves of each group, K=4)",
     "singe_random_square", "singe_before", "8 per group"),
    ("**new default** (`path=\"across\"`): 8 blocks across groups, all 8 per sample, K=1",
     "singe_across8", "singe", "8"),
    ("the same, 3 of the 8 blocks per sample (`blocks_per_sample=3`)",
     "singe_across8_s3", "singe_across8_s3", "3"),
    ("the same, 2 of the 8 blocks per sample (`blocks_per_sample=2`)",
     "singe_across8_s2", "singe_across8_s2", "2"),
)
#: Timing files: the latest run (`scoring_time_<model>.json`, the default
#: `singe` as of this commit) first; earlier runs fill the other rows.
TIME_SUFFIXES = ("", "_s3", "_run1")


def criteria_label(config):
    """"8 blocks" or "2 of 8 blocks" for a serialized `singe`."""
    config = config["config"]
    count = round(1 / config["block_fraction"])
    chosen = config.get("blocks_per_sample")
    return f"{chosen} of {count} blocks" if chosen and chosen < count else f"{count} blocks"


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
    runs = {m: {x: load(f"scoring_time_{m}{x}.json") for x in TIME_SUFFIXES} for m in TIME_MODELS}
    times = {}
    for model in TIME_MODELS:
        merged = {"best_seconds_per_sample": {}, "ratio_to_taylor": {}}
        for suffix in TIME_SUFFIXES:
            run = runs[model][suffix]
            if run is None:
                continue
            for key in merged:
                for name, value in run[key].items():
                    if suffix and name in ("singe", "singe_across8"):
                        # the earlier runs timed the 2-blocks variant as
                        # "singe" (then the default), the current default
                        # as "singe_across8"
                        name = {"singe": "singe_across8_s2", "singe_across8": "singe"}[name]
                    merged[key].setdefault(name, value)
        times[model] = merged
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
    lines += ["## Per-sample times, every run (best of the repeats; tracing apart)", "",
              "| model | file (its `singe`) | samples | trace and gate (s) | "
              "first call, Taylor / `singe` (s) | Taylor s/sample | `singe` s/sample | "
              "ratio (best) | ratio (median) |",
              "|---" * 9 + "|"]
    for model in TIME_MODELS:
        for suffix in TIME_SUFFIXES:
            t = runs[model][suffix]
            if t is None:
                continue
            default = criteria_label(t["criteria"]["singe"])
            lines.append("| " + " | ".join([
                model, f"`scoring_time_{model}{suffix}.json` ({default})",
                ", ".join(f"{n} {k}" for n, k in t["samples"].items()),
                f"{t['trace_and_gate_seconds']:.2f}",
                f"{t['first_call_seconds']['taylor']:.1f} / {t['first_call_seconds']['singe']:.1f}",
                f"{t['best_seconds_per_sample']['taylor']:.4f}",
                f"{t['best_seconds_per_sample']['singe']:.4f}",
                f"{t['ratio_to_taylor']['singe']:.2f}x",
                f"{t['median_ratio_to_taylor']['singe']:.2f}x",
            ]) + " |")
    for suffix, label in (("", "default `singe`"), ("_s2", "`blocks_per_sample=2`")):
        full = load(f"scoring_full_resnet50{suffix}.json")
        if full:
            lines += ["", f"ResNet50 at 224 px, {label}, {full['samples']} samples in full "
                      f"(`scoring_full_resnet50{suffix}.json`): "
                      f"{full['score_seconds_first_call']:.0f} s scoring (its step's tracing "
                      f"included) + {full['trace_and_gate_seconds']:.1f} s tracing and gating; "
                      f"peak RSS {full['peak_rss_gib']:.2f} GiB."]
    text = "\n".join(lines) + "\n"
    with open(os.path.join(RESULTS, "scoring_time_quality.md"), "w") as f:
        f.write(text)
    print(text)


if __name__ == "__main__":
    main()
