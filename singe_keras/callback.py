"""`PruningCallback` and `strip`: pruning inside the user's own `model.fit`.

The callback cannot change the graph that `fit` runs, so a pruned unit is
kept at zero through its weights: the parameters that make its channel
(producer kernel slice and bias, BatchNormalization gamma and beta, or the
moving mean of a BatchNormalization without a scale) get a `UnitMask`
constraint, which Keras's optimizers apply after every update,
inside the compiled train step (so `steps_per_execution`, `jit_compile` and
distribution strategies are unaffected). The masks are variables: a pruning
event changes their values without retracing. They are part of the layers'
configs, so a model saved mid-training loads back with its pruned units.

`strip(model)` then builds the physically smaller model.
"""

import keras
import numpy as np

from singe_keras import checks
from singe_keras import compiling
from singe_keras import cost as cost_lib
from singe_keras import criteria as criteria_lib
from singe_keras import data as data_lib
from singe_keras import distribute
from singe_keras import engine as engine_lib
from singe_keras import graph as graph_lib
from singe_keras import latency as latency_lib
from singe_keras import progress
from singe_keras import recalibration
from singe_keras import user_warning
from singe_keras.gating import GatedModel
from singe_keras.plan import Plan
from singe_keras.surgery import rebuild


@keras.saving.register_keras_serializable(package="singe_keras")
class UnitMask(keras.constraints.Constraint):
    """Multiplies a weight by a 0/1 mask along its channel axis.

    Args:
        mask: one value per channel.
        axis: the channel axis of the weight. Defaults to `-1`.
        inner: a constraint applied before the mask (the layer's own).
            Defaults to `None`.
    """

    def __init__(self, mask, axis: int = -1,
                 inner: keras.constraints.Constraint | None = None) -> None:
        self.axis = axis
        self.inner = keras.constraints.get(inner)
        self.mask = keras.Variable(
            np.asarray(mask, "float32"), trainable=False, name="unit_mask"
        )

    def __call__(self, weight):
        if self.inner is not None:
            weight = self.inner(weight)
        shape = [1] * len(weight.shape)
        shape[self.axis] = -1
        return weight * keras.ops.cast(keras.ops.reshape(self.mask, shape), weight.dtype)

    def get_config(self):
        return {
            "mask": keras.ops.convert_to_numpy(self.mask).tolist(),
            "axis": self.axis,
            "inner": keras.constraints.serialize(self.inner) if self.inner else None,
        }


