"""Start a real firetower server on loopback for a benchmark, and summarise latencies."""

from __future__ import annotations

import contextlib
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.process_support import daemon

from firetower.app import build_runtime
from firetower.db import Database
from firetower.migrate import upgrade
from firetower.runtime import Runtime
from firetower.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    url: str
    token: str


def _firetower(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [str(BIN / "firetower"), *args], env=env, capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


@contextlib.contextmanager
def running_server(database_url: str | None = None) -> Iterator[Server]:
    """A `firetower serve` process with a fresh home (and database unless one is given)."""
    with tempfile.TemporaryDirectory(prefix="firetower-bench-") as home:
        port = free_port()
        env = {
            **os.environ,
            "FIRETOWER_HOME": home,
            "FIRETOWER_PORT": str(port),
            "FIRETOWER_LOG_LEVEL": "warning",
        }
        if database_url:
            env["FIRETOWER_DATABASE_URL"] = database_url
        _firetower(env, "migrate")
        _firetower(env, "admin", "create-user", "bench@example.com", "--role", "admin")
        token = _firetower(
            env, "admin", "create-token", "--user", "bench@example.com", "--name", "bench"
        )
        url = f"http://127.0.0.1:{port}"
        log = Path(home) / "serve.log"
        with daemon([str(BIN / "firetower"), "serve"], log, f"{url}/healthz", env):
            yield Server(url, token)
            stopping = time.perf_counter()
        print(f"    (server stopped in {time.perf_counter() - stopping:.1f} s)")


@contextlib.contextmanager
def migrated_runtime(
    home: str, database_url: str | None = None, *, checkpoints: bool = True
) -> Iterator[Runtime]:
    """firetower's runtime in this process, no server and no embedded worker, on a migrated
    database: ``database_url``, or a fresh SQLite file in ``home``. Without ``checkpoints``
    no thread checkpoints SQLite's log, whose work process time and callgrind would count."""
    settings = Settings(
        env="test",
        home=Path(home),
        database_url=database_url or f"sqlite:///{home}/bench.db",
        secret_key="bench-" * 8,
        embedded_worker=False,
    )
    database = Database(settings)
    try:
        upgrade(database.engine)
        if not checkpoints and database.writer_lock is not None:
            database.writer_lock.first_write = None
        yield build_runtime(settings, database)
    finally:
        database.dispose()


def percentiles_ms(samples_seconds: list[float]) -> str:
    ordered = sorted(samples_seconds)

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000

    return (
        f"p50 {at(0.50):.1f} ms, p95 {at(0.95):.1f} ms, p99 {at(0.99):.1f} ms, "
        f"mean {statistics.fmean(ordered) * 1000:.1f} ms"
    )
