"""Runs one prune() with a checkpoint, for the resume test.

    python prune_worker.py CHECKPOINT_DIR OUTPUT.npz [KILL_AT_ROUND]

With KILL_AT_ROUND, the process kills itself (SIGKILL, like a crash) as soon
as that round has finished fine-tuning, before its checkpoint is written.
"""

import logging
import os
import signal
import sys

import numpy as np

import singe_keras
import zoo


def problem():
    model = zoo.build("residual")
    model.compile(
        optimizer="sgd",
        loss=zoo.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 8, 8, 3)).astype("float32")
    return model, (x, rng.integers(0, 3, 64))


ARGUMENTS = dict(target_flops=0.4, rounds=3, finetune_steps=3, batch_size=16, seed=1, verbose=0)


class _KillAt(logging.Handler):
    def __init__(self, round_index):
        super().__init__()
        self.prefix = f"Round {round_index}/"

    def emit(self, record):
        if record.getMessage().startswith(self.prefix):
            os.kill(os.getpid(), signal.SIGKILL)


def kill_at_round(round_index):
    """Makes this process kill itself (SIGKILL) when `round_index` logs its summary line."""
    logger = logging.getLogger("singe_keras")
    logger.setLevel(logging.INFO)
    logger.addHandler(_KillAt(round_index))


if __name__ == "__main__":
    directory, output = sys.argv[1], sys.argv[2]
    if len(sys.argv) > 3:
        kill_at_round(int(sys.argv[3]))
    model, data = problem()
    pruned = singe_keras.prune(model, data, checkpoint_dir=directory, **ARGUMENTS)
    np.savez(output, *pruned.get_weights())
