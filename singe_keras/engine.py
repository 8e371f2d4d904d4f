"""`PruningEngine`: one pruning problem, resolved once, and its steps.

Both drivers of pruning use it, as Torch-Pruning's loops drive one pruner:
`singe_keras.prune` (each round scores the rebuilt, smaller model, then
rebuilds, re-estimates BatchNorm and fine-tunes) and `PruningCallback`
(each event scores the masked model inside the user's `fit`, then masks).
The engine resolves the targets, the latency model and the reachability
once, on the unpruned model's graph; a `step` scores the units, allocates
the step's share of the target and, on the last step of a latency target
with tables timed here, corrects the plan on measurements.
"""

import dataclasses
import time

import keras

from singe_keras import allocation, distribute, progress, scoring, selection
from singe_keras import cost as cost_lib
from singe_keras import criteria as criteria_lib
from singe_keras import data as data_lib
from singe_keras import latency as latency_lib
from singe_keras.plan import Plan
from singe_keras.surgery import rebuild


@dataclasses.dataclass
class Step:
    """What one pruning step decided.

    Attributes:
        plan: the units the step keeps, on the graph it scored.
        model: the rebuilt model of `plan` if the step made it (a latency
            correction times rebuilt models), else `None`.
        measured_ms: the latency measured for `plan` by the correction, or
            `None`.
        corrections: the correction's trials, or `None`.
        scoring_seconds: the time spent scoring.
        normalization: the allocation normalization used (the one chosen,
            with `normalization="auto"`).
    """

    plan: Plan
    model: keras.Model | None = None
    measured_ms: float | None = None
    corrections: list | None = None
    scoring_seconds: float = 0.0
    normalization: str | None = None


