"""`prune`: entwined pruning and fine-tuning to a FLOPs, parameter or latency target.

docs/method.md, "Entwined pruning and fine-tuning": the FLOPs to remove are split
over `rounds`; each round scores the remaining units, removes the lowest
ranked until the round's share is gone, rebuilds the smaller model and
fine-tunes it for a few optimizer steps. `rounds=1` is one-shot
prune-then-fine-tune.

Between rounds the model is rebuilt, not gated: the next round scores and
fine-tunes a physically smaller model (cheaper), and the returned model is
the last rebuild.
"""

import time

import keras
import numpy as np

from singe_keras import checkpoint as checkpoint_lib
from singe_keras import checks
from singe_keras import compiling
from singe_keras import cost as cost_lib
from singe_keras import criteria as criteria_lib
from singe_keras import data as data_lib
from singe_keras import distillation as distillation_lib
from singe_keras import distribute
from singe_keras import distributed_training
from singe_keras import engine as engine_lib
from singe_keras import graph as graph_lib
from singe_keras import latency as latency_lib
from singe_keras import progress
from singe_keras import recalibration
from singe_keras.plan import Plan
from singe_keras.report import PruningReport
from singe_keras.surgery import rebuild

# BatchNorm re-estimation batches after a round that no fine-tuning follows.
DEFAULT_RECALIBRATION_BATCHES = 20


