"""Prune a CIFAR-10 ResNet with SInGE and export it to TFLite, end to end.

The whole user story in one script: load CIFAR-10, take the pretrained
ResNet-20 (or train a small ResNet), prune it to half its FLOPs with
`singe_keras.prune` (SInGE: Yvinec et al., "SInGE: Sparsity via Integrated
Gradients Estimation of Neuron Relevance", NeurIPS 2022), export both models
to float32 and full-int8 .tflite files, time them in LiteRT and print a
before/after table.

    python examples/cifar10_resnet.py                      # tfds, downloads CIFAR-10
    python examples/cifar10_resnet.py --data cifar10_jpeg.npz   # offline copy
    python examples/cifar10_resnet.py --train --train-epochs 10  # no pretrained model

Writes into `--output-dir` (default `./cifar10_out`): `original_float32.tflite`,
`original_int8.tflite`, `pruned_float32.tflite`, `pruned_int8.tflite` (each
with its export record as .json), `pruned.keras`, the pruning report
`report.json` and the table as `summary.json`.

The data loading and model helpers are imported by `callback_fit.py`.
"""

import argparse
import importlib.util
import json
import os

import keras
import numpy as np
import tensorflow as tf

import singe_keras

HERE = os.path.dirname(os.path.abspath(__file__))
PRETRAINED = os.path.normpath(
    os.path.join(HERE, "..", "..", "shared", "models", "resnet20_cifar10.keras")
)
LITERT_BENCH = os.path.join(HERE, "..", "export", "litert_bench.py")


# ----------------------------------------------------------------------------
# Data


def add_data_arguments(parser):
    """Adds the CIFAR-10 source and size options to an argparse parser."""
    group = parser.add_argument_group("data")
    group.add_argument(
        "--data", metavar="PATH.npz",
        help="offline CIFAR-10: JPEG bytes + offsets, as ../shared/data/cifar10_jpeg.npz "
        "(default: tensorflow-datasets' 'cifar10')",
    )
    group.add_argument("--tfds-data-dir", help="tensorflow-datasets data_dir")
    group.add_argument(
        "--no-download", action="store_true",
        help="tensorflow-datasets: use prepared data only, never download",
    )
    group.add_argument("--train-samples", type=int, help="use the first N training images")
    group.add_argument("--test-samples", type=int, help="use the first N test images")


def load_data(args):
    """`load_cifar10` with the options of `add_data_arguments`."""
    if args.data and (args.tfds_data_dir or args.no_download):
        raise SystemExit("--data reads a local file; --tfds-data-dir and --no-download "
                         "are for tensorflow-datasets. Pass one or the other.")
    return load_cifar10(
        path=args.data,
        tfds_data_dir=args.tfds_data_dir,
        download=not args.no_download,
        train_samples=args.train_samples,
        test_samples=args.test_samples,
    )


def load_cifar10(path=None, tfds_data_dir=None, download=True, train_samples=None,
                 test_samples=None):
    """CIFAR-10 as NumPy arrays.

    Args:
        path: an .npz file in the format of ../shared/data/cifar10_jpeg.npz,
            or `None` to use tensorflow-datasets' `cifar10`.
        tfds_data_dir: `data_dir` of `tfds.load`.
        download: whether `tfds.load` may download.
        train_samples, test_samples: keep only the first N of each split
            (`None`: all).

    Returns:
        `((x_train, y_train), (x_test, y_test))`: float32 images (N, 32, 32, 3)
        with values 0-255, int64 labels.
    """
    if path is not None:
        return (_load_npz(path, "train", train_samples),
                _load_npz(path, "test", test_samples))
    return (_load_tfds("train", train_samples, tfds_data_dir, download),
            _load_tfds("test", test_samples, tfds_data_dir, download))


def _load_npz(path, split, count):
    archive = np.load(path)
    blob, offsets = archive[f"{split}_jpeg"], archive[f"{split}_offsets"]
    labels = archive[f"y_{split}"].astype("int64")[:count]
    images = np.stack([
        tf.io.decode_jpeg(blob[offsets[i]:offsets[i + 1]].tobytes(), channels=3).numpy()
        for i in range(len(labels))
    ])
    return images.astype("float32"), labels


def _load_tfds(split, count, data_dir, download):
    # Imported here: users of --data need not install tensorflow-datasets.
    import tensorflow_datasets as tfds

    images, labels = tfds.as_numpy(tfds.load(
        "cifar10",
        split=split if count is None else f"{split}[:{count}]",
        as_supervised=True,
        batch_size=-1,  # the whole split as one pair of arrays
        data_dir=data_dir,
        download=download,
    ))
    return images.astype("float32"), labels.astype("int64")


