"""Compiling rebuilt models the way the user's model was compiled.

`prune` and `strip` hand a new, smaller model back compiled like the
original: the same live loss and metrics objects (a custom function or a
lambda survives) and a fresh optimizer of the same configuration, whose
learning-rate schedule continues where the original optimizer was.
"""

import keras


@keras.saving.register_keras_serializable(package="singe_keras")
class ContinuedSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """A learning-rate schedule `offset` steps on: step 0 is `schedule`'s step `offset`.

    Each round of `prune` fine-tunes with a fresh optimizer (the model has
    new, smaller weights), whose step count starts at 0; this keeps its
    schedule where the previous round left it.

    Args:
        schedule: a `keras.optimizers.schedules.LearningRateSchedule`.
        offset: the steps already taken.
    """

    def __init__(self, schedule, offset):
        self.schedule, self.offset = schedule, int(offset)

    def __call__(self, step):
        return self.schedule(step + self.offset)

    def get_config(self):
        return {"schedule": keras.saving.serialize_keras_object(self.schedule),
                "offset": self.offset}

    @classmethod
    def from_config(cls, config):
        return cls(keras.saving.deserialize_keras_object(config["schedule"]), config["offset"])


def compile_settings(model, optimizer, loss, metrics, training, needs_loss):
    """What each rebuilt model is compiled with, and the optimizer's step count.

    The loss and metrics stay the live objects (a custom function or a lambda
    survives); the optimizer is kept as a config, so that every rebuilt
    model gets a fresh one, and its step count (`iterations`) as where its
    learning-rate schedule continues.

    Raises:
        ValueError: if the loss (`needs_loss`) or the optimizer (`training`)
            is missing.
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
    optimizer = keras.optimizers.get(optimizer) if optimizer else None
    settings["optimizer"] = keras.optimizers.serialize(optimizer) if optimizer else None
    step = int(keras.ops.convert_to_numpy(optimizer.iterations)) if optimizer else 0
    if needs_loss and loss is None:
        raise ValueError(
            "Scoring with gradients and fine-tuning need a loss: compile the "
            "model (`model.compile(optimizer=..., loss=...)`) or pass `loss=`."
        )
    if training and optimizer is None:
        raise ValueError(
            "Fine-tuning needs an optimizer: compile the model or pass "
            "`optimizer=` (or set finetune_steps=0 and final_epochs=0)."
        )
    return settings, step


def compile_fresh(model, settings, step):
    """Compiles `model` with a fresh optimizer whose schedule continues at `step`.

    Returns:
        The optimizer, or `None` if there is nothing to compile with.
    """
    if settings["loss"] is None and settings["optimizer"] is None:
        return None  # nothing to compile with: pruning without data or training
    optimizer = keras.optimizers.get(settings["optimizer"] or "sgd")
    config = optimizer.get_config()
    if isinstance(config.get("learning_rate"), dict):  # a LearningRateSchedule
        schedule = keras.saving.deserialize_keras_object(config["learning_rate"])
        optimizer = type(optimizer).from_config(
            {**config, "learning_rate": ContinuedSchedule(schedule, step)})
    model.compile(**{**settings, "optimizer": optimizer})
    return optimizer