def prune(
    model: keras.Model,
    dataset=None,
    target_flops: float | None = None,
    target_params: float | None = None,
    *,
    target_latency: float | str | None = None,
    latency_model: "dict | latency_lib.LatencyModel | None" = None,
    criterion: str | dict | type | criteria_lib.Criterion = "singe",
    rounds: int = 4,
    finetune_steps: int = 100,
    final_epochs: int = 0,
    batch_size: int = 32,
    validation_data=None,
    normalization: str | None = None,
    min_units: int = 1,
    round_to: int = 1,
    max_pruning_ratio: float | None = None,
    ignored_layers: list | None = None,
    optimizer: str | keras.optimizers.Optimizer | None = None,
    loss=None,
    metrics: list | None = None,
    seed: int | None = None,
    verbose: int = 1,
    return_report: bool = False,
    checkpoint_dir: str | None = None,
    recalibration_batches: int | None = None,
    distillation: bool | dict | distillation_lib.Distillation | None = None,
) -> keras.Model | tuple[keras.Model, PruningReport]:
    """Prunes a model to a FLOPs, parameter and/or latency target with SInGE.

    Units (conv filters, dense neurons) are scored by `criterion`, removed
    lowest-ranked first across the whole model, and the model is fine-tuned
    between removals (Yvinec et al., "SInGE: Sparsity via Integrated
    Gradients Estimation of Neuron Relevance", NeurIPS 2022). The returned
    model is a new, physically smaller functional model with the same inputs,
    outputs and layer names. The input model is never modified.

    Called in a `tf.distribute` strategy's scope, `prune` scores on its
    replicas, rebuilds and compiles in the scope and fine-tunes through
    `fit`, or, under a multi-worker strategy (where Keras's `fit` cannot
    run), through the same training step run on every replica; there every
    worker ends with the same model and only the chief keeps the checkpoint
    files (docs/distributed.md).

    Args:
        model: a functional or Sequential `keras.Model`. Its compiled loss,
            optimizer and metrics are used unless `loss`/`optimizer`/
            `metrics` are given.
        dataset: training data: `(x, y)` or `(x, y, sample_weight)` arrays,
            a batched `tf.data.Dataset` of such tuples, or a
            `keras.utils.PyDataset`. Its first examples score the units; it
            feeds BatchNorm re-estimation and fine-tuning. May be `None`
            only if the criterion needs no data and there is no fine-tuning.
            It may hold inputs only (`x`, `(x,)`, a dataset of `x`): then
            pruning is label-free, see `distillation`. Defaults to `None`.
        target_flops: keep at most this fraction in (0, 1] of the model's
            FLOPs, or this absolute number (> 1) of FLOPs.
        target_params: likewise for parameters. At least one target is
            needed.
        target_latency: keep at most this fraction in (0, 1] of the model's
            latency in LiteRT, or these milliseconds given as a string
            (`"2.5ms"`), as predicted by `latency_model` (per-layer tables
            measured in the runtime, see `singe_keras.latency`). Units are
            then ranked by relevance per millisecond saved
            (`normalization="latency"` unless another is given), and channel
            counts settle on the cheap side of the runtime's steps. When the
            tables were measured on this host (and on one worker), the last
            round's plan is timed against the unpruned model and its latency
            budget corrected until it measures within 5% of the target (at
            most 5 times; a warning if it never does): the report's
            `latency` holds the prediction, the measurement and the trials.
            Combinable with the other targets.
            Defaults to `None`.
        latency_model: for `target_latency`: a `LatencyModel`
            (`singe_keras.latency.build`, or `from_measurements` for tables
            timed on a device), or a dict of `singe_keras.latency.build`
            options (`threads`, `delegate`, `precision`, `timer`,
            `cache_dir`). Defaults to `None`: tables measured on this host
            with XNNPACK, 1 thread, float32, cached under
            `~/.cache/singe_keras/latency`.
        criterion: `"singe"`, `"taylor"`, `"fisher"`, `"l1"`, `"l2"`,
            `"group_l1"`, `"group_l2"`, `"bn_scale"`, `"random"`, a config
            dict or a `Criterion` (e.g. `IntegratedGradients(path="random")`).
            Defaults to `"singe"`.
        rounds: number of prune/fine-tune rounds. Defaults to `4`.
        finetune_steps: optimizer steps after each round. Defaults to `100`.
        final_epochs: epochs of fine-tuning after the last round.
            Defaults to `0`.
        batch_size: batch size of fine-tuning on arrays. Defaults to `32`.
        validation_data: evaluated before pruning, after each round and
            after each final epoch if given; the report and the progress
            lines then show `val_` metrics besides the `train_` metrics of
            the fine-tuning steps. Defaults to `None`.
        normalization: how relevances are compared across groups: `"none"`,
            per group `"mean"`, `"max"`, `"sum"`, `"l2"`, `"gaussian"`, or
            `"flops"` (per FLOP saved); formulas in
            `singe_keras.allocation.normalize`; `"latency"` (per
            millisecond saved); or `"auto"`: each round allocates with
            `"mean"`, `"flops"` and `"gaussian"` and keeps the plan with the
            lowest loss on 512 held-out examples of `dataset` (those it
            yields after the scoring samples), BatchNorm re-estimated on them
            (`singe_keras.selection`; without labels or a loss, the
            criterion's own normalization). Defaults to `None`: `"latency"`
            with `target_latency`, else `"auto"`. No fixed one is best on
            both residual networks (`"flops"`) and plain chains (`"mean"`):
            see the README's "Choosing the normalization".
        min_units: units every group keeps at least. Defaults to `1`.
        round_to: every group keeps a multiple of this many units.
            Defaults to `1`.
        max_pruning_ratio: every group keeps at least
            `ceil((1 - max_pruning_ratio) * size)` of its units in the input
            model (with `min_units`, the larger floor holds); a number in
            (0, 1), or `None` for no limit. Defaults to `None`.
        ignored_layers: names of layers whose outputs are never pruned.
            Defaults to `None`.
        optimizer, loss, metrics: override the model's compiled ones.
            Each round compiles a fresh optimizer (the weights are new and
            smaller) from the same config, but a learning-rate schedule
            continues across rounds and into `final_epochs`: it starts at the
            optimizer's own step count (`iterations` when `prune` is called:
            a trained model's optimizer goes on where its training stopped,
            a new `optimizer=` starts at 0) and advances by
            `finetune_steps` per round. The step count itself is not
            carried: Adam's moments restart at zero each round, and with an
            old step count its bias correction would be off.
        seed: makes the run reproducible: with the same seed and data, the
            same weights, bit for bit. Sets Keras's global seeds (like
            `keras.utils.set_random_seed`) at each round. Defaults to `None`.
        verbose: 0 (silent), 1 (per round: Keras progress bars of the
            scoring passes and of the fine-tuning steps, then a summary
            line) or 2 (the summary line only, as `fit`'s one line per
            epoch). The summary lines also go to the `singe_keras`
            logger. Defaults to `1`.
        return_report: also return a `PruningReport`. Defaults to `False`.
        checkpoint_dir: after every round, the state is written there
            atomically; calling `prune` again with the same arguments
            resumes after the last finished round. Defaults to `None`.
        recalibration_batches: after a rebuild, the BatchNorm moving
            statistics are re-estimated as the exact average over this many
            batches of `dataset` (the first batches of the round's
            fine-tuning stream; see `singe_keras.recalibrate_batchnorm`). 0
            turns it off; without `dataset` it is skipped. Defaults to
            `None`: 20 batches after the rounds that no fine-tuning follows
            (`finetune_steps=0`, and the last round without `final_epochs`),
            else none: when fine-tuning follows, it cost 0.2-0.6 points of
            final accuracy (README, "Recovering accuracy").
        distillation: `None` (the default recipe), `False`, `True` (a
            `Distillation` with its defaults), a dict of its arguments or a
            `singe_keras.Distillation`: fine-tune on
            `alpha * task loss + (1 - alpha) * T^2 * KL(teacher_T || student_T)`
            (mean squared error to the teacher for regression outputs), with
            the unpruned model as the teacher unless one is given; the
            teacher runs in inference mode and is never trained. `None`
            fine-tunes on distillation only (`alpha=0`) when the compiled
            loss tells the output kind (a cross-entropy or a regression
            loss), else on the task loss; `False` always on the task loss.
            The labels still score the units and feed the metrics. With
            inputs-only `dataset`, distillation is on (with defaults unless
            given), and gradient criteria
            score the distillation loss between the teacher and the gated
            model (unless they have their own `loss`). At the unpruned model
            that loss is at its minimum, so its gradient, and `"taylor"`'s
            relevances, are ~0 in the first round, while `"singe"`
            integrates along the path to removal and gets real ones.
            Defaults to `None`.

    Returns:
        The pruned `keras.Model`, or `(model, report)` if `return_report`.

    Raises:
        ValueError: for a model with NaN or infinite weights (naming them),
            bad targets (including unreachable ones, with the smallest
            reachable value), bad options, missing or unusable data, a
            missing loss or optimizer, a teacher of other shapes, a loss that
            does not tell distillation the output kind, `validation_data` or
            tables not built beforehand under a multi-worker strategy, or a
            checkpoint written by another call; and, naming the round,
            for NaN or infinite relevance or fine-tuning loss.
        TypeError: for arguments of the wrong type.

    Example:

    ```python
    model.compile(optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(
        from_logits=True), metrics=["accuracy"])
    pruned = singe_keras.prune(model, (x_train, y_train), target_flops=0.5,
                               rounds=4, finetune_steps=200, seed=0)
    ```
    """
    criterion, normalization = engine_lib.resolve_criterion(
        criterion, normalization, target_latency)
    default_distillation = distillation is None
    distillation = distillation_lib.get(distillation)
    checks.check_options(
        target_flops, target_params, normalization, verbose, max_pruning_ratio,
        target_latency, rounds=rounds,
        finetune_steps=finetune_steps, final_epochs=final_epochs, batch_size=batch_size,
        min_units=min_units, round_to=round_to, recalibration_batches=recalibration_batches,
    )
    latency_lib.check_latency_model(latency_model)
    graph = graph_lib.trace(model, ignored_layers)  # rejects what is not a model
    checks.check_finite_weights(model)
    training = finetune_steps > 0 or final_epochs > 0
    _check_distribution(target_latency, latency_model, validation_data)
    labelled = _check_data(model, dataset, validation_data, criterion, training)
    uses_teacher = not labelled and (training or criterion.needs_loss)
    compile_settings, optimizer_step = compiling.compile_settings(
        model, optimizer, loss, metrics, training,
        validation_data is not None
        or (labelled and (training or (criterion.needs_loss and criterion.loss is None))),
    )
    if distillation is None and (uses_teacher or (default_distillation and training and (
            distillation_lib.output_kind(compile_settings["loss"]) is not None))):
        distillation = distillation_lib.Distillation()  # README, "Recovering accuracy"
    fine_tuning = _FineTuning(model, dataset, labelled, compile_settings, optimizer_step,
                              distillation, batch_size, seed, verbose)
    scoring_data, scoring_criterion = dataset, criterion
    if uses_teacher and criterion.needs_loss:
        scoring_data = data_lib.Labelled(dataset, distillation_lib.teacher_outputs(
            fine_tuning.teacher))
        scoring_criterion = _with_loss(criterion, fine_tuning.distillation_loss)
    engine = engine_lib.PruningEngine(
        graph, scoring_criterion, scoring_data, rounds,
        target_flops=target_flops, target_params=target_params,
        target_latency=target_latency, latency_model=latency_model,
        normalization=normalization, min_units=min_units, round_to=round_to,
        max_pruning_ratio=max_pruning_ratio, verbose=verbose,
    )
    latency_model = engine.latency_model
    settings = _settings(engine, criterion, distillation, compile_settings, optimizer_step,
                         labelled, target_latency=target_latency, rounds=rounds,
                         finetune_steps=finetune_steps, final_epochs=final_epochs,
                         batch_size=batch_size, normalization=normalization,
                         min_units=min_units, round_to=round_to,
                         max_pruning_ratio=max_pruning_ratio, seed=seed,
                         recalibration_batches=recalibration_batches,
                         ignored_layers=[getattr(x, "name", x) for x in ignored_layers or ()])
    checkpoint = (
        checkpoint_lib.Checkpoint(checkpoint_dir, checkpoint_lib.fingerprint(model, settings))
        if checkpoint_dir else None
    )
    current, report, first_round = _start(engine, checkpoint)
    compiling.compile_fresh(current, compile_settings, optimizer_step)
    if first_round == 1 and validation_data is not None:
        report.original["metrics"] = _named(_evaluate(current, validation_data, batch_size))
    original = engine.original

    step = None
    for round_index in range(first_round, rounds + 1):
        started = time.perf_counter()
        if seed is not None:
            keras.utils.set_random_seed(seed + round_index)
        stage = f"Round {round_index}/{rounds}"
        graph = graph_lib.CouplingGraph(current, ignored_layers, warn=False)
        if verbose == 1 and (scoring_criterion.shows_progress or finetune_steps):
            print(stage, flush=True)  # the bars' title
        step = engine.step(round_index, graph, stage, reference=model)
        current = step.model or rebuild(graph, step.plan)
        report.record_plan(graph, step.plan)
        batches = recalibration_batches
        if batches is None:  # only where no fine-tuning follows
            tuned = finetune_steps or (round_index == rounds and final_epochs)
            batches = 0 if tuned else DEFAULT_RECALIBRATION_BATCHES
        if batches and dataset is not None:
            fine_tuning.recalibrate(current, round_index, finetune_steps, batches)
        logs = fine_tuning.round(current, round_index, finetune_steps)
        if finetune_steps:
            _check_loss(logs, stage)
        if validation_data is not None:
            logs.update(_evaluate(current, validation_data, batch_size))
        entry = _round_entry(round_index, graph, step, logs, started, latency_model,
                             fine_tuning.learning_rate if finetune_steps else None)
        report.rounds.append(entry)
        round_flops, _, round_latency = engine.targets(round_index)
        _progress(verbose, stage, entry, round_flops, original, round_latency)
        if checkpoint:
            checkpoint.save(current, report, round_index)

    if latency_model is not None and report.latency is None:
        report.latency = engine.latency_record(report.rounds[-1]["latency_ms"], current, step)
    if final_epochs:
        if seed is not None:
            keras.utils.set_random_seed(seed + rounds + 1)
        _final_fine_tuning(fine_tuning, current, report, rounds * finetune_steps, final_epochs,
                           validation_data, original, verbose)
    return (current, report) if return_report else current


