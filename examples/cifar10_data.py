"""CIFAR-10 for the examples and the benchmarks.

Two sources, one form: the offline copy (an .npz of JPEG bytes, as
`shared/data/cifar10_jpeg.npz` next to this repository) or
tensorflow-datasets' `cifar10` (downloaded; `pip install
"singe-keras[datasets]"`). Both give float32 images (N, 32, 32, 3) with
values 0-255 and int64 labels; the models normalize the pixels themselves.
JPEG images are decoded with `tf.io.decode_jpeg`, the decoder the pretrained
ResNet-20 was evaluated with.

    import sys; sys.path.insert(0, "examples")   # from the repository root
    from cifar10_data import load_cifar10
    (x_train, y_train), (x_test, y_test) = load_cifar10(
        "../shared/data/cifar10_jpeg.npz", train_samples=2000, test_samples=500)

TensorFlow is imported only by the functions that need it, so that scripts
can answer `--help` before paying for it.
"""

import os

import numpy as np

# Where this project's machines keep the offline copy and the pretrained
# ResNet-20 (a `shared` folder next to the repository). Only defaults of
# command-line options: every function takes its paths as arguments.
SHARED = os.path.normpath(
    os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared")
)
SHARED_DATA = os.path.join(SHARED, "data", "cifar10_jpeg.npz")
PRETRAINED = os.path.join(SHARED, "models", "resnet20_cifar10.keras")


def quiet_tensorflow():
    """Quiets TensorFlow's C++ log lines, unless the user chose a level.

    Must run before TensorFlow is imported. Sets `TF_CPP_MIN_LOG_LEVEL=3`
    (errors surface as Python exceptions anyway) only if the variable is
    unset; `TF_CPP_MIN_LOG_LEVEL=0` shows everything. TensorFlow 2.21 still
    prints a few lines while it loads (oneDNN, CUDA drivers), before it reads
    the variable.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def add_data_arguments(parser):
    """Adds the CIFAR-10 source and size options to an argparse parser."""
    group = parser.add_argument_group("data")
    group.add_argument(
        "--data", metavar="PATH.npz",
        help=f"offline CIFAR-10: JPEG bytes + offsets, as {SHARED_DATA} "
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
        path: an .npz file in the format of `shared/data/cifar10_jpeg.npz`,
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
        return (load_split(path, "train", train_samples),
                load_split(path, "test", test_samples))
    return (_load_tfds("train", train_samples, tfds_data_dir, download),
            _load_tfds("test", test_samples, tfds_data_dir, download))


def load_split(path, split, count=None):
    """One split (`"train"` or `"test"`) of the .npz copy: `(images, labels)`."""
    import tensorflow as tf

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
    import tensorflow as tf

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
