"""Warnings that point at the user's line, not at singe_keras's or Keras's."""

import inspect
import os
import warnings

import keras

_INTERNAL = tuple(os.path.dirname(os.path.abspath(path)) + os.sep
                  for path in (__file__, keras.__file__))


def warn(message, category=UserWarning):
    """`warnings.warn` at the first caller outside singe_keras and Keras.

    A fixed `stacklevel` cannot name the user's line: the same warning is
    raised under `prune`, under `PruningCallback` inside Keras's `fit`, or
    under a public function called directly. The line shown is also the one
    the `warnings` filters match (a warning shows once per line by default).
    """
    frame, stacklevel = inspect.currentframe().f_back, 1
    while frame is not None and frame.f_code.co_filename.startswith(_INTERNAL):
        frame, stacklevel = frame.f_back, stacklevel + 1
    warnings.warn(message, category, stacklevel=stacklevel + 1)