def _round_entry(round_index, graph, step, logs, started, latency_model, learning_rate):
    """The report's record of one round."""
    cost = cost_lib.count_costs(graph, step.plan)  # = the rebuilt model's, without re-tracing it
    entry = {
        "round": round_index,
        "flops": cost.flops,
        "params": cost.params,
        "units_removed": graph.num_units - step.plan.num_kept,
        "metrics": _named(logs),
        "scoring_seconds": step.scoring_seconds,
        "normalization": step.normalization,
        "seconds": time.perf_counter() - started,
    }
    if latency_model is not None:
        entry["latency_ms"] = latency_model.predict(graph, step.plan)
    if learning_rate is not None:
        entry["learning_rate"] = learning_rate
    return entry


def _start(engine, checkpoint):
    """`(model, report, first round)`: a copy of the unpruned model, or the checkpoint's."""
    state = checkpoint.load() if checkpoint else None
    if state is not None:
        if engine.latency_model is not None:  # the latency the interrupted run started from
            engine.set_original_latency(state[1].original["latency_ms"])
        progress.logger.info("Resuming from %s after round %d.", checkpoint.directory,
                             state[2] - 1)
        return state
    graph, original = engine.graph, engine.original
    report = PruningReport.start(graph, original.flops, original.params)
    if engine.latency_model is not None:
        report.original["latency_ms"] = engine.original_ms
    return rebuild(graph, Plan.full(graph)), report, 1  # a copy: the model stays as it is


