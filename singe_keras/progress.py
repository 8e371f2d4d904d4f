"""Progress lines: one logger, `singe_keras`, and printing only under `verbose`.

Every summary line of long work (a pruning round, a latency table, a latency
correction) goes to the `singe_keras` logger at INFO, and is printed too when
the caller's `verbose` asks for it. The library never configures logging.
"""

import logging
import os
import sys

logger = logging.getLogger("singe_keras")


def report(line, verbose):
    """Logs `line`, and prints it if `verbose`."""
    logger.info(line)
    if verbose:
        print(line, flush=True)


def runs_the_demo(argv):
    """Whether the command line `argv` (`sys.orig_argv`) is `python ... -m singe_keras.demo`."""
    return "-m" in argv[:-1] and argv[argv.index("-m") + 1] == "singe_keras.demo"


def mute_native_stderr():
    """Sends what native code writes to stderr (file descriptor 2) to the null device.

    TensorFlow's C++ libraries print start-up lines (CUDA probing, CPU
    instructions) as they load and on first use, before absl logging
    starts, so `TF_CPP_MIN_LOG_LEVEL` cannot silence them. Python's
    `sys.stderr` is moved to a copy of the former descriptor 2 first:
    Python warnings, logging and tracebacks still show. Only
    `python -m singe_keras.demo` calls it (from the package's `__init__`,
    before TensorFlow loads): the library never mutes its user's process.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    sys.stderr = os.fdopen(os.dup(2), "w", buffering=1)
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 2)
    os.close(null)
