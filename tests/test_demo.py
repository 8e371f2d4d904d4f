import pytest

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
