"""Helpers for CLI tests: a real uvicorn server in a thread, and a runner that hides nothing.

``live_server(app)`` serves the app on 127.0.0.1 on a port the OS picks, waits until
``/healthz`` answers, and stops the server afterwards. ``run_cli`` invokes the Typer app
with FIRETOWER_URL / FIRETOWER_TOKEN set and re-raises any exception the CLI let escape,
since a user would have seen it as a traceback.
"""

from __future__ import annotations

import json
import logging
import socket
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import httpx
import structlog
import uvicorn
from click.testing import Result
from fastapi import FastAPI
from typer.testing import CliRunner

from firetower.cli.main import app as cli_app

START_DEADLINE_SECONDS = 30.0


def _fail_after(deadline: float, what: str) -> None:
    if time.monotonic() > deadline:
        raise RuntimeError(f"the test server did not {what} within {START_DEADLINE_SECONDS}s")


@contextmanager
def logs_kept_apart() -> Iterator[None]:
    """Send firetower's logs to the process's real stderr, then restore the configuration.

    The server runs in the test process, and structlog's default logger writes to whatever
    ``sys.stdout`` is at the time: without this, server log lines would land in the output
    CliRunner captures for the command. Server commands also call ``configure_logging``,
    which would otherwise leave structlog bound to a finished CliRunner's stream.
    """
    saved = structlog.get_config()
    structlog.configure(
        logger_factory=structlog.PrintLoggerFactory(file=sys.__stderr__),
        wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
    )
    try:
        yield
    finally:
        structlog.configure(**saved)


@contextmanager
def live_server(app: FastAPI) -> Iterator[str]:
    """Serve ``app`` with uvicorn in a background thread; yields its base URL."""
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=0,
        log_config=None,
        log_level="warning",
        access_log=False,
        ws="none",
        lifespan="on",
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="firetower-test-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + START_DEADLINE_SECONDS
    try:
        while not server.started:
            if not thread.is_alive():
                raise RuntimeError("the test server stopped before it started")
            _fail_after(deadline, "start")
            time.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        url = f"http://127.0.0.1:{port}"
        while True:
            try:
                if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            _fail_after(deadline, "answer /healthz")
            time.sleep(0.01)
        yield url
    finally:
        server.should_exit = True
        thread.join(START_DEADLINE_SECONDS)


def unused_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def run_cli(
    args: Sequence[str],
    *,
    url: str | None = None,
    token: str | None = None,
    env: Mapping[str, str | None] | None = None,
    input: str | None = None,
) -> Result:
    """Invoke ``firetower ARGS`` in-process; an escaped exception fails the test."""
    full_env: dict[str, str | None] = {"FIRETOWER_URL": url, "FIRETOWER_TOKEN": token}
    full_env.update(env or {})
    result = CliRunner().invoke(cli_app, list(args), env=full_env, input=input)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


def json_of(result: Result) -> Any:
    """The command's stdout parsed as JSON (fails the test when it is not JSON)."""
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def error_line(result: Result) -> str:
    """The single line a failed command wrote on stderr."""
    assert result.exit_code != 0, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def table_rows(stdout: str) -> list[dict[str, str]]:
    """The rows of the Rich table a command printed, each as {column: cell text}.

    Tables go to a pipe at full width, so each row is one line: a header between heavy bars
    (``┃``), rows between light ones (``│``).
    """
    lines = stdout.splitlines()
    header = next(line for line in lines if line.startswith("┃"))
    names = [name.strip() for name in header.strip("┃").split("┃")]
    return [
        dict(zip(names, (c.strip() for c in line.strip("│").split("│")), strict=True))
        for line in lines
        if line.startswith("│")
    ]
