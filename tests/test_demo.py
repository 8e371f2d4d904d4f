import os
import subprocess
import sys

import pytest

from singe_keras import demo
from singe_keras import progress


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


def test_the_demo_command_prints_nothing_on_stderr():
    # TensorFlow's native start-up lines included: a user's first run is quiet.
    root = os.path.dirname(os.path.dirname(demo.__file__))
    result = subprocess.run(
        [sys.executable, "-m", "singe_keras.demo", "--epochs", "1", "--rounds", "1"],
        capture_output=True, text=True,
        env={k: v for k, v in {**os.environ, "PYTHONPATH": root}.items()
             if k != "TF_CPP_MIN_LOG_LEVEL"},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stderr == ""
    assert "After pruning" in result.stdout


@pytest.mark.parametrize("argv, expected", [
    (["python", "-m", "singe_keras.demo"], True),
    (["python", "-X", "dev", "-m", "singe_keras.demo", "--epochs", "1"], True),
    (["python", "-m", "pytest", "tests"], False),
    (["python", "script.py", "-m"], False),
])
def test_only_the_demo_command_mutes_native_stderr(argv, expected):
    assert progress.runs_the_demo(argv) == expected
