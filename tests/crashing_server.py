"""Server processes that stop at once, as targets for ``supervise`` in tests."""

from __future__ import annotations

import os
import sys


def crash(host: str, port: int) -> None:
    with open(os.environ["FIRETOWER_TEST_CRASH_LOG"], "a") as log:
        log.write(f"started for {host}:{port}\n")
    sys.exit(3)


def leave(host: str, port: int) -> None:
    """Stops cleanly at once, as a server process asked to stop does."""
    sys.exit(0)
