"""`prune`: entwined pruning and fine-tuning to a FLOPs or parameter target.

SINGE.md, "Entwined pruning and fine-tuning": the FLOPs to remove are split
over `rounds`; each round scores the remaining units, removes the lowest
ranked until the round's share is gone, rebuilds the smaller model and
fine-tunes it for a few optimizer steps. `rounds=1` is one-shot
prune-then-fine-tune.

Between rounds the model is rebuilt, not gated: the next round scores and
fine-tunes a physically smaller model (cheaper), and the returned model is
the last rebuild.
"""

import logging
import time

import keras

from singe_keras import allocation
from singe_keras import checkpoint as checkpoint_lib
from singe_keras import cost as cost_lib
from singe_keras import criteria as criteria_lib
from singe_keras import data as data_lib
from singe_keras import graph as graph_lib
from singe_keras import scoring
from singe_keras.plan import Plan
from singe_keras.report import PruningReport
from singe_keras.surgery import rebuild

logger = logging.getLogger(__name__)


def prune(
    model,
    dataset=None,
    target_flops=None,
    target_params=None,
    *,
    criterion="singe",
    rounds=4,
    finetune_steps=100,
    final_epochs=0,
    batch_size=32,
    validation_data=None,
    normalization="flops",
    min_units=1,
    round_to=1,
    ignored_layers=None,
    optimizer=None,
    loss=None,
    metrics=None,
    seed=None,
    verbose=1,
    return_report=False,
    checkpoint_dir=None,
):
    """Prunes a model to a FLOPs and/or parameter target with SInGE.

    Units (conv filters, dense neurons) are scored by `criterion`, removed
    lowest-ranked first across the whole model, and the model is fine-tuned
    between removals (Yvinec et al., "SInGE: Sparsity via Integrated
    Gradients Estimation of Neuron Relevance", NeurIPS 2022). The returned
    model is a new, physically smaller functional model with the same inputs,
    outputs and layer names. The input model is never modified.

    Args:
        model: a functional or Sequential `keras.Model`. Its compiled loss,
            optimizer and metrics are used unless `loss`/`optimizer`/
            `metrics` are given.
        dataset: training data: `(x, y)` or `(x, y, sample_weight)` arrays,
            a batched `tf.data.Dataset` of such tuples, or a
            `keras.utils.PyDataset`. Its first examples score the units; it
            feeds fine-tuning. May be `None` only if the criterion needs no
            data and there is no fine-tuning. Defaults to `None`.
        target_flops: keep at most this fraction in (0, 1] of the model's
            FLOPs, or this absolute number (> 1) of FLOPs.
        target_params: likewise for parameters. At least one target is
            needed.
        criterion: `"singe"`, `"taylor"`, `"l1"`, `"l2"`, `"bn_scale"`,
            `"random"`, a config dict or a `Criterion`. Defaults to `"singe"`.
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
            `"l2"` (per group) or `"flops"` (per FLOP saved; the best of the
            three on CIFAR-10, README "Measured choices"). Defaults to
            `"flops"`.
        min_units: units every group keeps at least. Defaults to `1`.
        round_to: every group keeps a multiple of this many units.
            Defaults to `1`.
        ignored_layers: names of layers whose outputs are never pruned.
            Defaults to `None`.
        optimizer, loss, metrics: override the model's compiled ones.
            Each round compiles a fresh optimizer from the same config.
        seed: makes the run reproducible: with the same seed and data, the
            same weights, bit for bit. Sets Keras's global seeds (like
            `keras.utils.set_random_seed`) at each round. Defaults to `None`.
        verbose: 0 (silent) or 1 (one progress line per round). Details go
            to the `singe_keras.pruning` logger. Defaults to `1`.
        return_report: also return a `PruningReport`. Defaults to `False`.
        checkpoint_dir: after every round, the state is written there
            atomically; calling `prune` again with the same arguments
            resumes after the last finished round. Defaults to `None`.

    Returns:
        The pruned `keras.Model`, or `(model, report)` if `return_report`.

    Raises:
        ValueError: for bad targets (including unreachable ones, with the
            smallest reachable value), bad options, missing or unusable data,
            a missing loss or optimizer, or a checkpoint written by another
            call.
        TypeError: for arguments of the wrong type.

    Example:

    ```python
    model.compile(optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(
        from_logits=True), metrics=["accuracy"])
    pruned = singe_keras.prune(model, (x_train, y_train), target_flops=0.5,
                               rounds=4, finetune_steps=200, seed=0)
    ```
    """
    criterion = criteria_lib.get(criterion)
    allocation.check_options(
        target_flops, target_params, normalization, verbose, rounds=rounds,
        finetune_steps=finetune_steps, final_epochs=final_epochs, batch_size=batch_size,
        min_units=min_units, round_to=round_to,
    )
    graph = graph_lib.trace(model, ignored_layers)
    original = cost_lib.count_costs(graph)
    max_flops = allocation.absolute_target("target_flops", target_flops, original.flops)
    max_params = allocation.absolute_target("target_params", target_params, original.params)
    training = finetune_steps > 0 or final_epochs > 0
    if (criterion.needs_data or training) and dataset is None:
        raise ValueError(
            f"`dataset` is needed to score with {criterion.name!r} and to "
            "fine-tune. Pass training data, or use criterion='l1', 'l2', "
            "'bn_scale' or 'random' with finetune_steps=0 and final_epochs=0."
        )
    if dataset is not None:
        data_lib.check_data(dataset, model, "dataset")
    if validation_data is not None:
        data_lib.check_data(validation_data, model, "validation_data")
    compile_settings = _compile_settings(model, optimizer, loss, metrics, training,
                                         criterion.needs_data and criterion.loss is None)
    # Fails now, with the smallest reachable costs, if the target is impossible.
    allocation.check_reachable(graph, max_flops, max_params, min_units, round_to)

    settings = {
        "target_flops": max_flops, "target_params": max_params,
        "criterion": criteria_lib.serialize(criterion), "rounds": rounds,
        "finetune_steps": finetune_steps, "final_epochs": final_epochs,
        "batch_size": batch_size, "normalization": normalization,
        "min_units": min_units, "round_to": round_to,
        "ignored_layers": [getattr(x, "name", x) for x in ignored_layers or ()],
        "seed": seed,
        # A different optimizer, loss or metrics makes another call.
        "compile": keras.saving.serialize_keras_object(compile_settings),
    }
    checkpoint = (
        checkpoint_lib.Checkpoint(checkpoint_dir, checkpoint_lib.fingerprint(model, settings))
        if checkpoint_dir else None
    )
    state = checkpoint.load() if checkpoint else None
    if state is None:
        current = rebuild(graph, Plan.full(graph))  # a copy: `model` stays as it is
        report = PruningReport.start(graph, original.flops, original.params)
        first_round = 1
    else:
        current, report, first_round = state
        logger.info("Resuming from %s after round %d.", checkpoint_dir, first_round - 1)
    _compile(current, compile_settings)
    if state is None and validation_data is not None:
        report.original["metrics"] = _named(_evaluate(current, validation_data, batch_size))

    for round_index in range(first_round, rounds + 1):
        started = time.perf_counter()
        if seed is not None:
            keras.utils.set_random_seed(seed + round_index)
        fraction = round_index / rounds
        step_flops = allocation.partial_target(original.flops, max_flops, fraction)
        step_params = allocation.partial_target(original.params, max_params, fraction)
        graph = graph_lib.CouplingGraph(current, ignored_layers, warn=False)
        scores = scoring.score(graph, dataset, criterion)
        scored = time.perf_counter()
        plan = allocation.allocate(
            graph, scores.flat(), step_flops, step_params, normalization, min_units, round_to
        )
        report.record_plan(graph, plan)
        current = rebuild(graph, plan)
        _compile(current, compile_settings)
        logs = {}
        if finetune_steps:
            logs = _finetune(current, dataset, round_index, finetune_steps, batch_size, seed)
        if validation_data is not None:
            logs.update(_evaluate(current, validation_data, batch_size))
        cost = cost_lib.count_costs(current)
        entry = {
            "round": round_index,
            "flops": cost.flops,
            "params": cost.params,
            "units_removed": graph.num_units - plan.num_kept,
            "metrics": _named(logs),
            "scoring_seconds": scored - started,
            "seconds": time.perf_counter() - started,
        }
        report.rounds.append(entry)
        _progress(verbose, f"Round {round_index}/{rounds}", entry, step_flops, original)
        if checkpoint:
            checkpoint.save(current, report, round_index)

    if final_epochs:
        started = time.perf_counter()
        if seed is not None:
            keras.utils.set_random_seed(seed + rounds + 1)
        history = _fit(current, dataset, final_epochs, batch_size, validation_data)
        entry = {
            "round": "final",
            "flops": report.rounds[-1]["flops"],
            "params": report.rounds[-1]["params"],
            "units_removed": 0,
            "metrics": _named({k: v[-1] for k, v in history.history.items()}),
            "seconds": time.perf_counter() - started,
        }
        report.rounds.append(entry)
        _progress(verbose, f"Final fine-tuning ({final_epochs} epochs)", entry, None, original)
    return (current, report) if return_report else current


