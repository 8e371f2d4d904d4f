"""A one-minute demo: train a small CNN, then prune it with SInGE.

Run it with `python -m singe_keras.demo` (needs scikit-learn for its bundled
8x8 digits dataset: `pip install "singe-keras[demo]"`). Keras (and with it
TensorFlow) is imported once the arguments are read: `--help` answers at once,
and TensorFlow's C++ log lines can be quieted before it loads.
"""

import argparse
import os
import time

import numpy as np

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
    import keras

    # With a few hundred training steps, the default momentum (0.99) leaves
    # the moving statistics far from the batch statistics.
    return keras.layers.BatchNormalization(momentum=0.9, name=name)


def _build_model():
    import keras

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
    import keras

    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )


def _accuracy(model, x, y):
    import keras

    logits = keras.ops.convert_to_numpy(model(x, training=False))
    return float(np.mean(np.argmax(logits, axis=-1) == y))


def _print_table(rows):
    rows = [("", "FLOPs", "Params", "Test accuracy")] + [
        (label, f"{r['flops']:,}", f"{r['params']:,}", f"{r['accuracy']:.4f}")
        for label, r in rows
    ]
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
    """Trains a small CNN on the digits dataset and prunes it with SInGE.

    The CNN (three Conv2D -> BatchNormalization -> ReLU blocks and a Dense
    classifier) is trained on scikit-learn's 8x8 digits, then
    `singe_keras.prune` removes filters in rounds (SInGE scores, global
    ranking, a few fine-tuning steps per round, a final fine-tuning) until the
    model has at most `--target-flops` of its FLOPs. A table compares FLOPs,
    parameters and test accuracy.

    Args:
        argv: command-line arguments, e.g. `["--target-flops", "0.25"]`.
            Defaults to `None` (read `sys.argv`).

    Returns:
        A dict with the `flops`, `params` and `accuracy` of the model
        `"before"` and `"after"` pruning.

    Raises:
        ImportError: if scikit-learn is not installed.
        SystemExit: if an argument is invalid.

    Example:

    ```python
    from singe_keras import demo
    results = demo.main(["--target-flops", "0.5", "--epochs", "5"])
    results["after"]["accuracy"]
    ```
    """
    parser = argparse.ArgumentParser(
        prog="python -m singe_keras.demo", description=main.__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--target-flops", type=float, default=0.4,
        help="fraction of the FLOPs the pruned model keeps (default: 0.4)",
    )
    parser.add_argument(
        "--epochs", type=int, default=10,
        help="training epochs before pruning (default: 10)",
    )
    parser.add_argument(
        "--rounds", type=int, default=3, help="pruning rounds (default: 3)"
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument(
        "--verbose", action="store_true", help="show Keras training progress"
    )
    args = parser.parse_args(argv)
    if not 0 < args.target_flops <= 1:
        parser.error(f"--target-flops must be in (0, 1]. Received: {args.target_flops}")
    if args.epochs < 0:
        parser.error(f"--epochs must be >= 0. Received: {args.epochs}")
    # Quiets TensorFlow's C++ log lines (unless the user chose a level); it
    # reads the variable when it loads, below.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras

    import singe_keras

    start = time.perf_counter()
    x_train, x_test, y_train, y_test = _load_digits()
    keras.utils.set_random_seed(args.seed)
    model = _build_model()
    _compile(model)
    model.fit(
        x_train, y_train, batch_size=_BATCH_SIZE, epochs=args.epochs,
        verbose=2 if args.verbose else 0,
    )
    small = singe_keras.prune(
        model, (x_train, y_train), target_flops=args.target_flops,
        rounds=args.rounds, finetune_steps=40, final_epochs=_FINE_TUNE_EPOCHS,
        batch_size=_BATCH_SIZE, seed=args.seed,
    )
    results = {
        name: {
            "flops": singe_keras.count_flops(m),
            "params": m.count_params(),
            "accuracy": _accuracy(m, x_test, y_test),
        }
        for name, m in (("before", model), ("after", small))
    }
    _print_table([("Before pruning", results["before"]), ("After pruning", results["after"])])
    print(f"Done in {time.perf_counter() - start:.1f} s.")
    return results


if __name__ == "__main__":
    main()
