"""The pruning report: what each round did, and which channels each layer kept.

The report is plain JSON. Its per-layer record of kept output and input
channel indices, relative to the original model, is enough to re-derive the
pruned architecture from the original (`PruningReport.to_plan`).
"""

import numpy as np

from singe_keras.files import JsonRecord, atomic_output
from singe_keras.plan import Plan


class PruningReport(JsonRecord):
    """Rounds and kept channels of one `singe_keras.prune` run.

    Attributes:
        rounds: one dict per round (and the final fine-tuning): FLOPs,
            params, units removed, `metrics` (`train_loss`, `train_accuracy`,
            ...: the training metrics of the fine-tuning steps, and with
            `validation_data`, `val_loss`, `val_accuracy`, ...), seconds.
        layers: `{layer path: {"class_name", "units", "kept_outputs",
            "kept_inputs"}}`, channel indices relative to the original model;
            a layer with hidden units (attention heads) also has
            `"kept_hidden"`, the kept units of each hidden axis.
        original: `{"flops", "params"}` of the original model, its
            `"metrics"` on `validation_data` when `prune` had some, and its
            `"latency_ms"` with `target_latency`.
        latency: with `target_latency`, `{"target_ms", "predicted_ms",
            "measured_ms", "prediction_error", "runtime"}` of the pruned
            model (`None` measurements for tables measured on another
            device), and `"corrections"`, the last round's timed trials,
            when `prune` corrected its plan on measurements; else `None`.
    """

    def __init__(self, original: dict, layers: dict, rounds: list | tuple = (),
                 latency: dict | None = None) -> None:
        self.original = dict(original)
        self.layers = layers
        self.rounds = list(rounds)
        self.latency = latency

    @classmethod
    def start(cls, graph, flops: int, params: int) -> "PruningReport":
        """A report for an unpruned model: every channel kept."""
        layers = {}
        for node in graph.nodes:
            if node.path in layers:
                continue
            layers[node.path] = {
                "class_name": type(node.layer).__name__,
                "produces_units": node.handler.output_weights(node.layer) is not None,
                "units": int(node.call.output_shapes[0][-1]),
                "kept_outputs": list(range(node.call.output_shapes[0][-1])),
                "kept_inputs": [list(range(s[-1])) for s in node.call.input_shapes],
            }
            if node.hidden:
                layers[node.path]["kept_hidden"] = [list(range(n)) for n in node.call.hidden_sizes]
        return cls({"flops": int(flops), "params": int(params)}, layers)

    def record_plan(self, graph, plan: Plan) -> None:
        """Narrows the kept channels by a plan applied to the current model."""
        kept = plan.mask(graph).astype(bool)
        done = set()
        for node in graph.nodes:
            if node.path in done:
                continue
            done.add(node.path)
            layer = self.layers[node.path]
            out = graph.kept_channels(node.outputs[0], kept)
            layer["kept_outputs"] = [layer["kept_outputs"][i] for i in out]
            layer["kept_inputs"] = [
                [previous[i] for i in graph.kept_channels(t, kept)]
                for previous, t in zip(layer["kept_inputs"], node.inputs)
            ]
            if node.hidden:
                layer["kept_hidden"] = [
                    [previous[i] for i in graph.kept_channels(t, kept)]
                    for previous, t in zip(layer["kept_hidden"], node.hidden)
                ]

    def to_plan(self, graph) -> Plan:
        """The `Plan` that rebuilds the pruned architecture from the original.

        Args:
            graph: `singe_keras.trace(original_model)` (same `ignored_layers`).
        """
        keep = {}
        for group in graph.groups:
            start, units = graph.group_offset(group.name), set()
            for path in group.producers:
                node = next(n for n in graph.nodes if n.path == path)
                record = self.layers[path]
                kept = [(node.outputs[0], record["kept_outputs"])]
                kept += zip(node.hidden, record.get("kept_hidden", ()))
                for tensor, channels in kept:
                    indices = graph.unit_indices(tensor)
                    units.update(int(indices[i]) - start for i in channels if indices[i] >= 0)
            keep[group.name] = sorted(units)
        return Plan(keep, {g.name: g.size for g in graph.groups})

    def to_dict(self) -> dict:
        return {"original": self.original, "rounds": self.rounds, "layers": self.layers,
                "latency": self.latency}

    @classmethod
    def from_dict(cls, data: dict) -> "PruningReport":
        return cls(data["original"], data["layers"], data["rounds"], data.get("latency"))

    def __repr__(self):
        if not self.rounds:
            return (
                f"PruningReport(no rounds yet, flops={self.original['flops']:,}, "
                f"params={self.original['params']:,})"
            )
        rounds = [r for r in self.rounds if r["round"] != "final"]
        last = self.rounds[-1]
        final = " + final fine-tuning" if last["round"] == "final" else ""
        metrics = "".join(f", {k}={v:.4f}" for k, v in last.get("metrics", {}).items())
        return (
            f"PruningReport({len(rounds)} round{'' if len(rounds) == 1 else 's'}{final}, flops={self.original['flops']:,} -> "
            f"{last['flops']:,} ({last['flops'] / self.original['flops']:.1%}), "
            f"params={self.original['params']:,} -> {last['params']:,} "
            f"({last['params'] / self.original['params']:.1%}){metrics})"
        )

    def metric_curve(self) -> tuple:
        """The metric `plot` draws against the FLOPs ratio, point by point.

        The validation metric when the run had `validation_data` (with the
        unpruned model first, at ratio 1.0), else the training metric of the
        fine-tuning steps; accuracy before loss.

        Returns:
            `(metric, points)`: the metric's name and a list of
            `(label, flops_ratio, value)`, labels `"unpruned"`, `"1"`, ...,
            `"final"`; `(None, [])` if no round recorded a metric.
        """
        recorded = [r for r in self.rounds if r.get("metrics")]
        metric = next(
            (k for k in ("val_accuracy", "val_loss", "train_accuracy", "train_loss")
             if recorded and k in recorded[-1]["metrics"]),
            None,
        )
        if metric is None:
            return None, []
        points = []
        unpruned = self.original.get("metrics", {}).get(metric)
        if unpruned is not None:
            points.append(("unpruned", 1.0, unpruned))
        points += [
            (str(r["round"]), r["flops"] / self.original["flops"], r["metrics"][metric])
            for r in recorded
            if metric in r["metrics"]
        ]
        return metric, points

    def plot(self, path: str) -> None:
        """Draws the channels of every layer and the metric vs FLOPs as a PNG.

        Left: the output channels of every layer that makes units, before and
        after pruning (layers kept whole included). Right: `metric_curve()`,
        the validation metric when there is one.

        Args:
            path: the .png file to write.

        Raises:
            ImportError: if matplotlib is not installed
                (`pip install "singe-keras[plot]"`).
        """
        try:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError as error:
            raise ImportError(
                'Plotting needs matplotlib: pip install "singe-keras[plot]"'
            ) from error
        layers = {k: v for k, v in self.layers.items() if v.get("produces_units")}
        names = list(layers)
        figure, (left, right) = plt.subplots(
            1, 2, figsize=(max(12, 6 + 0.3 * len(names)), 5),
            gridspec_kw={"width_ratios": [max(1, len(names) / 12), 1]},
        )
        positions = np.arange(len(names))
        before = np.array([layers[n]["units"] for n in names])
        after = np.array([len(layers[n]["kept_outputs"]) for n in names])
        left.bar(positions, before, color="lightgray", label="before")
        shrunk = after < before
        left.bar(positions[shrunk], after[shrunk], color="tab:blue", label="after")
        left.bar(positions[~shrunk], after[~shrunk], color="tab:green",
                 label="after (kept whole)")
        left.set_xticks(positions, names, rotation=90, fontsize=8)
        left.set_ylabel("output channels")
        left.set_title("Output channels per layer")
        left.legend(loc="best", fontsize=8)
        metric, points = self.metric_curve()
        if metric:
            _, ratios, values = zip(*points)
            right.plot(ratios, values, marker="o")
            for label, ratio, value in points:
                # "final" shares its FLOPs with the last round: label it below.
                right.annotate(label, (ratio, value), textcoords="offset points",
                               xytext=(4, -12 if label == "final" else 4), fontsize=8)
            kind, name = metric.split("_", 1)
            label = f"{'validation' if kind == 'val' else 'training'} {name}"
            right.set_xlabel("FLOPs (fraction of the unpruned model)")
            right.set_ylabel(label + ("" if kind == "val" else " (fine-tuning steps)"))
            right.set_title(f"{label.capitalize()} vs FLOPs")
            right.invert_xaxis()
            right.grid(alpha=0.3)
        else:
            right.set_axis_off()
        figure.tight_layout()
        try:
            with atomic_output(path, suffix=".png") as tmp:
                figure.savefig(tmp, dpi=100, bbox_inches="tight")
        finally:
            plt.close(figure)
