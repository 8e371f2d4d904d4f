"""Issue 26.1: how close `prune` ends to its target, and what `allocate` costs on ResNet-50.

Two measurements:

- the last round's cost / the target, for issue 26's residual CNN (conv16 -
  BN - ReLU, conv16 - BN added back, conv32 stride 2, GAP, Dense 32, Dense 4;
  16x16 inputs, seed 0) pruned with the `"l1"` criterion and no fine-tuning
  to FLOPs and parameter targets 0.3 to 0.7 in 1 to 4 rounds;
- the same for `target_latency`, on the latency predicted by tables built
  with the tests' fake timer (`tests/staircase_timer.py`, `step=1`: each
  channel costs time; the tables' own grid makes 4-channel steps here);
- one `allocate` on keras.applications ResNet-50 (random weights, 224 x 224,
  seeded random relevances) to 0.3, 0.5 and 0.7 of its FLOPs, normalization
  "mean": seconds (median of `--repeats`) and the FLOPs reached / the target.

The `singe_keras` measured is the one on `PYTHONPATH` (recorded in the
results), so that old and new code can run the same script:

    git archive <old commit> singe_keras | tar -x -C /tmp/old
    PYTHONPATH=/tmp/old python benchmarks/target_fill.py --output target_fill_before.json
    PYTHONPATH=. python benchmarks/target_fill.py --output target_fill_after.json
"""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "examples"))
import cifar10_data  # noqa: E402

cifar10_data.quiet_tensorflow()


def residual_cnn():
    import keras

    keras.utils.set_random_seed(0)
    layers = keras.layers
    inputs = keras.Input((16, 16, 3))
    x = layers.Conv2D(16, 3, padding="same")(inputs)
    x = layers.ReLU()(layers.BatchNormalization()(x))
    y = layers.BatchNormalization()(layers.Conv2D(16, 3, padding="same")(x))
    x = layers.Conv2D(32, 3, strides=2, padding="same")(layers.Add()([x, y]))
    x = layers.Dense(32)(layers.GlobalAveragePooling2D()(x))
    return keras.Model(inputs, layers.Dense(4)(x))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", required=True, help="file name in benchmarks/results")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    import keras
    import numpy as np

    import results_io
    import singe_keras
    from singe_keras import allocation

    model = residual_cnn()
    count = {"flops": singe_keras.count_flops, "params": keras.Model.count_params}
    fill = {}
    for target in ("flops", "params"):
        for fraction in (0.3, 0.4, 0.5, 0.6, 0.7):
            ratios = []
            for rounds in (1, 2, 3, 4):
                pruned = singe_keras.prune(model, **{f"target_{target}": fraction},
                                           criterion="l1", rounds=rounds, finetune_steps=0,
                                           verbose=0)
                ratios.append(count[target](pruned) / count[target](model) / fraction)
            fill[f"{target} {fraction}"] = ratios
            print(target, fraction, [round(r, 3) for r in ratios], flush=True)

    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
    from staircase_timer import StaircaseTimer

    latency_model = singe_keras.latency.build(model, timer=StaircaseTimer(step=1),
                                              cache_dir=None)
    latency_model.timer = None  # as tables timed elsewhere: no correction on measurements
    original_ms = latency_model.predict(singe_keras.trace(model))
    for fraction in (0.3, 0.5, 0.7):
        ratios = []
        for rounds in (1, 2, 3, 4):
            pruned = singe_keras.prune(model, target_latency=fraction,
                                       latency_model=latency_model, criterion="l1",
                                       rounds=rounds, finetune_steps=0, verbose=0)
            predicted = latency_model.predict(singe_keras.trace(pruned))
            ratios.append(predicted / original_ms / fraction)
        fill[f"latency {fraction}"] = ratios
        print("latency", fraction, [round(r, 3) for r in ratios], flush=True)

    resnet50 = keras.applications.ResNet50(weights=None, input_shape=(224, 224, 3))
    graph = singe_keras.trace(resnet50)
    relevance = np.random.default_rng(0).random(graph.num_units)
    flops = singe_keras.count_flops(graph)
    resnet = {}
    for fraction in (0.3, 0.5, 0.7):
        seconds = []
        for _ in range(args.repeats):
            started = time.perf_counter()
            plan = allocation.allocate(graph, relevance, max_flops=fraction * flops,
                                       normalization="mean")
            seconds.append(time.perf_counter() - started)
        resnet[str(fraction)] = {
            "median_seconds": float(np.median(seconds)), "seconds": seconds,
            "reached_over_target": singe_keras.count_flops(graph, plan) / (fraction * flops),
        }
        print("resnet50", fraction, resnet[str(fraction)], flush=True)

    results = {
        "singe_keras": os.path.dirname(os.path.dirname(os.path.abspath(singe_keras.__file__))),
        "note": "2 shared cores: other processes ran at the same time",
        "residual_cnn_last_round_over_target": {
            "columns": "rounds 1, 2, 3, 4", "rows": fill},
        "allocate_resnet50_flops_mean": resnet,
    }
    results_io.save(results, os.path.join(os.path.dirname(__file__), "results", args.output))


if __name__ == "__main__":
    main()
