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


def tell_processes(host: str, port: int) -> None:
    """Writes how many server processes its settings say there are, then stops cleanly."""
    from firetower.settings import load_settings

    with open(os.environ["FIRETOWER_TEST_CRASH_LOG"], "a") as log:
        log.write(f"{load_settings().web_processes}\n")
    sys.exit(0)
