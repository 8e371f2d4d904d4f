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
            params, units removed, loss/metrics, seconds.
        layers: `{layer path: {"class_name", "units", "kept_outputs",
            "kept_inputs"}}`, channel indices relative to the original model.
        original: `{"flops", "params"}` of the original model.
    """

    def __init__(self, original, layers, rounds=()):
        self.original = dict(original)
        self.layers = layers
        self.rounds = list(rounds)

    @classmethod
    def start(cls, graph, flops, params):
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
        return cls({"flops": int(flops), "params": int(params)}, layers)

    def record_plan(self, graph, plan):
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

    def to_plan(self, graph):
        """The `Plan` that rebuilds the pruned architecture from the original.

        Args:
            graph: `singe_keras.trace(original_model)` (same `ignored_layers`).
        """
        keep = {}
        for group in graph.groups:
            start, units = graph.group_offset(group.name), set()
            for path in group.producers:
                node = next(n for n in graph.nodes if n.path == path)
                indices = graph.unit_indices(node.outputs[0])
                units.update(int(indices[i]) - start for i in self.layers[path]["kept_outputs"]
                             if indices[i] >= 0)
            keep[group.name] = sorted(units)
        return Plan(keep, {g.name: g.size for g in graph.groups})

    def to_dict(self):
        return {"original": self.original, "rounds": self.rounds, "layers": self.layers}

    @classmethod
    def from_dict(cls, data):
        return cls(data["original"], data["layers"], data["rounds"])

    def plot(self, path):
        """Draws units per layer before/after and accuracy vs FLOPs as a PNG.

        Needs matplotlib (`pip install "singe-keras[plot]"`).
        """
        try:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError as error:
            raise ImportError(
                'Plotting needs matplotlib: pip install "singe-keras[plot]"'
            ) from error
        shrunk = {
            k: v for k, v in self.layers.items()
            if v.get("produces_units") and len(v["kept_outputs"]) < v["units"]
        }
        figure, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
        names = list(shrunk)
        positions = np.arange(len(names))
        left.bar(positions, [shrunk[n]["units"] for n in names], label="before")
        left.bar(positions, [len(shrunk[n]["kept_outputs"]) for n in names], label="after")
        left.set_xticks(positions, names, rotation=90, fontsize=7)
        left.set_ylabel("output channels")
        left.legend()
        rounds = [r for r in self.rounds if "flops" in r]
        metric = next(
            (k for k in ("val_accuracy", "accuracy", "val_loss", "loss")
             if rounds and k in rounds[-1].get("metrics", {})),
            None,
        )
        if metric:
            right.plot(
                [r["flops"] / self.original["flops"] for r in rounds],
                [r["metrics"][metric] for r in rounds],
                marker="o",
            )
            right.set_xlabel("FLOPs / original FLOPs")
            right.set_ylabel(metric)
            right.invert_xaxis()
        figure.tight_layout()
        try:
            with atomic_output(path, suffix=".png") as tmp:
                figure.savefig(tmp, dpi=100)
        finally:
            plt.close(figure)

