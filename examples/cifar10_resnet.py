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

Writes into `--output-dir` (default `./singe_keras_output/cifar10_resnet`):
`original_float32.tflite`, `original_int8.tflite`, `pruned_float32.tflite`,
`pruned_int8.tflite` (each with its export record as .json), `pruned.keras`,
the pruning report `report.json` and its plot `report.png` (with matplotlib),
and the table as `summary.json`.

The data come from `cifar10_data.py`; the model, latency and table helpers
here are imported by `callback_fit.py`. TensorFlow is imported after the
arguments are parsed, so `--help` answers at once.
"""

import argparse
import importlib.util
import json
import os

import numpy as np

import cifar10_data

HERE = os.path.dirname(os.path.abspath(__file__))
LITERT_BENCH = os.path.join(HERE, "..", "export", "litert_bench.py")


# ----------------------------------------------------------------------------
# Model


def add_model_arguments(parser):
    """Adds the model source options (pretrained file or a small trained ResNet)."""
    group = parser.add_argument_group("model")
    source = group.add_mutually_exclusive_group()
    source.add_argument(
        "--model", metavar="PATH.keras",
        help="a Keras model taking 0-255 pixels, outputting 10 logits "
        f"(default: {cifar10_data.PRETRAINED})",
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
    import keras

    if args.train:
        model = small_resnet()
        compile_classifier(model)
        print(f"Training a small ResNet for {args.train_epochs} epochs.", flush=True)
        # shuffle=False: the dataset shuffles itself (Keras warns otherwise).
        model.fit(train_dataset, epochs=args.train_epochs, shuffle=False, verbose=2)
        return model
    path = args.model or cifar10_data.PRETRAINED
    if not os.path.exists(path):
        raise SystemExit(f"No model at {path}. Pass --model PATH.keras, or --train to "
                         "train a small ResNet.")
    model = keras.models.load_model(path)
    if not model.compiled:
        compile_classifier(model)
    return model


def compile_classifier(model, learning_rate=0.05):
    """SGD with momentum on 10 logits: what `prune` fine-tunes with."""
    import keras

    model.compile(
        optimizer=keras.optimizers.SGD(learning_rate, momentum=0.9),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )


def small_resnet(widths=(16, 32, 64)):
    """A CIFAR ResNet with one basic block per stage; takes 0-255 pixels."""
    import keras

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


def add_output_arguments(parser, name):
    """Adds `--output-dir` (default `./singe_keras_output/NAME`) and `--latency-runs`."""
    group = parser.add_argument_group("export")
    default = os.path.join("singe_keras_output", name)
    group.add_argument("--output-dir", default=default,
                       help=f"where the files go (default: ./{default})")
    group.add_argument("--latency-runs", type=int, default=100,
                       help="timed TFLite invocations per file (default: 100)")


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    cifar10_data.add_data_arguments(parser)
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
    add_output_arguments(parser, "cifar10_resnet")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    cifar10_data.quiet_tensorflow()
    import keras
    import tensorflow as tf

    import singe_keras

    os.makedirs(args.output_dir, exist_ok=True)
    keras.utils.set_random_seed(args.seed)

    (x_train, y_train), (x_test, y_test) = cifar10_data.load_data(args)
    print(f"CIFAR-10: {len(x_train)} training and {len(x_test)} test images.", flush=True)
    train = cifar10_data.make_train_dataset(x_train, y_train, args.batch_size, args.seed)
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
    print(report)
    report.save(os.path.join(args.output_dir, "report.json"))
    try:
        report.plot(os.path.join(args.output_dir, "report.png"))
    except ImportError as error:  # matplotlib is an extra: the run goes on without it
        print(f"No report.png: {error}")
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
    print(f"Files in {os.path.abspath(args.output_dir)}.")
    return summary


if __name__ == "__main__":
    main()
