"""`serve --processes N`: N server processes, each with its own listening socket on one port.

uvicorn's own workers share one listening socket, and whichever process wakes first accepts
the connections that arrive together: 16 keep-alive connections opened at once all landed
on one of two processes (measured), which then did all the work. Alertmanager, Grafana and
PagerDuty clients keep their connections open, so that imbalance lasts. Here every process
binds the port itself with ``SO_REUSEPORT``, and the kernel spreads new connections over
the processes by a hash of their addresses.

This process only supervises: it starts the processes, starts another for one that fails,
and on SIGTERM or SIGINT asks each to finish its requests and stop.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import shutil
import signal
import socket
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.process import BaseProcess
from types import FrameType

from firetower.cli.output import console, fail
from firetower.metrics import MULTIPROCESS_DIR_ENV

BACKLOG = 2048  # uvicorn's default
STOP_SECONDS = 30.0
"""How long a process may take to finish its requests once asked to stop."""
CHECK_SECONDS = 0.5
STABLE_SECONDS = 10.0
"""A process that fails later than this after its start is started again at once."""
MAX_RESTART_DELAY_SECONDS = 30.0


def _address(host: str, port: int) -> tuple[socket.AddressFamily, tuple[object, ...]]:
    family, _type, _proto, _name, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[
        0
    ]
    return family, address


def _listening_socket(host: str, port: int, *, shared: bool) -> socket.socket:
    family, address = _address(host, port)
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if shared:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(address)
    return sock


def serve_one(host: str, port: int) -> None:
    """One server process (the target of a spawned process)."""
    import uvicorn

    sock = _listening_socket(host, port, shared=True)
    sock.listen(BACKLOG)
    config = uvicorn.Config(
        "firetower.app:app_from_environment",
        factory=True,
        log_level="warning",
        proxy_headers=True,
        backlog=BACKLOG,
    )
    uvicorn.Server(config).run(sockets=[sock])


def _ended(exit_code: int) -> str:
    """How a process ended, in words: a negative code is the signal that killed it."""
    if exit_code < 0:
        with contextlib.suppress(ValueError):
            return f"was killed by {signal.Signals(-exit_code).name}"
        return f"was killed by signal {-exit_code}"
    return f"exited with code {exit_code}"


@dataclass
class _Slot:
    """One server process of the N, and how its recent failures delay the next start."""

    process: BaseProcess
    started_at: float
    quick_failures: int = 0
    """Failures in a row, each within STABLE_SECONDS of its start."""
    restart_at: float | None = None
    """When a failed process is started again (None: it has not failed)."""


def supervise(
    processes: int,
    host: str,
    port: int,
    *,
    embedded_worker: bool,
    target: Callable[[str, int], None] = serve_one,
) -> None:
    """Run ``processes`` server processes (``target``) until SIGTERM or SIGINT, or until
    every one of them has stopped cleanly.

    A process that fails is started again; one that keeps failing soon after it starts (a
    database that refuses it, a broken install) waits 1, 2, 4 ... up to 30 seconds first,
    instead of a new interpreter every half second taking a core.
    """
    # A port taken by anything else is refused here, in one line, before any process binds
    # it (SO_REUSEPORT would otherwise share it with another firetower of this user).
    try:
        _listening_socket(host, port, shared=False).close()
    except OSError as exc:
        fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}")
    environment = dict(os.environ)
    metrics_dir = tempfile.mkdtemp(prefix="firetower-metrics-")
    os.environ[MULTIPROCESS_DIR_ENV] = metrics_dir
    if not embedded_worker:
        os.environ["FIRETOWER_EMBEDDED_WORKER"] = "false"
    os.environ["FIRETOWER_WEB_PROCESSES"] = str(processes)  # each sizes its group commit by it
    context = multiprocessing.get_context("spawn")  # a clean interpreter, not a fork
    stopping = threading.Event()

    def start(number: int, quick_failures: int = 0) -> _Slot:
        process = context.Process(
            target=target, args=(host, port), name=f"firetower-serve-{number}"
        )
        process.start()
        return _Slot(process, time.monotonic(), quick_failures)

    def stop(_signum: int, _frame: FrameType | None) -> None:
        stopping.set()

    previous = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGINT)}
    slots = [start(number) for number in range(processes)]
    try:
        while not stopping.wait(CHECK_SECONDS):
            if all(slot.process.exitcode == 0 for slot in slots):
                console.print("every server process has stopped; stopping")
                break  # stopped one by one (SIGTERM to each): nothing is left to serve
            now = time.monotonic()
            for number, slot in enumerate(slots):
                if slot.restart_at is not None:
                    if now >= slot.restart_at and not stopping.is_set():
                        slots[number] = start(number, slot.quick_failures)
                    continue
                # Exit code 0 is a clean stop someone asked for (Ctrl-C reaches every
                # process of the terminal's group): only a failure is replaced.
                if slot.process.exitcode in (None, 0):
                    continue
                quick = now - slot.started_at < STABLE_SECONDS
                slot.quick_failures = slot.quick_failures + 1 if quick else 0
                failures = slot.quick_failures
                delay = min(MAX_RESTART_DELAY_SECONDS, 2.0 ** (failures - 1)) if failures else 0.0
                slot.restart_at = now + delay
                console.print(
                    f"server process {slot.process.pid} {_ended(slot.process.exitcode)}; "
                    f"starting another {f'in {delay:g} s' if delay else 'now'}"
                )
    finally:
        children = [slot.process for slot in slots]
        for child in children:
            if child.is_alive():
                child.terminate()  # SIGTERM: uvicorn finishes the requests it has
        for child in children:
            child.join(STOP_SECONDS)
            if child.is_alive():
                child.kill()
                child.join()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        shutil.rmtree(metrics_dir, ignore_errors=True)
        os.environ.clear()
        os.environ.update(environment)