def _final_fine_tuning(fine_tuning, model, report, step, epochs, validation_data, original,
                       verbose):
    """`epochs` epochs of fine-tuning after the last round, recorded in `report`."""
    started = time.perf_counter()
    logs = fine_tuning.epochs(model, step, epochs)
    _check_loss(logs, "Final fine-tuning")
    if validation_data is not None:
        logs.update(_evaluate(model, validation_data, fine_tuning.batch_size))
    last = report.rounds[-1]
    entry = {
        "round": "final",
        "flops": last["flops"],
        "params": last["params"],
        **({"latency_ms": last["latency_ms"]} if "latency_ms" in last else {}),
        "units_removed": 0,
        "metrics": _named(logs),
        "learning_rate": fine_tuning.learning_rate,
        "seconds": time.perf_counter() - started,
    }
    report.rounds.append(entry)
    _progress(verbose, f"Final fine-tuning ({epochs} epochs)", entry, None, original)


def _settings(engine, criterion, distillation, compile_settings, optimizer_step, labelled,
              **arguments):
    """What makes a call the same call: its checkpoint is resumed only by the same."""
    latency_model = engine.latency_model
    return {
        **arguments,
        "target_flops": engine.max_flops, "target_params": engine.max_params,
        # target_latency as given: the milliseconds depend on a timing that a re-run repeats.
        "latency_runtime": latency_model.runtime if latency_model else None,
        "criterion": criteria_lib.serialize(criterion),
        "labelled": labelled,
        "distillation": distillation.get_config() if distillation else None,
        "teacher": (
            checkpoint_lib.fingerprint(distillation.teacher, {})
            if distillation and distillation.teacher is not None else None
        ),
        # A different optimizer, loss or metrics makes another call.
        "compile": keras.saving.serialize_keras_object(compile_settings),
        "optimizer_step": optimizer_step,
    }


