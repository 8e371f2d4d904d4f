"""Prune a CIFAR-10 ResNet inside your own `model.fit` with `PruningCallback`.

The same story as `cifar10_resnet.py`, for users who keep their training loop:
`singe_keras.PruningCallback` scores the units with SInGE at the start of
epochs 0, 1, ... (`--rounds` times) and holds the removed ones at zero
while `fit` trains; `singe_keras.strip` then builds the physically smaller
model, which is evaluated and exported to a float32 .tflite file.

    python examples/callback_fit.py                        # tfds, downloads CIFAR-10
    python examples/callback_fit.py --data cifar10_jpeg.npz    # offline copy

Writes `original_float32.tflite`, `pruned_float32.tflite` (each with its
export record as .json), `pruned.keras` and the table as `summary.json` into
`--output-dir` (default `./singe_keras_output/callback_fit`).
"""

import argparse
import json
import os

import cifar10_data
import cifar10_resnet as shared


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    cifar10_data.add_data_arguments(parser)
    shared.add_model_arguments(parser)
    group = parser.add_argument_group("pruning")
    group.add_argument("--target-flops", type=float, default=0.5,
                       help="keep this fraction of the FLOPs (default: 0.5)")
    group.add_argument("--epochs", type=int, default=4, help="epochs of fit (default: 4)")
    group.add_argument("--rounds", type=int, default=3,
                       help="prune at the start of epochs 0 .. N-1 (default: 3)")
    group.add_argument("--score-samples", type=int, default=256,
                       help="training images that score the units (default: 256)")
    group.add_argument("--seed", type=int, default=0, help="default: 0")
    shared.add_output_arguments(parser, "callback_fit")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.rounds > args.epochs:
        raise SystemExit(f"--rounds ({args.rounds}) must not exceed "
                         f"--epochs ({args.epochs}): events happen at epoch starts.")
    cifar10_data.quiet_tensorflow()
    import keras

    import singe_keras

    os.makedirs(args.output_dir, exist_ok=True)
    keras.utils.set_random_seed(args.seed)

    (x_train, y_train), (x_test, y_test) = cifar10_data.load_data(args)
    print(f"CIFAR-10: {len(x_train)} training and {len(x_test)} test images.", flush=True)
    train = cifar10_data.make_train_dataset(x_train, y_train, args.batch_size, args.seed)
    model = shared.get_model(args, train)

    def measure(model, name):
        export = singe_keras.export_tflite(
            model, os.path.join(args.output_dir, f"{name}_float32.tflite"),
            representative_dataset=x_train[:200])
        export.save()
        return {
            "accuracy": shared.accuracy(model, x_test, y_test),
            "flops": singe_keras.count_flops(model),
            "params": model.count_params(),
            "export": export,
        }

    # Measured before fit: the callback trains and masks this very model.
    before = measure(model, "original")

    callback = singe_keras.PruningCallback(
        target_flops=args.target_flops,
        dataset=(x_train[:args.score_samples], y_train[:args.score_samples]),
        criterion=singe_keras.criteria.IntegratedGradients(samples=args.score_samples),
        rounds=args.rounds,
    )
    model.fit(train, epochs=args.epochs, validation_data=(x_test, y_test),
              callbacks=[callback], shuffle=False, verbose=2)

    small = singe_keras.strip(model)
    small.save(os.path.join(args.output_dir, "pruned.keras"))
    after = measure(small, "pruned")
    latency = shared.latency_ms(
        {"original": before["export"].path, "pruned": after["export"].path},
        args.latency_runs,
    )

    runs = {"original": before, "pruned": after}
    rows = [
        ("test accuracy", {n: r["accuracy"] for n, r in runs.items()}, "{:.2%}"),
        ("FLOPs (M)", {n: r["flops"] / 1e6 for n, r in runs.items()}, "{:,.2f}"),
        ("params", {n: r["params"] for n, r in runs.items()}, "{:,}"),
        (".tflite float32 (KB)", {n: r["export"].size_bytes / 1024 for n, r in runs.items()},
         "{:,.1f}"),
        ("TFLite float32 latency (ms)", latency, "{:.3f}"),
    ]
    print()
    print(shared.format_table(rows))
    print(f"\nLatency: median of {args.latency_runs} runs, 1 thread, batch 1, XNNPACK; "
          "timed with export/litert_bench.py compare.")
    summary = {label: values for label, values, *_ in rows}
    with open(os.path.join(args.output_dir, "summary.json"), "w") as f:
        json.dump(summary, f, indent=1, default=float)
    print(f"Files in {os.path.abspath(args.output_dir)}.")
    return summary


if __name__ == "__main__":
    main()
