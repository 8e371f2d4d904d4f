"""Trains the second architecture family of the criterion benchmarks: a
VGG-style CIFAR-10 net (a plain chain, no residual couplings).

Three stages of two 3x3 conv -> BatchNorm -> ReLU (32, 64, 128 filters), 2x2
max pooling between stages, global average pooling and a Dense(10) logits
layer; inputs are raw 0-255 pixels, normalized by the first layer, like the
ResNet-20 of ../shared/models. Trained on the offline CIFAR-10 copy with
SGD (momentum 0.9, nesterov), batch 128, cosine learning rate from 0.1,
weight decay 5e-4 on kernels, random crop (4-pixel reflect padding) and
horizontal flip.

    python benchmarks/train_vgg.py --epochs 5
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "examples"))
import cifar10_data  # noqa: E402

MEAN = (125.3, 123.0, 113.9)
STD = (63.0, 62.1, 66.7)


def build(keras):
    regularizer = keras.regularizers.L2(5e-4)
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Normalization(mean=MEAN, variance=[s * s for s in STD], name="normalize")(inputs)
    for stage, filters in enumerate((32, 64, 128), start=1):
        if stage > 1:
            x = keras.layers.MaxPooling2D(name=f"pool{stage}")(x)
        for index in (1, 2):
            name = f"s{stage}_conv{index}"
            x = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False,
                                    kernel_regularizer=regularizer, name=name)(x)
            x = keras.layers.BatchNormalization(name=f"s{stage}_bn{index}")(x)
            x = keras.layers.ReLU(name=f"s{stage}_relu{index}")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = keras.layers.Dense(10, kernel_regularizer=regularizer, name="logits")(x)
    return keras.Model(inputs, outputs, name="vgg_cifar10")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--output", default=os.path.join(os.path.dirname(__file__), "results", "vgg_cifar10.keras"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data", default=cifar10_data.SHARED_DATA,
                        help="the CIFAR-10 .npz copy (../shared/data/README.md)")
    args = parser.parse_args()

    import keras

    import training

    keras.utils.set_random_seed(args.seed)
    train = cifar10_data.load_split(args.data, "train")
    test = cifar10_data.load_split(args.data, "test")
    steps = args.epochs * (len(train[0]) // training.BATCH)
    schedule = keras.optimizers.schedules.CosineDecay(0.1, steps)
    training.fit_and_save(
        build(keras), keras.optimizers.SGD(schedule, momentum=0.9, nesterov=True), train, test,
        args.epochs, args.seed, args.output, args.output.replace(".keras", ".json"))

if __name__ == "__main__":
    main()
