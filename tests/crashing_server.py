"""A server process that fails at once: the target ``supervise`` restarts in a test."""

from __future__ import annotations

import os
import sys


def crash(host: str, port: int) -> None:
    with open(os.environ["FIRETOWER_TEST_CRASH_LOG"], "a") as log:
        log.write(f"started for {host}:{port}\n")
    sys.exit(3)
