"""A one-minute demo: train a small CNN, prune it, fine-tune it.

Run it with `python -m singe_keras.demo` (needs scikit-learn for its bundled
8x8 digits dataset: `pip install "singe-keras[demo]"`).
"""

import argparse
import time

import keras
import numpy as np

import singe_keras

# The train/test split stays the same whatever `--seed` is, so that runs with
# different seeds are evaluated on the same images.
_SPLIT_SEED = 0
_FINE_TUNE_EPOCHS = 3
_BATCH_SIZE = 32


def _load_digits():
    try:
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split
    except ImportError:
        raise ImportError(
            "The demo needs scikit-learn: pip install 'singe-keras[demo]'"
        ) from None
    digits = load_digits()
    images = (digits.images / 16.0).astype("float32")[..., None]  # (1797, 8, 8, 1)
    labels = digits.target.astype("int32")
    return train_test_split(
        images, labels, test_size=0.25, random_state=_SPLIT_SEED, stratify=labels
    )


def _batch_norm(name):
    # With a few hundred training steps, the default momentum (0.99) leaves
    # the moving statistics far from the batch statistics.
    return keras.layers.BatchNormalization(momentum=0.9, name=name)


def _build_model():
    inputs = keras.Input((8, 8, 1))
    x = inputs
    for name, filters in (("conv1", 16), ("conv2", 32)):
        x = keras.layers.Conv2D(filters, 3, padding="same", name=name)(x)
        x = _batch_norm(f"{name}_bn")(x)
        x = keras.layers.ReLU(name=f"{name}_relu")(x)
    x = keras.layers.MaxPooling2D(name="pool")(x)
    x = keras.layers.Conv2D(32, 3, padding="same", name="conv3")(x)
    x = _batch_norm("conv3_bn")(x)
    x = keras.layers.ReLU(name="conv3_relu")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    outputs = keras.layers.Dense(10, name="logits")(x)
    return keras.Model(inputs, outputs, name="digits_cnn")


def _compile(model):
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )


def _accuracy(model, x, y):
    logits = keras.ops.convert_to_numpy(model(x, training=False))
    return float(np.mean(np.argmax(logits, axis=-1) == y))


def _magnitude_scores(model, group):
    """L1 norm of each unit's kernel slice, summed over the group's producers.

    A stand-in until the SInGE criterion lands; a later issue replaces this
    function with `singe_keras.prune`. It assumes that output channel `u` of
    every producer is unit `u` of the group, which holds for convolutions and
    Dense layers whose outputs are not concatenated with other producers'.
    """
    scores = np.zeros(group.size)
    for path in group.producers:
        kernel = keras.ops.convert_to_numpy(model.get_layer(path).kernel)
        scores += np.abs(kernel).reshape(-1, kernel.shape[-1]).sum(axis=0)
    return scores


def _print_table(results):
    rows = [("", "FLOPs", "Params", "Test accuracy")]
    labels = {
        "before": "Before pruning",
        "pruned": "Pruned",
        "fine_tuned": f"Fine-tuned ({_FINE_TUNE_EPOCHS} epochs)",
    }
    for key, label in labels.items():
        r = results[key]
        rows.append(
            (label, f"{r['flops']:,}", f"{r['params']:,}", f"{r['accuracy']:.4f}")
        )
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = [
        "  ".join(
            cell.ljust(w) if i == 0 else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(row, widths))
        )
        for row in rows
    ]
    lines.insert(1, "-" * len(lines[0]))
    print("\n".join(lines))


def main(argv=None):
    """Trains a small CNN on the digits dataset, prunes it and fine-tunes it.

    The CNN (three Conv2D -> BatchNormalization -> ReLU blocks and a Dense
    classifier) is trained on scikit-learn's 8x8 digits, then every coupling
    group keeps its `keep_ratio` units with the largest kernel L1 norm. The
    smaller model is rebuilt with `singe_keras.rebuild`, fine-tuned for a few
    epochs, and a table compares FLOPs, parameters and test accuracy.

    Args:
        argv: command-line arguments, e.g. `["--keep-ratio", "0.25"]`.
            Defaults to `None` (read `sys.argv`).

    Returns:
        A dict with the `flops`, `params` and `accuracy` of the model
        `"before"` pruning, `"pruned"` (right after pruning) and
        `"fine_tuned"`.

    Raises:
        ImportError: if scikit-learn is not installed.
        SystemExit: if an argument is invalid.

    Example:

    ```python
    from singe_keras import demo
    results = demo.main(["--keep-ratio", "0.5", "--epochs", "5"])
    results["fine_tuned"]["accuracy"]
    ```
    """
    parser = argparse.ArgumentParser(
        prog="python -m singe_keras.demo", description=main.__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--keep-ratio", type=float, default=0.5,
        help="fraction of the units each coupling group keeps (default: 0.5)",
    )
    parser.add_argument(
        "--epochs", type=int, default=10,
        help="training epochs before pruning (default: 10)",
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument(
        "--verbose", action="store_true", help="show Keras training progress"
    )
    args = parser.parse_args(argv)
    if not 0 < args.keep_ratio <= 1:
        parser.error(f"--keep-ratio must be in (0, 1]. Received: {args.keep_ratio}")
    if args.epochs < 0:
        parser.error(f"--epochs must be >= 0. Received: {args.epochs}")

    start = time.perf_counter()
    x_train, x_test, y_train, y_test = _load_digits()
    keras.utils.set_random_seed(args.seed)
    fit_verbose = 2 if args.verbose else 0

    model = _build_model()
    _compile(model)
    model.fit(
        x_train, y_train, batch_size=_BATCH_SIZE, epochs=args.epochs,
        verbose=fit_verbose,
    )
    before = {
        "flops": singe_keras.count_flops(model),
        "params": model.count_params(),
        "accuracy": _accuracy(model, x_test, y_test),
    }

    graph = singe_keras.trace(model)
    plan = singe_keras.Plan.full(graph)
    for group in graph.groups:
        scores = _magnitude_scores(model, group)
        count = max(1, round(args.keep_ratio * group.size))
        plan = plan.with_kept(group.name, np.argsort(-scores)[:count])
    small = singe_keras.rebuild(graph, plan)
    pruned_accuracy = _accuracy(small, x_test, y_test)

    _compile(small)
    small.fit(
        x_train, y_train, batch_size=_BATCH_SIZE, epochs=_FINE_TUNE_EPOCHS,
        verbose=fit_verbose,
    )

    after = {
        "flops": singe_keras.count_flops(small),
        "params": small.count_params(),
    }
    results = {
        "before": before,
        "pruned": {**after, "accuracy": pruned_accuracy},
        "fine_tuned": {**after, "accuracy": _accuracy(small, x_test, y_test)},
    }

    kept = ", ".join(
        f"{g.name} {len(plan.keep[g.name])}/{g.size}" for g in graph.groups
    )
    print(f"Kept units per group (largest kernel L1 norms): {kept}")
    _print_table(results)
    print(f"Done in {time.perf_counter() - start:.1f} s.")
    return results


if __name__ == "__main__":
    main()
