"""Files: atomic writes, and JSON records that save and load themselves.

A crash never leaves a half-written file behind: everything is written to a
temporary file in the same folder, flushed to disk, then renamed over the
target. The result has the permissions a plain `open()` would give it.
Under a multi-worker `tf.distribute` strategy only the chief writes: the
other workers write to a scratch file that is deleted (TensorFlow's
convention), so every worker runs the same code.
"""

import contextlib
import json
import os
import tempfile

from singe_keras import distribute


@contextlib.contextmanager
def atomic_output(path, suffix=".tmp"):
    """Yields a temporary path; renames it to `path` if the block succeeds.

    If the block raises, the temporary file is deleted and `path` is left as
    it was. On a worker that is not the chief, the file is always deleted.
    """
    if not distribute.is_chief():
        with tempfile.TemporaryDirectory() as scratch:
            yield os.path.join(scratch, os.path.basename(path))
        return
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, suffix=suffix)
    os.close(fd)
    try:
        yield tmp
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600 files
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_atomically(path, content):
    """Writes `content` (bytes) to `path` atomically."""
    with atomic_output(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(content)


class JsonRecord:
    """Mixin: `save`/`load` as JSON for classes with `to_dict`/`from_dict`."""

    def save(self, path):
        """Writes the record as JSON, atomically (a temp file, then a rename)."""
        write_atomically(path, json.dumps(self.to_dict(), indent=1).encode())

    @classmethod
    def load(cls, path):
        """Reads a record written by `save`."""
        with open(path) as f:
            return cls.from_dict(json.load(f))