def make_train_dataset(x, y, batch_size, seed):
    """Shuffled batches with random horizontal flips, the same for the same seed."""
    # The shuffle buffer holds indices, not 600 MB of float32 images.
    images, labels = tf.constant(x), tf.constant(y)

    def augment(step, indices):
        batch = tf.gather(images, indices)
        # Stateless flips: no random state shared between parallel map calls.
        batch = tf.image.stateless_random_flip_left_right(batch, seed=tf.stack([seed, step]))
        return batch, tf.gather(labels, indices)

    return (
        tf.data.Dataset.range(len(x))
        .shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
        .batch(batch_size)
        .enumerate()
        .map(augment, num_parallel_calls=tf.data.AUTOTUNE)
        .prefetch(tf.data.AUTOTUNE)
    )


# ----------------------------------------------------------------------------
# Model


def add_model_arguments(parser):
    """Adds the model source options (pretrained file or a small trained ResNet)."""
    group = parser.add_argument_group("model")
    source = group.add_mutually_exclusive_group()
    source.add_argument(
        "--model", metavar="PATH.keras",
        help=f"a Keras model taking 0-255 pixels, outputting 10 logits (default: {PRETRAINED})",
    )
    source.add_argument(
        "--train", action="store_true",
        help="train a small CIFAR ResNet instead of loading a pretrained model",
    )
    group.add_argument("--train-epochs", type=int, default=10,
                       help="epochs of --train (default: 10)")
    group.add_argument("--batch-size", type=int, default=128, help="default: 128")


def get_model(args, train_dataset):
    """The compiled model to prune: loaded from `--model` or trained (`--train`)."""
    if args.train:
        model = small_resnet()
        compile_classifier(model)
        print(f"Training a small ResNet for {args.train_epochs} epochs.", flush=True)
        # shuffle=False: the dataset shuffles itself (Keras warns otherwise).
        model.fit(train_dataset, epochs=args.train_epochs, shuffle=False, verbose=2)
        return model
    path = args.model or PRETRAINED
    if not os.path.exists(path):
        raise SystemExit(f"No model at {path}. Pass --model PATH.keras, or --train to "
                         "train a small ResNet.")
    model = keras.models.load_model(path)
    if not model.compiled:
        compile_classifier(model)
    return model


def compile_classifier(model, learning_rate=0.05):
    """SGD with momentum on 10 logits: what `prune` fine-tunes with."""
    model.compile(
        optimizer=keras.optimizers.SGD(learning_rate, momentum=0.9),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )


def small_resnet(widths=(16, 32, 64)):
    """A CIFAR ResNet with one basic block per stage; takes 0-255 pixels."""
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Rescaling(1 / 255)(inputs)
    x = keras.layers.Conv2D(widths[0], 3, padding="same", use_bias=False)(x)
    x = keras.layers.ReLU()(keras.layers.BatchNormalization()(x))
    for stage, width in enumerate(widths):
        strides = 1 if stage == 0 else 2
        shortcut = x
        if strides != 1 or shortcut.shape[-1] != width:
            shortcut = keras.layers.Conv2D(width, 1, strides, use_bias=False)(x)
            shortcut = keras.layers.BatchNormalization()(shortcut)
        y = keras.layers.Conv2D(width, 3, strides, padding="same", use_bias=False)(x)
        y = keras.layers.ReLU()(keras.layers.BatchNormalization()(y))
        y = keras.layers.Conv2D(width, 3, padding="same", use_bias=False)(y)
        y = keras.layers.BatchNormalization()(y)
        x = keras.layers.ReLU()(keras.layers.Add()([shortcut, y]))
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(10)(x)
    return keras.Model(inputs, outputs, name="small_resnet")


def accuracy(model, x, y):
    """Top-1 accuracy of a logits model on arrays."""
    logits = model.predict(x, batch_size=256, verbose=0)
    return float(np.mean(np.argmax(logits, -1) == y))


# ----------------------------------------------------------------------------
# TFLite latency


def latency_ms(paths, runs, warmup=10):
    """Median `invoke()` latency of each .tflite file: 1 thread, batch 1, XNNPACK.

    Uses the repository's device-side toolkit (export/litert_bench.py), which
    times the files of a pair in interleaved blocks so that background load
    falls on both alike.

    Args:
        paths: `{name: path}` of two files, the original first.
        runs, warmup: timed and untimed invocations per file.

    Returns:
        `{name: median ms}`.
    """
    # export/ is a folder of scripts, not a package: load the file directly.
    spec = importlib.util.spec_from_file_location("litert_bench", LITERT_BENCH)
    toolkit = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(toolkit)
    (first, first_path), (second, second_path) = paths.items()
    result = toolkit.compare(
        toolkit.load(first_path, threads=1), toolkit.load(second_path, threads=1),
        runs=runs, warmup=warmup, block=max(1, min(10, runs)),
    )
    return {first: result["original"]["median_ms"], second: result["pruned"]["median_ms"]}


# ----------------------------------------------------------------------------
# Table


