import keras
import numpy as np
import pytest
import tensorflow as tf

import singe_keras
import zoo
from singe_keras import allocation
from singe_keras import distillation as distillation_lib

CE = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def _log_softmax(z):
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def _kl(teacher_logits, student_logits, temperature):
    """T^2 KL(softmax(t/T) || softmax(s/T)) per sample, in NumPy (float64)."""
    log_t = _log_softmax(np.float64(teacher_logits) / temperature)
    log_s = _log_softmax(np.float64(student_logits) / temperature)
    return temperature**2 * (np.exp(log_t) * (log_t - log_s)).sum(axis=-1)


def _compiled(name="chain", seed=0):
    model = zoo.build(name, seed)
    model.compile(optimizer="sgd", loss=CE, metrics=["accuracy"])
    return model


def _data(model, n=32):
    return zoo.sample_inputs(model, batch=n, seed=0), np.random.default_rng(0).integers(0, 3, n)


@pytest.mark.parametrize("outputs", ["logits", "probabilities", "regression"])
def test_distillation_loss_equals_a_numpy_reference(outputs):
    rng = np.random.default_rng(0)
    teacher, student = rng.normal(size=(2, 6, 5)).astype("float32")
    weight = rng.uniform(0, 2, 6).astype("float32")
    if outputs == "probabilities":
        teacher, student = (np.exp(_log_softmax(z)).astype("float32") for z in (teacher, student))
    loss = singe_keras.DistillationLoss(outputs, temperature=3.0)
    got = float(loss(teacher, student, sample_weight=weight))
    if outputs == "regression":
        per_sample = np.square(np.float64(teacher) - student).mean(axis=-1)
    elif outputs == "logits":
        per_sample = _kl(teacher, student, 3.0)
    else:  # the logarithm of a softmax is its logits, up to a constant
        per_sample = _kl(np.log(teacher), np.log(student), 3.0)
    np.testing.assert_allclose(got, (weight * per_sample).sum() / 6, rtol=1e-5)


def test_distiller_loss_is_alpha_task_plus_distillation():
    student, teacher = zoo.build("chain", 0), zoo.build("chain", 1)
    x, y = _data(student, 8)
    weight = np.linspace(0.5, 1.5, 8).astype("float32")
    alpha, temperature = 0.3, 2.0
    distiller = distillation_lib.Distiller(
        student, teacher, singe_keras.DistillationLoss("logits", temperature), 1 - alpha)
    distiller.compile(optimizer="sgd", loss=CE, loss_weights=alpha)
    student_logits = np.asarray(student(x))
    got = float(distiller.compute_loss(x, y, distiller(x), weight))
    task = -_log_softmax(np.float64(student_logits))[np.arange(8), y]
    distill = _kl(np.asarray(teacher(x)), student_logits, temperature)
    expected = (weight * (alpha * task + (1 - alpha) * distill)).sum() / 8
    np.testing.assert_allclose(got, expected, rtol=1e-5)


@pytest.mark.parametrize("given_teacher", [False, True])
def test_the_teacher_is_never_trained_nor_modified(given_teacher):
    model = _compiled()
    teacher = _compiled(seed=1) if given_teacher else model
    before = [np.copy(w) for w in teacher.get_weights()]
    x, y = _data(model)
    settings = {"teacher": teacher if given_teacher else None, "alpha": 0.2}
    distilled, plain = (
        singe_keras.prune(model, (x, y), target_flops=0.5, rounds=2, finetune_steps=3,
                          final_epochs=1, seed=0, verbose=0, distillation=option).get_weights()
        for option in (settings, None)
    )
    for a, b in zip(before, teacher.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert teacher.trainable
    # Distillation changed the fine-tuning: it is not a no-op.
    assert any(a.shape != b.shape or not np.array_equal(a, b) for a, b in zip(distilled, plain))


@pytest.mark.parametrize(
    "loss, outputs",
    [(CE, "logits"), (keras.losses.CategoricalCrossentropy(), "probabilities"),
     ("sparse_categorical_crossentropy", "probabilities"), ("mse", "regression"),
     (keras.losses.Huber(), "regression"), (keras.losses.mean_absolute_error, "regression")],
)
def test_output_kind_is_read_from_the_loss(loss, outputs):
    assert distillation_lib.output_kind(loss) == outputs
    assert singe_keras.Distillation().loss(loss).outputs == outputs


def _custom_loss(y_true, y_pred):
    return keras.losses.sparse_categorical_crossentropy(y_true, y_pred, from_logits=True)


def test_an_unknown_loss_needs_explicit_outputs():
    model = zoo.build("chain")
    model.compile(optimizer="sgd", loss=_custom_loss)
    with pytest.raises(ValueError, match=r"Distillation\(outputs=...\)"):
        singe_keras.prune(model, _data(model), target_flops=0.5, distillation=True)
    singe_keras.prune(model, _data(model), target_flops=0.5, rounds=1, finetune_steps=1,
                      distillation={"outputs": "logits"}, verbose=0)


def test_a_teacher_of_other_shapes_is_rejected():
    model = _compiled()
    other = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Flatten(),
                              keras.layers.Dense(4)])
    with pytest.raises(ValueError, match="teacher's output shape"):
        singe_keras.prune(model, _data(model), target_flops=0.5,
                          distillation={"teacher": other})


