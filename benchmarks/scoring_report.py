"""Issues 23 and 27's time/quality table: SInGE estimators against Taylor, in one table.

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
#: Rows: (label, grid criterion name, points per sample). A timing is matched
#: to a row by the criterion's settings (`signature`), whatever name its run
#: gave it ("singe" was whichever default the run's commit had).
ROWS = (
    ("`taylor`", "taylor", "1"),
    ("default before issue 23 (`path=\"random\"`, halves of each group, K=4)",
     "singe_random_square", "8 per group"),
    ("8 blocks across groups, all 8 per sample, K=1 (default from issue 23 to 27)",
     "singe_across8", "8"),
    ("the same, 3 of the 8 blocks per sample", "singe_across8_s3", "3"),
    ("the same, 2 of the 8 blocks per sample", "singe_across8_s2", "2"),
    ("**default**: 2 of the 8 blocks per sample, each unit reading both points "
     "(`read=\"all\"`)", "singe_across8_s2_all", "2"),
)
#: Timing and full-scoring files, the latest first.
TIME_SUFFIXES = ("_issue27", "", "_s3", "_run1")
FULL_SUFFIXES = ("_issue27", "", "_s2")


def signature(config):
    """What makes two serialized criteria the same estimator (samples and seed aside)."""
    if config["class_name"] != "singe":
        return config["class_name"]
    c = config["config"]
    count = round(1 / c["block_fraction"]) if c.get("block_fraction") else None
    per_sample = min(c.get("blocks_per_sample") or count, count) if count else None
    read = c.get("read") or "block"  # runs before `read` existed read by block
    return (c["path"], c["steps"], count, per_sample, read, c.get("reduction"))


def row_signature(grid_name):
    from criteria_grid import CRITERIA
    from singe_keras import criteria

    return signature(criteria.serialize(criteria.get(CRITERIA[grid_name](0))))


def criteria_label(config):
    """"8 blocks" or "2 of 8 blocks" (and how they are read) for a serialized `singe`."""
    _, _, count, per_sample, read, _ = signature(config)
    blocks = f"{per_sample} of {count} blocks" if per_sample < count else f"{count} blocks"
    return blocks + (", read by all" if read == "all" else "")


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
    times = {}  # {model: {signature: (seconds per sample, ratio to Taylor)}}, latest run first
    for model in TIME_MODELS:
        times[model] = {}
        for run in filter(None, runs[model].values()):
            for name, config in run["criteria"].items():
                times[model].setdefault(signature(config), (
                    run["best_seconds_per_sample"][name], run["ratio_to_taylor"][name]))
    rows = [(label, criterion, row_signature(criterion), points)
            for label, criterion, points in ROWS]
    lines = ["# SInGE estimators: time and quality (issues 23 and 27)", ""]
    for title, suffixes, normalization in (
        ("64 scoring images per draw (the grid's protocol)", ("_issue23", ""), "mean"),
        ("64 scoring images per draw, `flops` normalization", ("_issue23", ""), "flops"),
        ("64 scoring images per draw, `auto` normalization (the default since issue 27)",
         ("_issue23", ""), "auto"),
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
        for label, criterion, key, points in rows:
            row = [label, points]
            row += [cell(table, m, criterion, normalization, t)
                    for m in GRID_MODELS for t in (0.5, 0.35)]
            row.append(f"{times['resnet20'][key][0]:.4f}" if key in times["resnet20"] else "–")
            row.append(" / ".join(f"{times[m][key][1]:.1f}x" if key in times[m] else "–"
                                  for m in TIME_MODELS))
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
    for suffix in FULL_SUFFIXES:
        full = load(f"scoring_full_resnet50{suffix}.json")
        if full:
            lines += ["", f"ResNet50 at 224 px, `singe` with {criteria_label(full['criterion'])}, "
                      f"{full['samples']} samples in full "
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
