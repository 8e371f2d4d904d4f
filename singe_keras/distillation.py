"""Distillation from a teacher (by default the unpruned model).

Fine-tuning a pruned model against the outputs of the model it was pruned
from is the standard way to recover its accuracy (Hinton, Vinyals, Dean,
"Distilling the Knowledge in a Neural Network", 2015), and needs no labels.
`prune(..., distillation=...)` fine-tunes on

    alpha * task loss + (1 - alpha) * T^2 * KL(softmax(t / T) || softmax(s / T))

for teacher and student logits t and s (for regression outputs, the mean
squared difference of the outputs in place of the KL term). With
inputs-only data the task loss is absent and the distillation term is the
whole loss, for fine-tuning and for scoring.

Keras's own `keras.distillation.Distiller` (Keras >= 3.12) sets the teacher's
`trainable` to `False`, that is, it modifies the user's model, and it
ignores sample weights; the `Distiller` here does neither.
"""

import functools

import keras
from keras import ops

OUTPUTS = ("logits", "probabilities", "regression")

_PROBABILITY_LOSSES = (
    keras.losses.categorical_crossentropy,
    keras.losses.sparse_categorical_crossentropy,
)
_REGRESSION_LOSSES = (
    keras.losses.MeanSquaredError,
    keras.losses.MeanAbsoluteError,
    keras.losses.MeanSquaredLogarithmicError,
    keras.losses.Huber,
    keras.losses.LogCosh,
)
_REGRESSION_FUNCTIONS = (
    keras.losses.mean_squared_error,
    keras.losses.mean_absolute_error,
    keras.losses.mean_squared_logarithmic_error,
    keras.losses.huber,
    keras.losses.log_cosh,
)


@keras.saving.register_keras_serializable(package="singe_keras")
class DistillationLoss(keras.losses.Loss):
    """The loss of a student's outputs against a teacher's (`y_true` = teacher's).

    For classifiers, `T^2 * KL(softmax(t / T) || softmax(s / T))` per
    sample, summed over the classes (the last axis), for teacher and student
    logits t and s; the factor T^2 keeps the gradient's scale independent of
    T (Hinton et al. 2015). Probabilities are turned into logits by their
    logarithm. For regression outputs, the mean squared difference.

    A `keras.losses.Loss`: use it in `compile` or in a criterion, e.g. to
    score units without labels, against a teacher's outputs:

    ```python
    loss = singe_keras.DistillationLoss("logits", temperature=4.0)
    criterion = singe_keras.criteria.IntegratedGradients(loss=loss)
    scores = singe_keras.score(pruned, (x, original.predict(x)), criterion=criterion)
    ```

    Args:
        outputs: `"logits"`, `"probabilities"` (softmax outputs) or
            `"regression"`. Defaults to `"logits"`.
        temperature: T > 0, ignored for regression. Defaults to `4.0`.
        reduction, name, dtype: see `keras.losses.Loss`.

    Raises:
        ValueError: for an unknown `outputs` or a non-positive `temperature`.
    """

    def __init__(self, outputs: str = "logits", temperature: float = 4.0,
                 reduction: str = "sum_over_batch_size", name: str = "distillation",
                 dtype=None) -> None:
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        check_outputs(outputs)
        if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not (
            temperature > 0
        ):
            raise ValueError(
                f"`temperature` must be a positive number. Received: temperature={temperature!r}"
            )
        self.outputs, self.temperature = outputs, float(temperature)

    def call(self, y_true, y_pred):
        teacher, student = ops.cast(y_true, y_pred.dtype), y_pred
        if self.outputs == "regression":
            return ops.mean(ops.square(teacher - student), axis=-1)
        if self.outputs == "probabilities":
            epsilon = keras.backend.epsilon()
            teacher = ops.log(ops.clip(teacher, epsilon, 1.0))
            student = ops.log(ops.clip(student, epsilon, 1.0))
        log_teacher = ops.log_softmax(teacher / self.temperature, axis=-1)
        log_student = ops.log_softmax(student / self.temperature, axis=-1)
        kl = ops.sum(ops.exp(log_teacher) * (log_teacher - log_student), axis=-1)
        return self.temperature**2 * kl

    def get_config(self):
        return {**super().get_config(), "outputs": self.outputs, "temperature": self.temperature}


