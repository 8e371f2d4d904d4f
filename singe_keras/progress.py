"""Progress lines: one logger, `singe_keras`, and printing only under `verbose`.

Every summary line of long work (a pruning round, a latency table, a latency
correction) goes to the `singe_keras` logger at INFO, and is printed too when
the caller's `verbose` asks for it. The library never configures logging.
"""

import logging

logger = logging.getLogger("singe_keras")


def report(line, verbose):
    """Logs `line`, and prints it if `verbose`."""
    logger.info(line)
    if verbose:
        print(line, flush=True)
