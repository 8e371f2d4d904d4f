"""The criterion protocol and registry: `Criterion`, `register_criterion`, `get`."""

import keras
import numpy as np

_REGISTRY = {}



def register_criterion(name: str):
    """Class decorator: makes a `Criterion` subclass available as `name`.

    Example:

    ```python
    @singe_keras.criteria.register_criterion("weight_count")
    class WeightCount(singe_keras.criteria.Criterion):
        needs_data = False

        def score(self, gated, data=None):
            return np.ones(gated.graph.num_units)
    ```
    """

    def register(cls):
        if not (isinstance(cls, type) and issubclass(cls, Criterion)):
            raise TypeError(
                "Only subclasses of `Criterion` can be registered. "
                f"Received: {cls!r}"
            )
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return register


class Criterion:
    """Base class of relevance criteria.

    A criterion scores every prunable unit of a `GatedModel` (higher = more
    relevant, pruned last). Data goes in as an argument; a criterion keeps
    no hidden state between calls.
    """

    name = None
    #: Whether `score` needs `(x, y)` data (gradient criteria) or not.
    needs_data = False
    #: Whether `score` differentiates a loss (then it needs data too): the
    #: loss is checked before any work, and `prune` requires one.
    needs_loss = False
    #: The loss `score` differentiates (a Keras loss, its name, or
    #: `loss(y_true, y_pred)`); `None` means the model's compiled loss. Read
    #: only when `needs_loss`; `resolve_loss` turns it into a function.
    loss = None
    #: The allocation normalization `prune` and `PruningCallback` use with
    #: this criterion unless told otherwise: the best one measured for it,
    #: on average over two models and two targets (benchmarks/README.md, "Criteria under a
    #: fair allocation"); `"mean"` where it was not measured.
    normalization = "mean"
    #: Whether `score` also takes `verbose` (0, or 1 for a progress bar of
    #: its passes over the data); `singe_keras.score` passes it then.
    shows_progress = False

    def score(self, gated, data=None) -> np.ndarray:
        """Returns the relevance of every unit, a `(num_units,)` NumPy array.

        Args:
            gated: the `GatedModel` to score (its gate variable is left
                untouched).
            data: scoring data (see `singe_keras.score`), or `None` for
                criteria that do not need any.
        """
        raise NotImplementedError

    def get_config(self):
        return {}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        arguments = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({arguments})"


def get(identifier: str | dict | type | Criterion) -> Criterion:
    """Returns a `Criterion` from a name, a config dict, a class or an instance.

    Args:
        identifier: `"singe"`, `"taylor"`, `"fisher"`, `"l1"`, `"l2"`,
            `"group_l1"`, `"group_l2"`, `"bn_scale"`, `"random"` (or a name registered
            with `register_criterion`), a dict `{"class_name": name,
            "config": {...}}`, a `Criterion` subclass, or a `Criterion`
            instance.

    Raises:
        ValueError: for an unknown name.
        TypeError: for anything else.
    """
    if isinstance(identifier, Criterion):
        return identifier
    if isinstance(identifier, type) and issubclass(identifier, Criterion):
        return identifier()
    if isinstance(identifier, dict):
        return _lookup(identifier.get("class_name")).from_config(
            identifier.get("config", {})
        )
    if isinstance(identifier, str):
        return _lookup(identifier)()
    raise TypeError(
        "`criterion` must be a name, a config dict, a Criterion class or "
        f"instance. Received: criterion={identifier!r}"
    )


def data_free():
    """The names of the registered criteria that need no data, for messages."""
    return ", ".join(repr(n) for n, c in sorted(_REGISTRY.items()) if not c.needs_data)


def _lookup(name):
    if name not in _REGISTRY:
        raise ValueError(
            f"Unknown criterion {name!r}. Valid names: {sorted(_REGISTRY)}."
        )
    return _REGISTRY[name]


def serialize(criterion):
    """The config dict of a criterion, for `get` to rebuild it."""
    return {"class_name": criterion.name, "config": criterion.get_config()}


def resolve_loss(loss, model):
    """A per-sample loss function from `loss`, or from the model's compiled loss.

    A criterion with `needs_loss` calls it with its `loss` attribute.

    Args:
        loss: a Keras loss (object, name or config) or a callable
            `loss(y_true, y_pred)`; `None` for the model's compiled loss.
        model: the model being scored.

    Returns:
        A callable returning one loss per sample (a Keras loss's reduction
        is turned off).

    Raises:
        ValueError: if neither gives a loss.
        TypeError: if `loss` is neither a Keras loss nor callable.

    Example:

    ```python
    loss_fn = singe_keras.criteria.resolve_loss("sparse_categorical_crossentropy", model)
    ```
    """
    if loss is None:
        loss = getattr(model, "loss", None)
        if loss is None:
            raise ValueError(
                "Gradient criteria need a loss: compile the model with one "
                "(`model.compile(loss=...)`) or pass `loss=` to the criterion, "
                "e.g. `IntegratedGradients(loss='sparse_categorical_crossentropy')`."
            )
    loss = keras.losses.get(loss) if isinstance(loss, (str, dict)) else loss
    if isinstance(loss, keras.losses.Loss):
        config = loss.get_config()
        config["reduction"] = None
        loss = type(loss).from_config(config)
    if not callable(loss):
        raise TypeError(f"`loss` must be a Keras loss or a callable. Received: loss={loss!r}")
    return loss


def _check_choice(argument, value, choices):
    if value not in choices:
        raise ValueError(
            f"`{argument}` must be one of {list(choices)}. Received: {argument}={value!r}"
        )