class PruningCallback(keras.callbacks.Callback):
    """Prunes units on a schedule during the user's own `model.fit`.

    At the start of epochs `start_epoch`, `start_epoch + frequency`, ...
    (`rounds` times), the units are scored with `criterion` on
    `dataset`, and the lowest-ranked are masked to zero until the model's FLOPs
    (or parameters) reach the event's share of the target; the last event
    reaches the target. Training goes on with the masked units at zero. After
    `fit`, `singe_keras.strip(model)` returns the physically smaller model.
    `fit` needs at least `start_epoch + (rounds - 1) * frequency + 1`
    epochs to reach the target; with fewer, the callback warns when training
    begins.

    Units that cannot be held at zero through weights (a channel that passes
    through `sigmoid`, whose value at zero is not zero, into a conv) are not
    pruned; a warning names them. A squeeze-excitation gate needs no mask:
    its `Multiply` with a zeroed feature map is zero. Kernels keep the rows
    that read masked channels (they are removed by `strip`), so magnitude
    criteria (`l1`, `l2`) can
    rank a little differently here than in `singe_keras.prune`, which scores
    the rebuilt model; gradient criteria see the same function in both.

    Under a `tf.distribute` strategy, scoring runs on the replicas of the
    strategy the model was created in, as `fit` does. Under a multi-worker
    strategy `fit` itself cannot run, and so neither can the callback: there,
    `singe_keras.prune` prunes and fine-tunes (docs/distributed.md).

    Attention heads are pruned as `prune` prunes them: a head's value
    projection is masked, so that it adds nothing to the layer's output.
    After each event, as after each of `prune`'s rounds, the BatchNorm
    moving statistics are re-estimated on `recalibration_batches` batches
    of `dataset` (`singe_keras.recalibrate_batchnorm`), so that the masked
    model evaluates well at once; `fit`'s training passes then go on
    updating them with the model's own momentum.

    Each event is one step of the same `PruningEngine` that `prune`'s rounds
    take: the same scoring, allocation and latency correction.

    Args:
        target_flops: keep at most this fraction in (0, 1] of the model's
            FLOPs, or this absolute count (> 1). Defaults to `None`.
        target_params: likewise for parameters. Defaults to `None`.
        dataset: scoring data `(x, y)`, a batched `tf.data.Dataset` or a
            `keras.utils.PyDataset`; not needed by magnitude criteria.
            Defaults to `None`.
        criterion: see `singe_keras.prune`. Defaults to `"singe"`.
        rounds: how many times to prune (pruning events). Defaults to `4`.
        start_epoch: epoch of the first event. Defaults to `0`.
        frequency: epochs between events. Defaults to `1`.
        normalization, min_units, round_to, max_pruning_ratio, ignored_layers:
            see `singe_keras.prune`.
        verbose: 0 (silent), 1 (at each event, a Keras progress bar of the
            scoring passes, then a summary line) or 2 (the summary line
            only). Defaults to `1`.
        target_latency, latency_model: a latency target, see
            `singe_keras.prune`. The tables are built when training begins.
            At the last event, as in `prune`'s last round, the plan's
            model is timed against a rebuilt copy of the unpruned model
            and its latency budget corrected until the ratio is within 5%
            of the target
            (where this process can time models: host tables, one worker;
            elsewhere the stripped model is measured once, if it can be,
            and a prediction more than 10% off warns); `callback.latency`
            holds the prediction next to the measurement and the
            corrections. Defaults to `None`.
        recalibration_batches: batches of `dataset` (of `recalibration_batch_size`
            rows, for arrays) that BatchNorm statistics are re-estimated on
            after each event; 0 turns it off. Defaults to `20`.
        recalibration_batch_size: rows per batch when `dataset` holds arrays.
            Defaults to `32`.
        data, pruning_events: the former names of `dataset` and `rounds`,
            deprecated.

    Raises:
        ValueError: for bad options, when created in (or set on a model of)
            a multi-worker strategy, and when training begins on a model
            with NaN or infinite weights (naming them).

    Example:

    ```python
    callback = singe_keras.PruningCallback(target_flops=0.5, dataset=(x[:256], y[:256]))
    model.fit(x, y, epochs=6, callbacks=[callback])
    small = singe_keras.strip(model)
    ```
    """

    def __init__(
        self,
        target_flops: float | None = None,
        target_params: float | None = None,
        dataset=None,
        criterion: str | dict | type | criteria_lib.Criterion = "singe",
        rounds: int = 4,
        start_epoch: int = 0,
        frequency: int = 1,
        normalization: str | None = None,
        min_units: int = 1,
        round_to: int = 1,
        max_pruning_ratio: float | None = None,
        ignored_layers: list | None = None,
        verbose: int = 1,
        target_latency: float | str | None = None,
        latency_model: "dict | latency_lib.LatencyModel | None" = None,
        recalibration_batches: int = 20,
        recalibration_batch_size: int = 32,
        *,
        data=None,
        pruning_events: int | None = None,
    ) -> None:
        super().__init__()
        _check_single_worker(distribute.current_strategy())
        dataset = checks.renamed("PruningCallback", "dataset", dataset, "data", data)
        rounds = checks.renamed("PruningCallback", "rounds", rounds, "pruning_events",
                                pruning_events, default=4)
        self.criterion, normalization = engine_lib.resolve_criterion(
            criterion, normalization, target_latency)
        checks.check_options(
            target_flops, target_params, normalization, verbose, max_pruning_ratio,
            target_latency, rounds=rounds, start_epoch=start_epoch,
            frequency=frequency, min_units=min_units, round_to=round_to,
            recalibration_batches=recalibration_batches,
            recalibration_batch_size=recalibration_batch_size,
        )
        if self.criterion.needs_data and dataset is None:
            raise ValueError(
                f"The {self.criterion.name!r} criterion needs scoring data: pass "
                f"`dataset=(x, y)`, or use a criterion that needs none ({criteria_lib.data_free()})."
            )
        latency_lib.check_latency_model(latency_model)
        self.target_flops, self.target_params = target_flops, target_params
        self.target_latency, self.latency_model = target_latency, latency_model
        self.latency = None
        self.dataset = dataset
        self.rounds, self.start_epoch, self.frequency = rounds, start_epoch, frequency
        self.normalization, self.min_units, self.round_to = normalization, min_units, round_to
        self.max_pruning_ratio = max_pruning_ratio
        self.ignored_layers = ignored_layers
        self.verbose = verbose
        self.recalibration_batches = recalibration_batches
        self.recalibration_batch_size = recalibration_batch_size

    def set_model(self, model):
        _check_single_worker(model.distribute_strategy)
        super().set_model(model)

    def on_train_begin(self, logs=None):
        self._events_done = 0
        if self.dataset is not None:
            data_lib.check_data(self.dataset, self.model)
        graph = graph_lib.CouplingGraph(self.model, self.ignored_layers)
        checks.check_finite_weights(self.model)
        unmaskable = _unmaskable_layers(graph)
        if unmaskable:
            user_warning.warn(
                "These layers make channels non-zero on their own and have no "
                "weights to mask, so PruningCallback does not prune their "
                f"units: {unmaskable}. (`singe_keras.prune` can.)",
            )
            graph = graph_lib.CouplingGraph(self.model, graph.ignored_layers + unmaskable,
                                            warn=False)
        self._engine = engine_lib.PruningEngine(
            graph, self.criterion, self.dataset, self.rounds,
            target_flops=self.target_flops, target_params=self.target_params,
            target_latency=self.target_latency, latency_model=self.latency_model,
            normalization=self.normalization, min_units=self.min_units,
            round_to=self.round_to, max_pruning_ratio=self.max_pruning_ratio,
            verbose=self.verbose,
        )
        self._warned_of_missing_events = self._warn_of_missing_events(
            (self.params or {}).get("epochs"))
        # In the model's strategy: scoring splits its batches over the replicas.
        with distribute.model_scope(self.model):
            self._gated = GatedModel(graph)  # one per fit: scoring traces once
            self._masks = _install_masks(graph)
        # A train function compiled before the masks existed would not apply them.
        self.model.make_train_function(force=True)

    def _warn_of_missing_events(self, epochs):
        """Warns if `fit`'s `epochs` end before the last event; returns whether it did."""
        last_epoch = self.start_epoch + (self.rounds - 1) * self.frequency
        if epochs is None or last_epoch < epochs:
            return False
        possible = max(0, (epochs - self.start_epoch - 1) // self.frequency + 1)
        user_warning.warn(
            f"PruningCallback prunes at the start of {self.rounds} epochs, the "
            f"last one epoch {last_epoch}, but fit runs {epochs} epoch{'' if epochs == 1 else 's'}: "
            f"{self.rounds - possible} pruning events will not happen and the "
            "model will not reach its target. Pass `epochs="
            f"{last_epoch + 1}` (or more) to fit"
            + (f", or `rounds={possible}` to the callback." if possible else ".")
            + " Events happen at epochs `start_epoch + i * frequency`.",
        )
        return True

    def on_train_end(self, logs=None):
        if self._events_done < self.rounds and not self._warned_of_missing_events:
            user_warning.warn(
                f"fit stopped after {self._events_done} of PruningCallback's "
                f"{self.rounds} pruning events (early stopping?): the model "
                "has not reached its target.",
            )

    def on_epoch_begin(self, epoch, logs=None):
        event = (epoch - self.start_epoch) // self.frequency + 1
        if epoch < self.start_epoch or (epoch - self.start_epoch) % self.frequency:
            return
        if event > self.rounds:
            return
        self._prune(event)
        self._events_done = event

    def _prune(self, event):
        """Masks units until the costs reach the event's share of the target."""
        engine = self._engine
        graph = engine.graph
        step = engine.step(event, self._gated,
                           f"PruningCallback, pruning event {event}/{self.rounds}",
                           kept=_kept_units(graph, self._masks))  # pruned units stay pruned
        _set_masks(graph, self._masks, step.plan.mask(graph).astype(bool))
        if self.recalibration_batches and self.dataset is not None:
            recalibration.recalibrate_on(self.model, data_lib.input_batches(
                self.dataset, self.recalibration_batch_size, self.recalibration_batches))
        predicted = (None if engine.latency_model is None
                     else engine.latency_model.predict(graph, step.plan))
        flops = cost_lib.count_flops(graph, step.plan)
        latency = "" if predicted is None else (
            f" - latency {predicted:.3f} ms predicted of {engine.original_ms:.3f} ms")
        progress.report(
            f"PruningCallback: FLOPs {flops / 1e6:,.2f}M of "
            f"{engine.original.flops / 1e6:,.2f}M{latency} - kept {step.plan.num_kept} of "
            f"{graph.num_units} units", self.verbose)
        if predicted is not None and event == self.rounds:
            self.latency = engine.latency_record(
                predicted, strip(self.model) if step.measured_ms is None else None, step)


def _mask_targets(graph):
    """Per layer (once), `(tensor, layer, weight path, constraint attribute, axis)`.

    `tensor` is the output (or hidden unit axis) whose units the weight
    makes. The constraint attribute is `None` for a weight whose layer
    config does not save a constraint of its own (a moving mean, whose mask
    is applied at each pruning event only, or a sublayer's weight).
    """
    for node in graph.layer_nodes():
        handler, layer = node.handler, node.layer
        targets = []
        if (graph.unit_indices(node.outputs[0]) >= 0).any():
            targets += [(node.outputs[0], p) for p in handler.output_parameters(layer)]
        for tensor, parameters in zip(node.hidden, handler.hidden_parameters(layer)):
            if graph.any_prunable([tensor]):
                targets += [(tensor, p) for p in parameters]
        for tensor, (path, constraint, axis) in targets:
            if _weight(layer, path) is not None:
                yield tensor, layer, path, constraint, axis


def _weight(layer, path):
    """The weight at `path` (`"kernel"`, `"value_dense.kernel"`), or `None`."""
    for name in path.split("."):
        layer = getattr(layer, name, None)
    return layer


def _check_single_worker(strategy):
    if distribute.is_multi_worker(strategy):
        raise ValueError(
            "PruningCallback runs inside Keras's `fit`, which does not run under a "
            f"multi-worker strategy (Keras {keras.__version__}; keras-team/keras#20585). "
            "To prune on several hosts, call `singe_keras.prune` in the strategy's "
            "scope: it fine-tunes with a distributed training step of its own. "
            f"Received: a {type(strategy).__name__} over "
            f"{strategy.num_replicas_in_sync} replicas"
        )


def _install_masks(graph):
    """Gives every maskable weight a `UnitMask` (reusing one a loaded model has)."""
    masks = []
    for tensor, layer, path, constraint_attribute, axis in _mask_targets(graph):
        variable = _weight(layer, path)
        constraint = variable.constraint
        if not isinstance(constraint, UnitMask):
            constraint = UnitMask(np.ones(variable.shape[axis]), axis, constraint)
            _set_constraint(layer, variable, constraint_attribute, constraint)
        masks.append((tensor, variable, constraint))
    # A loaded model brings the masks of its configs, not of its moving means.
    _set_masks(graph, masks, _kept_units(graph, masks))
    return masks


def _set_constraint(layer, variable, constraint_attribute, constraint):
    variable.constraint = constraint
    if constraint_attribute is not None:  # what the layer's config saves
        setattr(layer, constraint_attribute, constraint)


def _set_masks(graph, masks, kept_units):
    for tensor, variable, constraint in masks:
        channels = np.zeros(variable.shape[constraint.axis], "float32")
        channels[graph.kept_channels(tensor, kept_units)] = 1.0
        constraint.mask.assign(channels)
        variable.assign(constraint(variable))


def _kept_units(graph, masks):
    """Units whose channels are all unmasked."""
    kept = np.ones(graph.num_units, bool)
    for tensor, _, constraint in masks:
        units = graph.unit_indices(tensor)
        zero = (keras.ops.convert_to_numpy(constraint.mask) == 0) & (units >= 0)
        kept[units[zero]] = False
    return kept


def _unmaskable_layers(graph):
    """Paths of the layers whose pruned channels no mask holds at zero.

    Masked weights zero the pruned channels of the layers that have them;
    the handlers say which layers keep them at zero (`holds_zero`: a ReLU
    of a zero, `0 * sigmoid(.)` after a squeeze-excitation `Multiply`) and
    which do not (`sigmoid(0)`). Such a non-zero channel is harmless until
    a layer reads it into other channels (a conv, a Dense, a
    LayerNormalization): then the layer where it became non-zero is listed.
    """
    zero, origins = {}, {}
    for t in graph.scope.inputs:
        zero[t], origins[t] = True, set()
    for node in graph.nodes:
        handler, layer, call = node.handler, node.layer, node.call
        held = handler.holds_zero(layer, call, [zero[t] for t in node.inputs])
        # A layer that makes a channel non-zero from zero inputs is an origin.
        alone = handler.holds_zero(layer, call, [True] * len(node.inputs))
        made = set() if alone else {node.path}
        for t in node.outputs:
            zero[t] = held or bool((graph.unit_indices(t) < 0).all())
            origins[t] = set() if zero[t] else made.union(*(origins[i] for i in node.inputs))
    unmaskable = set()
    for node in graph.nodes:
        if node.handler.mixes_channels or node.handler.output_weights(node.layer) is not None:
            for t in node.inputs:
                unmaskable |= origins[t]
    return sorted(unmaskable)


def strip(model: keras.Model) -> keras.Model:
    """Returns the physically smaller model of a model trained with `PruningCallback`.

    Units whose weights `PruningCallback` masked to zero are removed; the
    masks themselves are not carried over. The input model is not modified.

    Args:
        model: a model trained (or loaded) with `PruningCallback` masks.

    Returns:
        A new functional `keras.Model` with the same outputs (to float32
        round-off), fewer filters and units, and no `UnitMask` constraints.
        If `model` is compiled, the new model is compiled the same way: the
        same loss, the same metrics and compile options, and a fresh
        optimizer with the same configuration (its state is not carried
        over, as the weights it tracked have changed shape).

    Example:

    ```python
    model.fit(x, y, epochs=4, callbacks=[singe_keras.PruningCallback(target_flops=0.5,
                                                                     criterion="l1")])
    small = singe_keras.strip(model)
    ```
    """
    graph = graph_lib.CouplingGraph(model, warn=False)
    masks = [
        (tensor, _weight(layer, path), _weight(layer, path).constraint)
        for tensor, layer, path, _, _ in _mask_targets(graph)
        if isinstance(_weight(layer, path).constraint, UnitMask)
    ]
    small = rebuild(graph, Plan.from_mask(graph, _kept_units(graph, masks)))
    for _, layer, path, constraint_attribute, _ in _mask_targets(
        graph_lib.CouplingGraph(small, warn=False)
    ):
        variable = _weight(layer, path)
        if isinstance(variable.constraint, UnitMask):
            _set_constraint(layer, variable, constraint_attribute, variable.constraint.inner)
    if model.compiled:
        _compile_like(small, model)
    return small


def _compile_like(small, model):
    """Compiles `small` as `model` is: its loss and metrics, a fresh optimizer."""
    try:
        settings, step = compiling.compile_settings(model, None, None, None, False, False)
    except ValueError as error:
        user_warning.warn(
            f"strip returns an uncompiled model: {error} Compile it yourself.",
        )
        return
    compiling.compile_fresh(small, settings, step)
