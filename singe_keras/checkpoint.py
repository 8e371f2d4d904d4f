"""Checkpoints of `prune`: resume after a crash, to the same weights.

After every round the model and the run's state are written atomically; a
call with the same model and arguments (the same fingerprint) resumes after
the last finished round, and anything that does not belong together is
refused rather than half-loaded. Under a multi-worker strategy the chief
writes and every worker reads: to resume, the directory must be one all
workers see.
"""

import hashlib
import json
import os

import keras
import numpy as np

from singe_keras import distribute
from singe_keras.files import atomic_output, write_atomically
from singe_keras.report import PruningReport


def fingerprint(model, settings):
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode())
    digest.update(json.dumps(model.get_config(), sort_keys=True, default=str).encode())
    for weight in model.weights:
        digest.update(np.ascontiguousarray(keras.ops.convert_to_numpy(weight)).tobytes())
    return digest.hexdigest()


class Checkpoint:
    """`state.json` + `model.keras`, both written atomically after each round.

    The state names the model file's SHA-256, so a model file that does not
    belong to the state (a crash between the two writes, a corrupt copy) is
    refused rather than half-loaded.
    """

    def __init__(self, directory, fingerprint):
        self.directory = directory
        self.fingerprint = fingerprint
        if distribute.is_chief():  # the only writer
            os.makedirs(directory, exist_ok=True)
        self.state_path = os.path.join(directory, "state.json")

    def _model_path(self, round_index):
        return os.path.join(self.directory, f"model_round{round_index}.keras")

    def save(self, model, report, round_index):
        # Every worker saves (saving may run collective ops); only the chief's
        # files are kept (`files.atomic_output`).
        path = self._model_path(round_index)
        with atomic_output(path, suffix=".keras") as tmp:
            model.save(tmp)
            with open(tmp, "rb") as f:
                digest = hashlib.sha256(f.read()).hexdigest()
        state = {
            "fingerprint": self.fingerprint,
            "round": round_index,
            "model_file": os.path.basename(path),
            "model_sha256": digest,
            "report": report.to_dict(),
        }
        write_atomically(self.state_path, json.dumps(state).encode())
        if not distribute.is_chief():
            return
        for name in os.listdir(self.directory):  # older rounds' models
            if name.startswith("model_round") and name != os.path.basename(path):
                os.unlink(os.path.join(self.directory, name))

    def load(self):
        """`(model, report, next round)` or `None` if there is no checkpoint."""
        if not os.path.exists(self.state_path):
            return None
        try:
            with open(self.state_path) as f:
                state = json.load(f)
            model_path = os.path.join(self.directory, state["model_file"])
            with open(model_path, "rb") as f:
                digest = hashlib.sha256(f.read()).hexdigest()
        except (OSError, ValueError, KeyError) as error:
            raise ValueError(
                f"The checkpoint in {self.directory!r} is corrupt ({error}). "
                "Delete the directory to start over."
            ) from error
        if state.get("fingerprint") != self.fingerprint:
            raise ValueError(
                f"The checkpoint in {self.directory!r} was written by a prune() call "
                "with another model or other arguments. Use another "
                "`checkpoint_dir`, or delete it to start over."
            )
        if digest != state.get("model_sha256"):
            raise ValueError(
                f"The checkpoint in {self.directory!r} is corrupt: its model file "
                "does not match its state. Delete the directory to start over."
            )
        model = keras.models.load_model(model_path, compile=False)
        return model, PruningReport.from_dict(state["report"]), state["round"] + 1
