"""Files: atomic writes, and JSON records that save and load themselves.

A crash never leaves a half-written file behind: everything is written to a
temporary file in the same folder, then renamed.
"""

import json
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
