"""CIFAR-10 from the offline copy in ../shared/data (see its README).

Images are JPEG-encoded; they are decoded with `tf.io.decode_jpeg` (the
decoder the pretrained baselines were evaluated with) into float32 0-255
pixels, which the models normalize themselves.
"""

import os

import numpy as np
import tensorflow as tf

SHARED = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared")
DATA = os.path.join(SHARED, "data", "cifar10_jpeg.npz")
RESNET20 = os.path.join(SHARED, "models", "resnet20_cifar10.keras")


def load(split, count=None, path=DATA):
    """Returns `(images, labels)`: float32 (N, 32, 32, 3) in 0-255, int labels."""
    archive = np.load(path)
    blob, offsets = archive[f"{split}_jpeg"], archive[f"{split}_offsets"]
    labels = archive[f"y_{split}"].astype("int64")
    count = len(labels) if count is None else count
    images = np.stack(
        [
            tf.io.decode_jpeg(blob[offsets[i] : offsets[i + 1]].tobytes(), channels=3).numpy()
            for i in range(count)
        ]
    ).astype("float32")
    return images, labels[:count]
