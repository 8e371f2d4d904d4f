"""Trains the transformer of the ViT benchmark: a small CIFAR-10 ViT made of
built-in Keras layers only.

4x4 patches of the 32x32 image (a stride-4 Conv2D to 64 channels, an 8x8
grid of 64 tokens), a depthwise 3x3 convolution added to the patches as
position encoding (conditional position encoding: zero padding tells the
border, so no custom weight layer is needed), then 4 pre-norm transformer
blocks (LayerNormalization -> MultiHeadAttention with 4 heads of 16 ->
residual add; LayerNormalization -> Dense(128, gelu) -> Dense(64) ->
residual add), a final LayerNormalization, the mean over tokens and a
Dense(10) logits layer. Inputs are raw 0-255 pixels, normalized by the
first layer. AdamW (weight decay 0.05), batch 128, cosine learning rate
from 1e-3 after a one-epoch warm-up, random crop (4-pixel reflect padding)
and horizontal flip.

    python benchmarks/train_vit.py --epochs 8 --train-samples 30000
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "examples"))
import cifar10_data  # noqa: E402

MEAN = (125.3, 123.0, 113.9)
STD = (63.0, 62.1, 66.7)


def build(keras, dim=64, depth=4, heads=4, mlp_ratio=2, patch=4):
    """The ViT of the benchmark (built-in layers only)."""
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Normalization(mean=MEAN, variance=[s * s for s in STD], name="normalize")(inputs)
    x = keras.layers.Conv2D(dim, patch, strides=patch, name="patches")(x)
    position = keras.layers.DepthwiseConv2D(3, padding="same", name="position")(x)
    x = keras.layers.Add(name="position_add")([x, position])
    grid = 32 // patch
    x = keras.layers.Reshape((grid * grid, dim), name="tokens")(x)
    for block in range(1, depth + 1):
        y = keras.layers.LayerNormalization(epsilon=1e-6, name=f"b{block}_ln1")(x)
        y = keras.layers.MultiHeadAttention(heads, dim // heads, name=f"b{block}_attention")(y, y)
        x = keras.layers.Add(name=f"b{block}_add1")([x, y])
        y = keras.layers.LayerNormalization(epsilon=1e-6, name=f"b{block}_ln2")(x)
        y = keras.layers.Dense(mlp_ratio * dim, activation="gelu", name=f"b{block}_mlp1")(y)
        y = keras.layers.Dense(dim, name=f"b{block}_mlp2")(y)
        x = keras.layers.Add(name=f"b{block}_add2")([x, y])
    x = keras.layers.LayerNormalization(epsilon=1e-6, name="ln")(x)
    x = keras.layers.GlobalAveragePooling1D(name="pool")(x)
    outputs = keras.layers.Dense(10, name="logits")(x)
    return keras.Model(inputs, outputs, name="vit_cifar10")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--train-samples", type=int, default=None,
                        help="use the first N training images (default: all 50,000)")
    parser.add_argument("--output", default=os.path.join(os.path.dirname(__file__), "results", "vit_cifar10.keras"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data", default=cifar10_data.SHARED_DATA,
                        help="the CIFAR-10 .npz copy (../shared/data/README.md)")
    args = parser.parse_args()

    import keras

    import training

    keras.utils.set_random_seed(args.seed)
    train = cifar10_data.load_split(args.data, "train", args.train_samples)
    test = cifar10_data.load_split(args.data, "test")
    steps_per_epoch = len(train[0]) // training.BATCH
    steps = args.epochs * steps_per_epoch
    schedule = keras.optimizers.schedules.CosineDecay(
        0.0, steps - steps_per_epoch, warmup_target=1e-3, warmup_steps=steps_per_epoch)
    training.fit_and_save(
        build(keras), keras.optimizers.AdamW(schedule, weight_decay=0.05), train, test,
        args.epochs, args.seed, args.output, args.output.replace(".keras", "_training.json"),
        train_samples=len(train[0]))

if __name__ == "__main__":
    main()