def format_table(rows, columns=("original", "pruned")):
    """Rows as aligned text with a last/first ratio column.

    Args:
        rows: `(label, {column: value}, format)`, or with a fourth item
            `False` for a row whose ratio means nothing.
    """
    header = ("", *columns, "ratio")
    lines = [header]
    for label, values, fmt, *with_ratio in rows:
        cells = [fmt.format(values[c]) if values.get(c) is not None else "-" for c in columns]
        first, last = values.get(columns[0]), values.get(columns[-1])
        ratio = "-"
        if first and last is not None and with_ratio != [False]:
            ratio = f"{last / first:.2f}x"
        lines.append((label, *cells, ratio))
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    text = [
        "  ".join(cell.ljust(w) if i == 0 else cell.rjust(w)
                  for i, (cell, w) in enumerate(zip(line, widths)))
        for line in lines
    ]
    text.insert(1, "-" * len(text[0]))
    return "\n".join(text)


# ----------------------------------------------------------------------------
# Main


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_data_arguments(parser)
    add_model_arguments(parser)
    group = parser.add_argument_group("pruning")
    group.add_argument("--target-flops", type=float, default=0.5,
                       help="keep this fraction of the FLOPs (default: 0.5)")
    group.add_argument("--rounds", type=int, default=4, help="default: 4")
    group.add_argument("--finetune-steps", type=int, default=100,
                       help="optimizer steps after each round (default: 100)")
    group.add_argument("--final-epochs", type=int, default=1,
                       help="fine-tuning epochs after the last round (default: 1)")
    group.add_argument("--score-samples", type=int, default=256,
                       help="training images that score the units each round (default: 256)")
    group.add_argument("--seed", type=int, default=0, help="default: 0")
    group = parser.add_argument_group("export")
    group.add_argument("--output-dir", default="cifar10_out", help="default: ./cifar10_out")
    group.add_argument("--latency-runs", type=int, default=100,
                       help="timed TFLite invocations per file (default: 100)")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    os.makedirs(args.output_dir, exist_ok=True)
    keras.utils.set_random_seed(args.seed)

    (x_train, y_train), (x_test, y_test) = load_data(args)
    print(f"CIFAR-10: {len(x_train)} training and {len(x_test)} test images.", flush=True)
    train = make_train_dataset(x_train, y_train, args.batch_size, args.seed)
    model = get_model(args, train)

    # The test set only monitors the rounds here; prune() selects nothing with it.
    validation = tf.data.Dataset.from_tensor_slices((x_test, y_test)).batch(256)
    pruned, report = singe_keras.prune(
        model,
        train,
        target_flops=args.target_flops,
        criterion=singe_keras.criteria.IntegratedGradients(samples=args.score_samples),
        rounds=args.rounds,
        finetune_steps=args.finetune_steps,
        final_epochs=args.final_epochs,
        seed=args.seed,
        validation_data=validation,
        return_report=True,
    )
    report.save(os.path.join(args.output_dir, "report.json"))
    pruned.save(os.path.join(args.output_dir, "pruned.keras"))

    models = {"original": model, "pruned": pruned}
    exports = {}
    for name, candidate in models.items():
        for quantization in (None, "int8"):
            path = os.path.join(args.output_dir, f"{name}_{quantization or 'float32'}.tflite")
            result = singe_keras.export_tflite(
                candidate, path, quantization=quantization,
                representative_dataset=x_train[:200],
            )
            result.save()
            exports[name, quantization or "float32"] = result
    latency = {
        kind: latency_ms({name: exports[name, kind].path for name in models}, args.latency_runs)
        for kind in ("float32", "int8")
    }

    rows = [
        ("test accuracy", {n: accuracy(m, x_test, y_test) for n, m in models.items()}, "{:.2%}"),
        ("FLOPs (M)", {n: singe_keras.count_flops(m) / 1e6 for n, m in models.items()}, "{:,.2f}"),
        ("params", {n: m.count_params() for n, m in models.items()}, "{:,}"),
    ]
    for kind in ("float32", "int8"):
        rows.append((f".tflite {kind} (KB)",
                     {n: exports[n, kind].size_bytes / 1024 for n in models}, "{:,.1f}"))
    for kind in ("float32", "int8"):
        rows.append((f"TFLite {kind} latency (ms)", latency[kind], "{:.3f}"))
    rows.append(("int8 top-1 agreement",
                 {n: exports[n, "int8"].top1_agreement for n in models}, "{:.2%}", False))

    print()
    print(format_table(rows))
    print(f"\nLatency: median of {args.latency_runs} runs, 1 thread, batch 1, XNNPACK; "
          "timed with export/litert_bench.py compare.")
    print(f"int8 top-1 agreement: argmax of the int8 file vs Keras on the first "
          f"{min(32, len(x_train))} training images (export_tflite's check).")
    summary = {label: values for label, values, *_ in rows}
    summary["exports"] = {f"{n}_{k}": r.to_dict() for (n, k), r in exports.items()}
    with open(os.path.join(args.output_dir, "summary.json"), "w") as f:
        json.dump(summary, f, indent=1, default=float)
    print(f"Files in {args.output_dir}.")
    return summary


if __name__ == "__main__":
    main()