class Distillation:
    """How `singe_keras.prune` distills: weight, temperature, teacher, output kind.

    Args:
        alpha: weight of the task loss; `1 - alpha` weighs the distillation
            term. Ignored (0) when the data has no labels. Defaults to `0.0`:
            distillation only, which recovered more accuracy than
            `alpha=0.5` (README, "Recovering accuracy").
        temperature: T of the softened softmax. Defaults to `4.0`.
        teacher: a `keras.Model` with the same input and output shapes, run
            in inference mode and never trained or modified; `None` is the
            model being pruned, as it was before pruning. Defaults to `None`.
        outputs: `"logits"`, `"probabilities"` or `"regression"`; `None`
            reads it from the compiled loss (a categorical cross-entropy's
            `from_logits`; mean squared or absolute error, Huber, log-cosh:
            regression). Defaults to `None`.

    Raises:
        ValueError: for `alpha` outside [0, 1], a non-positive temperature or
            an unknown `outputs`.
        TypeError: for a `teacher` that is not a `keras.Model`.

    Example:

    ```python
    pruned = singe_keras.prune(model, (x, y), target_flops=0.5,
                               distillation=singe_keras.Distillation(alpha=0.3))
    ```
    """

    def __init__(self, alpha: float = 0.0, temperature: float = 4.0,
                 teacher: keras.Model | None = None, outputs: str | None = None) -> None:
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 <= alpha <= 1:
            raise ValueError(f"`alpha` must be in [0, 1]. Received: alpha={alpha!r}")
        if teacher is not None and not isinstance(teacher, keras.Model):
            raise TypeError(
                f"`teacher` must be a keras.Model or None. Received: teacher of type "
                f"{type(teacher).__name__}"
            )
        if outputs is not None:
            check_outputs(outputs)
        DistillationLoss(outputs or "logits", temperature)  # validates the temperature
        self.alpha, self.temperature = float(alpha), float(temperature)
        self.teacher, self.outputs = teacher, outputs

    def get_config(self):
        """The settings, without the teacher (a model, fingerprinted separately)."""
        return {"alpha": self.alpha, "temperature": self.temperature, "outputs": self.outputs}

    def loss(self, task_loss) -> DistillationLoss:
        """The `DistillationLoss` for a model compiled with `task_loss`.

        Raises:
            ValueError: if `outputs` is `None` and `task_loss` does not tell.
        """
        outputs = self.outputs or output_kind(task_loss)
        if outputs is None:
            raise ValueError(
                "Cannot tell from the loss whether the model outputs logits, "
                f"probabilities or regression values (loss={task_loss!r}). Pass "
                "`distillation=singe_keras.Distillation(outputs=...)`, e.g. "
                "outputs='logits'."
            )
        return DistillationLoss(outputs, self.temperature)


def get(identifier):
    """A `Distillation` from `None`/`False` (none), `True` (defaults), a dict or itself.

    Raises:
        TypeError: for anything else.
    """
    if identifier is None or identifier is False:
        return None
    if identifier is True:
        return Distillation()
    if isinstance(identifier, dict):
        return Distillation(**identifier)
    if isinstance(identifier, Distillation):
        return identifier
    raise TypeError(
        "`distillation` must be None, True, a dict of `Distillation` arguments or "
        f"a `singe_keras.Distillation`. Received: distillation={identifier!r}"
    )


def check_outputs(outputs):
    if outputs not in OUTPUTS:
        raise ValueError(
            f"`outputs` must be one of {list(OUTPUTS)}. Received: outputs={outputs!r}"
        )


def output_kind(loss):
    """`"logits"`, `"probabilities"` or `"regression"` as `loss` implies, else `None`."""
    if isinstance(loss, str):
        loss = keras.losses.get(loss)
    if isinstance(loss, (keras.losses.CategoricalCrossentropy,
                         keras.losses.SparseCategoricalCrossentropy)):
        return "logits" if loss.get_config().get("from_logits") else "probabilities"
    if any(loss is f for f in _PROBABILITY_LOSSES):
        return "probabilities"  # the functions' default: from_logits=False
    if isinstance(loss, _REGRESSION_LOSSES) or any(loss is f for f in _REGRESSION_FUNCTIONS):
        return "regression"
    return None


def teacher_outputs(teacher):
    """`x -> teacher(x)` in inference mode, as a NumPy array."""
    return lambda x: ops.convert_to_numpy(teacher(x, training=False))


def check_teacher(teacher, model):
    """Raises a `ValueError` if `teacher` cannot teach `model` (other shapes)."""
    for kind, a, b in (("input", teacher.input_shape, model.input_shape),
                       ("output", teacher.output_shape, model.output_shape)):
        if tuple(a)[1:] != tuple(b)[1:]:
            raise ValueError(
                f"The teacher's {kind} shape {tuple(a)} differs from the model's "
                f"{tuple(b)}. Pass a teacher with the model's inputs and outputs."
            )


class Distiller(keras.Model):
    """Trains `student` on its compiled loss plus `weight` x a distillation loss.

    Compile it like the student (its compiled loss, weighted by `alpha`
    through `loss_weights`, is the task term; none with inputs-only data)
    and `fit` it: the student's weights are trained, `steps_per_execution`,
    `jit_compile` and seeds work as for the student. The teacher runs in
    inference mode; it is held by a function, not as an attribute Keras
    tracks, so its weights are not the distiller's: never trained, never
    saved with it, never modified.

    Args:
        student: the model to train.
        teacher: the model whose outputs it learns.
        loss: a `DistillationLoss` (teacher outputs first).
        weight: the weight of the distillation term.
    """

    def __init__(self, student, teacher, loss, weight, name=None):
        super().__init__(name=name or f"{student.name}_distiller")
        self.student = student
        self._teacher = functools.partial(teacher, training=False)
        self.distillation_loss, self.weight = loss, float(weight)

    def call(self, inputs, training=None):
        return self.student(inputs, training=training)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        total = 0.0
        if self.weight:
            teacher = ops.stop_gradient(self._teacher(x))
            total = self.weight * self.distillation_loss(teacher, y_pred, sample_weight)
        if y is not None or self.losses:
            total = total + super().compute_loss(x, y, y_pred, sample_weight, training)
        return total
