"""TFLite latency of a pruned ResNet-20 against the original, next to FLOPs.

The pretrained CIFAR-10 ResNet-20 of ../shared/models is pruned to 50% of its
FLOPs with SInGE scored on 64 training images (one shot, no fine-tuning:
latency does not depend on the weights' values; a magnitude criterion's
global ranking can leave 1-channel layers, see benchmarks/README.md), exported as float32 and int8 .tflite files,
and timed with the device-side toolkit (export/litert_bench.py): batch 1,
1 thread, XNNPACK on, runs of both models interleaved in one process.

    python benchmarks/tflite_latency.py --output benchmarks/results/tflite_latency.json
    python benchmarks/tflite_latency.py --round-to 8 \
        --output benchmarks/results/tflite_latency_round8.json
    python benchmarks/tflite_latency.py --round-to 16 \
        --output benchmarks/results/tflite_latency_round16.json
"""

import argparse
import os
import sys
import tempfile

import keras

import results_io
import singe_keras

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "export"))
import litert_bench  # noqa: E402  (the device-side toolkit, not a package)

# The CIFAR-10 loader of the examples (examples/ is a folder of scripts).
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "examples"))
import cifar10_data  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target-flops", type=float, default=0.5)
    parser.add_argument("--runs", type=int, default=500)
    parser.add_argument("--round-to", type=int, default=1,
                        help="channel multiple of every pruned layer (SIMD width)")
    parser.add_argument("--output", default="benchmarks/results/tflite_latency.json")
    parser.add_argument("--data", default=cifar10_data.SHARED_DATA,
                        help="CIFAR-10 .npz (default: %(default)s)")
    parser.add_argument("--model", default=cifar10_data.PRETRAINED,
                        help="pretrained ResNet-20 (default: %(default)s)")
    args = parser.parse_args()

    model = keras.models.load_model(args.model)
    calibration = cifar10_data.load_split(args.data, "train", 200)
    pruned = singe_keras.prune(
        model, (calibration[0][:64], calibration[1][:64]), target_flops=args.target_flops,
        criterion=singe_keras.criteria.IntegratedGradients(samples=64), rounds=1,
        finetune_steps=0, round_to=args.round_to, verbose=0,
    )
    calibration = calibration[0]
    flops = {"original": singe_keras.count_flops(model), "pruned": singe_keras.count_flops(pruned)}
    results = {
        "target_flops": args.target_flops,
        "round_to": args.round_to,
        "filters": [l.filters for l in pruned.layers if isinstance(l, keras.layers.Conv2D)],
        "flops": flops,
        "files": {},
        "latency": {},
    }
    with tempfile.TemporaryDirectory() as directory:
        paths = {}
        for name, m in (("original", model), ("pruned", pruned)):
            for quantization in (None, "int8"):
                key = f"{name}_{quantization or 'float32'}"
                paths[key] = os.path.join(directory, key + ".tflite")
                result = singe_keras.export_tflite(
                    m, paths[key], quantization=quantization,
                    representative_dataset=calibration if quantization else None,
                )
                results["files"][key] = {
                    "bytes": result.size_bytes,
                    "runs_with_xnnpack": result.runs_with_xnnpack,
                    "max_relative_error": result.max_relative_error,
                    "top1_agreement": result.top1_agreement,
                }
        for precision in ("float32", "int8"):
            comparison = litert_bench.compare(
                litert_bench.load(paths[f"original_{precision}"], threads=1, xnnpack=True),
                litert_bench.load(paths[f"pruned_{precision}"], threads=1, xnnpack=True),
                runs=args.runs, warmup=50,
                flops_original=flops["original"], flops_pruned=flops["pruned"],
            )
            results["latency"][precision] = comparison
            print(f"{precision}: latency ratio {comparison['latency_ratio']:.3f}, "
                  f"FLOPs ratio {comparison['flops_ratio']:.3f}", flush=True)
    results_io.save(results, args.output)


if __name__ == "__main__":
    main()