def _check_data(model, dataset, validation_data, criterion, training):
    """Checks the data arguments; returns whether `dataset` holds labels."""
    if (criterion.needs_data or training) and dataset is None:
        raise ValueError(
            f"`dataset` is needed to score with {criterion.name!r} and to "
            "fine-tune. Pass training data, or use a criterion that needs none "
            f"({criteria_lib.data_free()}) with finetune_steps=0 and final_epochs=0."
        )
    if validation_data is not None:
        data_lib.check_data(validation_data, model, "validation_data")
    if dataset is None:
        return True
    data_lib.check_data(dataset, model, "dataset", targets=False)
    return data_lib.has_targets(dataset)


def _check_distribution(target_latency, latency_model, validation_data):
    """Refuses what cannot run under a multi-worker strategy."""
    if not distribute.is_multi_worker():
        return
    if validation_data is not None:
        raise ValueError(
            "`validation_data` is evaluated with Keras's `evaluate`, which does not run "
            "under a multi-worker strategy (keras-team/keras#20585). Evaluate the pruned "
            "model after `prune` returns, outside the strategy. Received: "
            f"validation_data of type {type(validation_data).__name__}"
        )
    if target_latency is not None and not isinstance(latency_model, latency_lib.LatencyModel):
        raise ValueError(
            "Under a multi-worker strategy every worker must plan with the same "
            "latency tables, and tables timed on each worker differ: build the "
            "latency model first (`singe_keras.latency.build`, then `save`) and "
            "pass `latency_model=singe_keras.LatencyModel.load(path)`. Received: "
            f"latency_model={latency_model!r}"
        )


