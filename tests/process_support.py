"""A program run for a test as a daemon: started, waited for until it answers, stopped."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import httpx

READY_DEADLINE_SECONDS = 60.0
STOP_DEADLINE_SECONDS = 10.0


@contextmanager
def daemon(
    args: Sequence[str], log: Path, ready_url: str, env: Mapping[str, str] | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """Start a process writing to ``log``; wait until ``ready_url`` answers 200; stop it after
    (SIGTERM, then SIGKILL past STOP_DEADLINE_SECONDS)."""
    with log.open("wb") as output:
        environment = None if env is None else dict(env)
        process = subprocess.Popen(
            list(args), stdout=output, stderr=subprocess.STDOUT, env=environment
        )
        try:
            deadline = time.monotonic() + READY_DEADLINE_SECONDS
            while True:
                try:
                    if httpx.get(ready_url, timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if process.poll() is not None:
                    raise RuntimeError(
                        f"{args[0]} exited with {process.returncode} before it was ready: "
                        f"{log.read_text()[-3000:]}"
                    )
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"{args[0]} was not ready within {READY_DEADLINE_SECONDS:g} s: "
                        f"{log.read_text()[-3000:]}"
                    )
                time.sleep(0.1)
            yield process
        finally:
            process.terminate()
            try:
                process.wait(STOP_DEADLINE_SECONDS)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