class PruningEngine:
    """Resolves a pruning problem once and takes its steps.

    Args:
        graph: the `CouplingGraph` of the unpruned model.
        criterion: a `Criterion` (resolved with `singe_keras.criteria.get`).
        data: the scoring data the criterion reads, or `None`.
        steps: the number of steps (rounds, pruning events) to the target.
        target_flops, target_params, target_latency, latency_model: the
            targets, as `singe_keras.prune` takes them.
        normalization, min_units, round_to, max_pruning_ratio: the
            allocation's options, as `singe_keras.prune` takes them.
            `"auto"` (see `singe_keras.selection`) needs `data` with targets
            and a loss (the criterion's or the model's compiled one); without
            them the criterion's own normalization is used.
        verbose: 0, 1 (progress bars of scoring and of the latency tables)
            or 2.

    Raises:
        ValueError: if a target cannot be reached (with the smallest
            reachable costs).
    """

    def __init__(self, graph, criterion, data, steps, *, target_flops=None,
                 target_params=None, target_latency=None, latency_model=None,
                 normalization="mean", min_units=1, round_to=1, max_pruning_ratio=None,
                 verbose=1):
        self.graph, self.criterion, self.data, self.steps = graph, criterion, data, steps
        self.min_units, self.round_to = min_units, round_to
        self.max_pruning_ratio, self.verbose = max_pruning_ratio, verbose
        self.normalization, self.selection_loss = normalization, None
        if normalization == "auto":
            self.selection_loss = _selection_loss(criterion, data, graph.model)
            if self.selection_loss is None:
                self.normalization = criterion.normalization
        self.original = cost_lib.count_costs(graph)
        self.max_flops = allocation.absolute_target("target_flops", target_flops,
                                                    self.original.flops)
        self.max_params = allocation.absolute_target("target_params", target_params,
                                                     self.original.params)
        # Fails now, with the smallest reachable costs, if the target is impossible.
        allocation.check_reachable(graph, self.max_flops, self.max_params, min_units,
                                   round_to, max_pruning_ratio, graph.ignored_layers)
        self.latency_model = self.original_ms = self.max_latency = None
        self.target_latency = target_latency
        if target_latency is not None:
            self.latency_model = latency_lib.get(latency_model, graph.model,
                                                 graph.ignored_layers, min(verbose, 1))
            self.set_original_latency(self.latency_model.predict(graph))
            allocation.check_reachable(graph, self.max_flops, self.max_params, min_units,
                                       round_to, max_pruning_ratio, graph.ignored_layers,
                                       self.max_latency, self.latency_model)
        self.original_sizes = {g.name: g.size for g in graph.groups}

    def set_original_latency(self, original_ms):
        """Sets the unpruned model's predicted latency (a resumed run's, as it started)."""
        self.original_ms = original_ms
        self.max_latency = latency_lib.target_milliseconds(self.target_latency, original_ms)

    def targets(self, step):
        """`(flops, params, milliseconds)` that `step` (1-based) must reach (`None`: no target)."""
        fraction = step / self.steps
        return (allocation.partial_target(self.original.flops, self.max_flops, fraction),
                allocation.partial_target(self.original.params, self.max_params, fraction),
                allocation.partial_target(self.original_ms, self.max_latency, fraction))

    def step(self, step, scored, stage, kept=None, reference=None):
        """Scores the units of `scored` and plans the step's share of the target.

        Args:
            step: the step's number, 1 to `steps`.
            scored: the `CouplingGraph` or `GatedModel` to score.
            stage: how errors name the step (`"Round 2/4"`).
            kept: for a masked model, the mask of the units still kept
                (they stay kept). Defaults to `None`.
            reference: the unpruned model, which a latency correction times
                against. Defaults to `None`: a rebuilt copy.

        Returns:
            A `Step`.

        Raises:
            ValueError: prefixed with `stage`, for a relevance that is not
                finite.
        """
        started = time.perf_counter()
        graph = getattr(scored, "graph", scored)
        try:
            # In the model's strategy: scoring splits its batches over the replicas.
            with distribute.model_scope(graph.model):
                scores = scoring.score(scored, self.data, self.criterion,
                                       verbose=int(self.verbose == 1))
        except ValueError as error:
            raise ValueError(f"{stage}: {error}") from error
        scoring_seconds = time.perf_counter() - started
        max_flops, max_params, max_latency = self.targets(step)

        def allocate(normalization, max_latency=max_latency):
            return allocation.allocate(
                graph, scores.flat(), max_flops, max_params, normalization,
                self.min_units, self.round_to, self.max_pruning_ratio, kept_units=kept,
                original_sizes=self.original_sizes, max_latency=max_latency,
                latency_model=self.latency_model,
            )

        normalization, plan = self.normalization, None
        if normalization == "auto":  # the chosen normalization, and its plan
            skip = getattr(self.criterion, "samples", 0) if self.criterion.needs_data else 0
            normalization, plan, _ = selection.choose(
                graph, allocate, selection.held_out_batches(self.data, skip),
                self.selection_loss)
        if step == self.steps and latency_lib.measures_here(self.latency_model):
            if reference is None:
                reference = _full_copy(self.graph)
            plan, model, measured, corrections = latency_lib.corrected_plan(
                lambda max_latency: allocate(normalization, max_latency), graph,
                self.latency_model, max_latency, reference,
                self.original_ms, self.verbose,
                kept=None if kept is None else Plan.from_mask(graph, kept))
            return Step(plan, model, measured, corrections, scoring_seconds, normalization)
        return Step(allocate(normalization) if plan is None else plan,
                    scoring_seconds=scoring_seconds, normalization=normalization)

    def latency_record(self, predicted, model=None, step=None):
        """The pruned model's predicted latency next to one measurement.

        Args:
            predicted: the plan's predicted milliseconds.
            model: the pruned model, timed if `step` holds no measurement
                and the tables were timed here. Defaults to `None`.
            step: the last `Step`, whose correction measured the plan.
                Defaults to `None`.
        """
        measured = None if step is None else step.measured_ms
        record = latency_lib.measured_record(
            self.latency_model, model if measured is None else None, predicted,
            self.max_latency, measured=measured)
        if step is not None and step.corrections is not None:
            record["corrections"] = step.corrections
        if record["measured_ms"] is not None:
            line = (
                f"Latency - predicted {record['predicted_ms']:.3f} ms, measured "
                f"{record['measured_ms']:.3f} ms ({record['prediction_error']:+.1%}) - "
                f"unpruned {self.original_ms:.3f} ms, target {self.max_latency:.3f} ms"
            )
            progress.report(line, self.verbose)
        return record


def _full_copy(graph):
    """The unpruned model rebuilt: a copy to time, outside any `fit`."""
    return rebuild(graph, Plan.full(graph))


def resolve_criterion(criterion, normalization, target_latency):
    """The `Criterion` of an identifier, and the normalization to use with it.

    Without a `normalization`: `"latency"` for a latency target, else
    `"auto"`.
    """
    criterion = criteria_lib.get(criterion)
    if normalization is None:
        normalization = "auto" if target_latency is None else "latency"
    return criterion, normalization


def _selection_loss(criterion, data, model):
    """The per-sample loss `"auto"` compares plans with, or `None` if there is none."""
    if data is None or not data_lib.has_targets(data):
        return None
    try:
        return criteria_lib.resolve_loss(getattr(criterion, "loss", None), model)
    except ValueError:  # no loss: neither the criterion's nor a compiled one
        return None