def _compile_settings(model, optimizer, loss, metrics, training, needs_loss):
    """What each rebuilt model is compiled with; errors if something is missing.

    The loss and metrics stay the live objects (a custom function or a lambda
    survives); the optimizer is kept as a config, so that every rebuilt
    model gets a fresh one.
    """
    config = dict(model.get_compile_config() or {}) if model.compiled else {}
    loss = loss if loss is not None else (model.loss if model.compiled else None)
    optimizer = optimizer if optimizer is not None else (
        model.optimizer if model.compiled else None)
    config.pop("loss", None)
    config.pop("optimizer", None)
    if metrics is not None:
        config.pop("metrics", None)
    try:
        settings = keras.saving.deserialize_keras_object(config)
    except (TypeError, ValueError) as error:
        raise ValueError(
            "The model's compiled metrics cannot be rebuilt for the pruned "
            f"model ({error}). Pass `metrics=` explicitly."
        ) from error
    if metrics is not None:
        settings["metrics"] = metrics
    settings["loss"] = loss
    settings["optimizer"] = (
        keras.optimizers.serialize(keras.optimizers.get(optimizer)) if optimizer else None
    )
    if (training or needs_loss) and loss is None:
        raise ValueError(
            "Scoring with gradients and fine-tuning need a loss: compile the "
            "model (`model.compile(optimizer=..., loss=...)`) or pass `loss=`."
        )
    if training and optimizer is None:
        raise ValueError(
            "Fine-tuning needs an optimizer: compile the model or pass "
            "`optimizer=` (or set finetune_steps=0 and final_epochs=0)."
        )
    return settings


