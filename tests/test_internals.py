"""The Keras internals room: its supported range and its error."""

import os
import re

import keras
import pytest
from packaging.specifiers import SpecifierSet

from singe_keras import internals

_PYPROJECT = os.path.join(os.path.dirname(__file__), "..", "pyproject.toml")


def test_pyproject_pins_the_keras_range_the_internals_support():
    with open(_PYPROJECT) as file:
        pinned = re.search(r'"keras([^"]*)"', file.read()).group(1)
    assert SpecifierSet(pinned) == SpecifierSet(internals.SUPPORTED_KERAS)
    assert keras.__version__ in SpecifierSet(internals.SUPPORTED_KERAS)


def test_missing_internal_names_the_supported_range():
    with pytest.raises(RuntimeError, match=re.escape(internals.SUPPORTED_KERAS)) as info:
        internals.sequential_function(object())
    assert "object._functional" in str(info.value)


def test_only_the_internals_module_reads_keras_src():
    package = os.path.join(os.path.dirname(__file__), "..", "singe_keras")
    readers = []
    for folder, _, files in os.walk(package):
        for name in files:
            if name.endswith(".py"):
                with open(os.path.join(folder, name)) as file:
                    if "keras.src" in file.read():
                        readers.append(name)
    assert readers == ["internals.py"]
