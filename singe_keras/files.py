"""Atomic file writes: a crash never leaves a half-written file behind."""

import os
import tempfile


def write_atomically(path, content):
    """Writes `content` (bytes) to `path` through a temp file and a rename."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(content)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
