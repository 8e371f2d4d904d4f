"""The README runs as written.

`test_the_python_blocks_run` runs every ```python block of README.md, in
order, in one namespace (the Usage examples continue from one another), in a
fresh Python process whose working directory and home folder are a temporary
folder: the blocks write files (reports, .tflite files) and the latency
tables' cache goes under the home folder. The blocks get their data from
scikit-learn's bundled 8x8 digits (the `demo` and `test` extras), so they run
for a user exactly as they run here; nothing is substituted. A block that
raises fails the test, with a traceback that names README.md and the line.

No Python block is exempt. The ```sh blocks (installing, running the demo
and the tests) are not run. Multi-host use (`TF_CONFIG`) is described in
prose, not in a block.

The run is marked slow: five small `prune` calls, a callback run and LiteRT
latency tables take about 50 s of CPU (minutes of wall time on a loaded
machine).
"""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import singe_keras

README = Path(__file__).resolve().parents[1] / "README.md"
MAX_LINES = 400

# Runs the blocks given as (first line, source) pairs; compiling each block
# padded to its line in README.md makes tracebacks point into README.md.
_RUNNER = """
import json, sys
namespace = {"__name__": "__main__"}
for line, source in json.load(sys.stdin):
    print(f"README.md: running the block at line {line}", file=sys.stderr, flush=True)
    exec(compile("\\n" * (line - 1) + source, "README.md", "exec"), namespace)
"""


def _python_blocks():
    """`[(first line of the code, code)]` of the README's ```python blocks."""
    text = README.read_text()
    return [
        (text[: match.start(1)].count("\n") + 1, match.group(1))
        for match in re.finditer(r"^```python\n(.*?)^```$", text, re.M | re.S)
    ]


def test_readme_is_a_user_guide():
    text = README.read_text()
    assert len(text.splitlines()) <= MAX_LINES
    assert "../shared" not in text  # data outside the repository
    assert len(_python_blocks()) >= 8


@pytest.mark.slow
def test_the_python_blocks_run(tmp_path):
    pytest.importorskip("sklearn")  # the blocks' data: the `demo` extra
    pytest.importorskip("matplotlib")  # `report.plot`: the `plot` extra
    package_root = str(Path(singe_keras.__file__).resolve().parents[1])
    env = {
        **os.environ,
        "HOME": str(tmp_path),
        "MPLBACKEND": "Agg",
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "PYTHONPATH": os.pathsep.join(
            [package_root] + [p for p in [os.environ.get("PYTHONPATH")] if p]),
    }
    run = subprocess.run(
        [sys.executable, "-c", _RUNNER], input=json.dumps(_python_blocks()),
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900,
    )
    assert run.returncode == 0, run.stderr[-6000:]