@pytest.mark.parametrize(
    "arguments, error, message",
    [({"alpha": 1.5}, ValueError, "`alpha` must be in"),
     ({"alpha": True}, ValueError, "`alpha` must be in"),
     ({"temperature": 0}, ValueError, "`temperature` must be a positive"),
     ({"outputs": "softmax"}, ValueError, "`outputs` must be one of"),
     ({"teacher": "resnet"}, TypeError, "`teacher` must be a keras.Model")],
)
def test_bad_distillation_settings_are_rejected(arguments, error, message):
    with pytest.raises(error, match=message):
        singe_keras.Distillation(**arguments)


def test_bad_distillation_argument_is_rejected():
    model = _compiled()
    with pytest.raises(TypeError, match="`distillation` must be None, True"):
        singe_keras.prune(model, _data(model), target_flops=0.5, distillation="kl")


def test_label_free_singe_relevances_are_real_where_taylor_gives_zero():
    model = _compiled("residual")
    x = zoo.sample_inputs(model, batch=32, seed=0)
    targets = (x, distillation_lib.teacher_outputs(model)(x))
    loss = singe_keras.DistillationLoss("logits")
    criteria = singe_keras.criteria

    def relevance(criterion):
        return singe_keras.score(model, targets, criterion).flat()

    # At the teacher itself the loss is at its minimum: its gradient is zero,
    # so Taylor (|gradient|) and Fisher (gradient^2) see float32 round-off
    # only, while SInGE's path to each removal finds real relevances, with
    # either reduction.
    for singe, local in (
        (criteria.IntegratedGradients(loss=loss), criteria.Fisher(loss=loss)),
        (criteria.IntegratedGradients(loss=loss, reduction="abs"), criteria.Taylor(loss=loss)),
    ):
        path = relevance(singe)
        assert np.all(path > 0)
        assert relevance(local).max() < 1e-4 * path.mean()


def test_label_free_prune_scores_with_the_distillation_loss():
    model = _compiled("residual")
    x = zoo.sample_inputs(model, batch=32, seed=0)
    pruned, report = singe_keras.prune(model, x, target_flops=0.5, rounds=1, finetune_steps=0,
                                       recalibration_batches=0, return_report=True, verbose=0)
    graph = singe_keras.trace(model)
    criterion = singe_keras.criteria.IntegratedGradients(loss=singe_keras.DistillationLoss())
    scores = singe_keras.score(graph, (x, distillation_lib.teacher_outputs(model)(x)),
                               criterion)
    plan = allocation.allocate(graph, scores.flat(), 0.5 * singe_keras.count_flops(model),
                               None, report.rounds[0]["normalization"], 1, 1)
    for a, b in zip(singe_keras.rebuild(graph, plan).get_weights(), pruned.get_weights()):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("form", ["array", "tuple", "dataset"])
def test_label_free_fine_tuning_trains_on_the_teacher_alone(form):
    model = zoo.build("chain")  # not compiled: no loss is needed without labels
    x = zoo.sample_inputs(model, batch=32, seed=0)
    data = {"array": x, "tuple": (x,),
            "dataset": tf.data.Dataset.from_tensor_slices(x).batch(16)}[form]
    pruned, report = singe_keras.prune(
        model, data, target_flops=0.5, rounds=2, finetune_steps=2, final_epochs=1,
        optimizer="sgd", distillation={"outputs": "logits"}, return_report=True, verbose=0)
    assert singe_keras.count_flops(pruned) <= 0.5 * singe_keras.count_flops(model)
    assert all(np.isfinite(r["metrics"]["train_loss"]) for r in report.rounds)
    assert set(report.rounds[-1]["metrics"]) == {"train_loss"}


def test_inputs_only_data_is_refused_where_targets_are_needed():
    model = _compiled()
    x = zoo.sample_inputs(model, batch=8)
    with pytest.raises(ValueError, match="holds inputs only"):
        singe_keras.score(model, (x,))
    with pytest.raises(ValueError, match="holds inputs only"):
        singe_keras.score(model, x)
    with pytest.raises(ValueError, match="holds inputs only"):
        singe_keras.prune(model, _data(model), target_flops=0.5, validation_data=x)
    callback = singe_keras.PruningCallback(target_flops=0.5, dataset=x)
    callback.set_model(model)
    with pytest.raises(ValueError, match="holds inputs only"):
        callback.on_train_begin()
