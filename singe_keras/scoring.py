"""Scoring: the relevance of every unit of a model, keyed by coupling group."""

import dataclasses

import keras
import numpy as np

from singe_keras import checks
from singe_keras import criteria as criteria_lib
from singe_keras import data as data_lib
from singe_keras import graph as graph_lib
from singe_keras.gating import GatedModel


@dataclasses.dataclass(frozen=True)
class Scores:
    """Per-unit relevance of a traced model (higher = more relevant).

    Attributes:
        groups: the scored `CouplingGroup`s (their `layers` say which layers
            each unit lives in).
        values: `{group name: (group.size,) NumPy array}`.
        criterion: the config of the criterion that scored them.
    """

    groups: tuple
    values: dict
    criterion: dict

    def __getitem__(self, group_name: str) -> np.ndarray:
        return self.values[group_name]

    def flat(self) -> np.ndarray:
        """All relevances in one vector, group after group (as the gates)."""
        return np.concatenate([np.zeros(0)] + [self.values[g.name] for g in self.groups])

    def to_dict(self) -> dict:
        return {
            "criterion": self.criterion,
            "groups": {
                g.name: {"layers": list(g.layers), "relevance": self.values[g.name].tolist()}
                for g in self.groups
            },
        }


def score(
    model: "keras.Model | graph_lib.CouplingGraph | GatedModel",
    dataset=None,
    criterion: str | dict | type | criteria_lib.Criterion = "singe",
    ignored_layers: list | None = None,
    verbose: int = 0,
    *,
    data=None,
) -> Scores:
    """Scores every prunable unit (conv filter, dense neuron) of a model.

    Use it on its own ("which filters matter?") or let `singe_keras.prune`
    call it. Gradient criteria (`"singe"`, `"taylor"`) run the model in
    inference mode on up to `criterion.samples` examples, streaming `dataset`,
    in passes of at most `criterion.batch_size` rows. Called in a
    `tf.distribute` strategy's scope, they split every pass over its
    replicas and add the sums over its workers (docs/distributed.md).

    Args:
        model: a functional or Sequential `keras.Model`, its `CouplingGraph`
            (`singe_keras.trace`) or a `GatedModel` (reused between calls, a
            `GatedModel` is traced and compiled only once).
        dataset: `(x, y)` or `(x, y, sample_weight)` arrays, a batched
            `tf.data.Dataset` of such tuples, or a `keras.utils.PyDataset`.
            Needed by gradient criteria only. Defaults to `None`.
        criterion: a criterion name, config dict, class or instance (see
            `singe_keras.criteria.get`). Defaults to `"singe"`.
        ignored_layers: layers whose units are not scored (only when `model`
            is a `keras.Model`). Defaults to `None`.
        verbose: 0 (silent) or 1 (a `keras.utils.Progbar` of the model
            passes, for criteria that take data). Defaults to `0`.
        data: the former name of `dataset`, deprecated.

    Returns:
        A `Scores`: `scores[group_name]` is a NumPy array of relevances.

    Raises:
        ValueError: if `verbose` is not 0 or 1, if a weight of the model is
            NaN or infinite, if the criterion needs data and none (or
            unusable data) is given, if it needs a loss and neither the model
            nor the criterion has one, or if a relevance is NaN or infinite.
        TypeError: for a wrong type of `model`, `dataset` or `criterion`.

    Example:

    ```python
    model.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    scores = singe_keras.score(model, (x_train[:256], y_train[:256]))
    for group in scores.groups:
        print(group.name, scores[group.name].argsort()[:4])  # least relevant
    ```
    """
    dataset = checks.renamed("score", "dataset", dataset, "data", data)
    checks.check_verbose(verbose, (0, 1))
    criterion = criteria_lib.get(criterion)
    if isinstance(model, GatedModel):
        gated = model
    else:
        graph = model if isinstance(model, graph_lib.CouplingGraph) else graph_lib.trace(
            model, ignored_layers
        )
        gated = GatedModel(graph)
    checks.check_finite_weights(gated.graph.model)
    if criterion.needs_data:
        if dataset is None:
            raise ValueError(
                f"The {criterion.name!r} criterion needs scoring data `(x, y)`. "
                "Pass `dataset=`, or use a criterion that needs none "
                f"({criteria_lib.data_free()})."
            )
        data_lib.check_data(dataset, gated.graph.model, "dataset")
    if criterion.needs_loss:
        criteria_lib.resolve_loss(criterion.loss, gated.graph.model)
    progress = {"verbose": verbose} if criterion.shows_progress else {}
    relevance = (
        np.asarray(criterion.score(gated, dataset, **progress), dtype="float64")
        if gated.graph.num_units
        else np.zeros(0)  # nothing prunable: nothing to score
    )
    _check_finite(gated.graph, relevance, criterion)
    values, offset = {}, 0
    for group in gated.graph.groups:
        values[group.name] = relevance[offset : offset + group.size]
        offset += group.size
    return Scores(tuple(gated.graph.groups), values, criteria_lib.serialize(criterion))


def _check_finite(graph, relevance, criterion):
    """Raises if a unit's relevance is NaN or infinite (nothing could rank it)."""
    bad = ~np.isfinite(relevance)
    if bad.any():
        groups = [
            g.name for g in graph.groups
            if bad[graph.group_offset(g.name):][: g.size].any()
        ]
        raise ValueError(
            f"The {criterion.name!r} criterion gave non-finite relevance (NaN or "
            f"infinity) to {int(bad.sum())} of {graph.num_units} units, in the "
            f"groups {groups}. Check the model's weights and the data for NaN or "
            "infinity (`all(np.isfinite(w).all() for w in model.get_weights())`)."
        )
