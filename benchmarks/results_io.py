"""Writes a benchmark's results with the command, commit, machine and versions."""

import importlib.metadata
import json
import os
import platform
import subprocess
import sys
import tempfile

import keras
import numpy as np
import tensorflow as tf


def environment():
    commit = subprocess.run(
        ["git", "rev-parse", "HEAD"], capture_output=True, text=True,
        cwd=os.path.dirname(os.path.abspath(__file__)),
    ).stdout.strip()
    return {
        "command": " ".join([os.path.basename(sys.executable)] + sys.argv),
        "git_commit": commit,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.platform()}",
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "numpy": np.__version__,
        "ai_edge_litert": _version("ai-edge-litert"),
    }


def _version(distribution):
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


_STARTED = environment()  # when this process started: the code it runs


def save(results, path):
    """Writes `results` (plus the environment the process started in) as JSON, atomically."""
    results = {"environment": _STARTED, **results}
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(results, f, indent=1)
    os.replace(tmp, path)
