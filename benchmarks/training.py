"""Training a CIFAR-10 model from scratch for the benchmarks (train_vgg.py, train_vit.py).

Batches of 128 with 4-pixel reflect-pad random crops and horizontal flips;
the trained model is saved and its history written next to it with the
command, commit and machine (results_io).
"""

import os
import time

import keras
import tensorflow as tf

import results_io

BATCH = 128


def random_crop(image, seed=None):
    """A random 32 x 32 crop of `image` padded by 4 reflected pixels on each side."""
    image = tf.pad(image, [[4, 4], [4, 4], [0, 0]], mode="REFLECT")
    return tf.image.random_crop(image, (32, 32, 3), seed=seed)


def augmented_batches(train, seed):
    """Shuffled batches of `BATCH` with random crops (4-pixel reflect padding) and flips."""

    def augment(image, label):
        return tf.image.random_flip_left_right(random_crop(image)), label

    return (tf.data.Dataset.from_tensor_slices(train).shuffle(len(train[0]), seed=seed)
            .map(augment, num_parallel_calls=2).batch(BATCH, drop_remainder=True).prefetch(2))


def fit_and_save(model, optimizer, train, test, epochs, seed, output, record, **details):
    """Trains `model` on `train`, saves it to `output`, and writes its history to `record`."""
    model.compile(
        optimizer=optimizer,
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    started = time.perf_counter()
    history = model.fit(augmented_batches(train, seed), epochs=epochs, validation_data=test,
                        verbose=2)
    model.save(output)
    results_io.save({
        "model": os.path.basename(output),
        "params": model.count_params(),
        "epochs": epochs,
        **details,
        "seconds": time.perf_counter() - started,
        "test_accuracy_10000": history.history["val_accuracy"][-1],
        "history": {k: [float(x) for x in v] for k, v in history.history.items()},
    }, record)
