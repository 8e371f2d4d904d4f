import os
import subprocess
import sys

import pytest

import singe_keras
from singe_keras import demo


def test_demo_prunes_to_its_target_and_keeps_accuracy(capsys):
    results = demo.main(["--epochs", "2", "--rounds", "1", "--target-flops", "0.5"])
    before, after = results["before"], results["after"]
    assert after["flops"] <= 0.5 * before["flops"]
    assert after["params"] < before["params"]
    assert after["accuracy"] > 0.5  # ten classes: far above chance after fine-tuning
    assert "After pruning" in capsys.readouterr().out


def test_demo_rejects_a_bad_target():
    with pytest.raises(SystemExit):
        demo.main(["--target-flops", "1.5"])


def test_help_answers_without_importing_tensorflow():
    # `python -m singe_keras.demo --help`, then which modules were loaded.
    script = (
        "import runpy, sys\n"
        "sys.argv = ['demo', '--help']\n"
        "try:\n"
        "    runpy.run_module('singe_keras.demo', run_name='__main__')\n"
        "except SystemExit:\n"
        "    pass\n"
        "print('tensorflow' in sys.modules, 'keras' in sys.modules)\n"
    )
    root = os.path.dirname(os.path.dirname(singe_keras.__file__))
    result = subprocess.run([sys.executable, "-c", script], cwd=root, capture_output=True,
                            text=True, env=dict(os.environ, PYTHONPATH=root), check=True)
    assert "--target-flops" in result.stdout
    assert result.stdout.splitlines()[-1] == "False False"


def test_the_public_api_loads_on_first_use():
    script = (
        "import sys, singe_keras\n"
        "print('tensorflow' in sys.modules)\n"
        "print(all(getattr(singe_keras, name) is not None for name in singe_keras.__all__))\n"
        "print('tensorflow' in sys.modules)\n"
    )
    root = os.path.dirname(os.path.dirname(singe_keras.__file__))
    result = subprocess.run([sys.executable, "-c", script], cwd=root, capture_output=True,
                            text=True, env=dict(os.environ, PYTHONPATH=root), check=True)
    assert result.stdout.split() == ["False", "True", "True"]
    assert singe_keras.prune is singe_keras.pruning.prune
    with pytest.raises(AttributeError, match="has no attribute 'prun'"):
        singe_keras.prun