class _FineTuning:
    """How `prune` fine-tunes: the round's slice of the stream, the schedule, distillation.

    Each round compiles a fresh optimizer whose learning-rate schedule
    continues at the round's step; with `distillation`, the model is
    trained through a `Distiller` with the teacher.
    """

    def __init__(self, model, dataset, labelled, compile_settings, optimizer_step,
                 distillation, batch_size, seed, verbose):
        self.dataset, self.labelled, self.distillation = dataset, labelled, distillation
        self.compile_settings, self.optimizer_step = compile_settings, optimizer_step
        self.batch_size, self.seed, self.verbose = batch_size, seed, int(verbose == 1)
        self.teacher = self.distillation_loss = None
        if distillation is not None:
            self.teacher = distillation.teacher or model
            distillation_lib.check_teacher(self.teacher, model)
            self.distillation_loss = distillation.loss(compile_settings["loss"])
        self.trained = None

    def stream(self, round_index, steps):
        """Round r's slice of the endless training stream (from its r-th batch block)."""
        return data_lib.training_stream(self.dataset, self.batch_size, self.seed).skip(
            (round_index - 1) * steps)

    def recalibrate(self, model, round_index, steps, batches):
        """Re-estimates BatchNorm on the first `batches` batches of round `round_index`."""
        recalibration.recalibrate_on(model, data_lib.input_batches(
            self.stream(round_index, steps), self.batch_size, batches))

    def compiled(self, model, step):
        """`model`, compiled to continue the schedule at `step`, or its distiller."""
        settings = self.compile_settings
        optimizer = compiling.compile_fresh(model, settings, self.optimizer_step + step)
        if self.distillation is None:
            return model
        labelled = self.labelled
        alpha = self.distillation.alpha if labelled else 0.0
        distiller = distillation_lib.Distiller(model, self.teacher, self.distillation_loss,
                                               1.0 - alpha)
        distiller.compile(**{
            **settings, "optimizer": optimizer,
            "loss": settings["loss"] if labelled else None,
            "loss_weights": alpha if labelled else None,
            "metrics": settings.get("metrics") if labelled else None,
            "weighted_metrics": settings.get("weighted_metrics") if labelled else None,
        })
        return distiller

    def round(self, model, round_index, steps):
        """Compiles `model` for round `round_index`, then takes its `steps` optimizer steps.

        Returns:
            The logs of the last step (`{}` without steps).
        """
        self.trained = self.compiled(model, (round_index - 1) * steps)
        if not steps:
            return {}
        batches = self.stream(round_index, steps).take(steps)
        if distribute.is_multi_worker():  # Keras's fit cannot run there
            history = distributed_training.fit(self.trained, batches, verbose=self.verbose)
        else:
            history = self.trained.fit(batches, epochs=1, steps_per_epoch=steps,
                                       shuffle=False, verbose=self.verbose)
        return {k: v[-1] for k, v in history.history.items()}

    def epochs(self, model, step, epochs):
        """`epochs` epochs over the dataset, the schedule continued at `step`."""
        self.trained = self.compiled(model, step)
        if distribute.is_multi_worker():  # Keras's fit cannot run there
            history = distributed_training.fit(
                self.trained, data_lib.epoch(self.dataset, self.batch_size, self.seed),
                epochs, self.verbose)
        else:
            history = self.trained.fit(
                **data_lib.keras_arguments(self.dataset, self.batch_size), epochs=epochs,
                shuffle=not data_lib.is_stream(self.dataset), verbose=self.verbose,
            )
        return {k: v[-1] for k, v in history.history.items()}

    @property
    def learning_rate(self):
        """The learning rate the last fine-tuning ended at."""
        # Through NumPy: under a strategy the variable holds a MirroredVariable.
        return float(keras.ops.convert_to_numpy(self.trained.optimizer.learning_rate))


def _with_loss(criterion, loss):
    """`criterion` scoring with `loss` if it would use the model's compiled loss."""
    if criterion.needs_loss and criterion.loss is None:
        return type(criterion).from_config({**criterion.get_config(), "loss": loss})
    return criterion


def _check_loss(logs, stage):
    """Stops the run if fine-tuning made the loss NaN or infinite."""
    if not np.isfinite(logs["loss"]):
        raise ValueError(
            f"{stage}: the fine-tuning loss is not finite ({logs['loss']}). "
            "Check the data for NaN or infinity, or lower the optimizer's "
            "learning rate."
        )


def _evaluate(model, data, batch_size):
    logs = model.evaluate(**data_lib.keras_arguments(data, batch_size), return_dict=True,
                          verbose=0)
    return {f"val_{k}": v for k, v in logs.items()}


def _named(logs):
    """Keras logs as report metrics: `train_` (the fine-tuning steps') or `val_`."""
    return {k if k.startswith("val_") else f"train_{k}": float(v) for k, v in logs.items()}


def _progress(verbose, title, entry, round_flops, original, round_latency=None):
    metrics = " - ".join(f"{k} {v:.4f}" for k, v in entry["metrics"].items())
    target = f" (round target {round_flops / 1e6:,.2f}M)" if round_flops is not None else ""
    latency = ""
    if "latency_ms" in entry:
        latency = f" - latency {entry['latency_ms']:.3f} ms predicted" + (
            f" (round target {round_latency:.3f} ms)" if round_latency is not None else "")
    line = (
        f"{title} - FLOPs {entry['flops'] / 1e6:,.2f}M{target} of "
        f"{original.flops / 1e6:,.2f}M - params {entry['params']:,}{latency} - "
        f"removed {entry['units_removed']} units"
        + (f" ({entry['normalization']})" if entry.get("normalization") else "")
        + (f" - {metrics}" if metrics else "")
        + f" - {entry['seconds']:.1f}s"
    )
    progress.report(line, verbose)