def _compile(model, settings):
    if settings["loss"] is None and settings["optimizer"] is None:
        return  # nothing to compile with: pruning without data or training
    optimizer = settings["optimizer"]
    model.compile(
        **{**settings, "optimizer": keras.optimizers.deserialize(optimizer) if optimizer else "sgd"}
    )


def _finetune(model, dataset, round_index, steps, batch_size, seed):
    """`steps` optimizer steps; round r reads the r-th slice of the stream."""
    stream = data_lib.training_stream(dataset, batch_size, seed)
    batches = stream.skip((round_index - 1) * steps).take(steps)
    history = model.fit(batches, epochs=1, steps_per_epoch=steps, shuffle=False, verbose=0)
    return {k: v[-1] for k, v in history.history.items()}


def _fit(model, dataset, epochs, batch_size, validation_data):
    return model.fit(
        **data_lib.keras_arguments(dataset, batch_size), epochs=epochs,
        validation_data=validation_data, shuffle=not data_lib.is_stream(dataset), verbose=0,
    )


def _evaluate(model, data, batch_size):
    logs = model.evaluate(**data_lib.keras_arguments(data, batch_size), return_dict=True,
                          verbose=0)
    return {f"val_{k}": v for k, v in logs.items()}


def _named(logs):
    """Keras logs as report metrics: `train_` (the fine-tuning steps') or `val_`."""
    return {k if k.startswith("val_") else f"train_{k}": float(v) for k, v in logs.items()}


def _progress(verbose, title, entry, round_flops, original):
    metrics = " - ".join(f"{k} {v:.4f}" for k, v in entry["metrics"].items())
    target = f" (round target {round_flops / 1e6:,.2f}M)" if round_flops is not None else ""
    line = (
        f"{title} - FLOPs {entry['flops'] / 1e6:,.2f}M{target} of "
        f"{original.flops / 1e6:,.2f}M - params {entry['params']:,} - "
        f"removed {entry['units_removed']} units"
        + (f" - {metrics}" if metrics else "")
        + f" - {entry['seconds']:.1f}s"
    )
    logger.info(line)
    if verbose:
        print(line, flush=True)


