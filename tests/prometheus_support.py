"""A real Prometheus (Debian's /usr/bin/prometheus) over backfilled data, for the SLO tests.

``backfilled_prometheus(directory, openmetrics)`` turns OpenMetrics text into TSDB blocks with
``promtool tsdb create-blocks-from openmetrics``, starts Prometheus on a free loopback port
over them (nothing scraped, retention long enough to keep old samples) and yields its URL.
Without the binaries the tests using it skip, saying so; under CI=true they fail instead,
since `.ci/run` installs them there. ``slow_prometheus(delay_seconds)`` is a stand-in that
answers every query with the same small vector, each after a delay;
``trickling_prometheus(seconds_per_byte)`` answers it one byte at a time, headers included.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.process_support import daemon


def binary(name: str) -> str:
    found = shutil.which(name)
    if found:
        return found
    if Path(f"/usr/bin/{name}").exists():  # PATH may leave out /usr/bin in odd shells
        return f"/usr/bin/{name}"
    message = f"the Prometheus SLO tests need {name} (apt-get install prometheus)"
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true: {message}; `.ci/run` installs it")
    pytest.skip(message)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def backfilled_prometheus(directory: Path, openmetrics: str) -> Iterator[str]:
    prometheus, promtool = binary("prometheus"), binary("promtool")
    source = directory / "data.om"
    source.write_text(openmetrics)
    storage = directory / "tsdb"
    storage.mkdir()
    made = subprocess.run(
        [promtool, "tsdb", "create-blocks-from", "openmetrics", str(source), str(storage)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert made.returncode == 0, made.stderr[-2000:] + made.stdout[-2000:]
    config = directory / "prometheus.yml"
    config.write_text("global:\n  scrape_interval: 1m\nscrape_configs: []\n")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    args = [
        prometheus,
        f"--config.file={config}",
        f"--storage.tsdb.path={storage}",
        "--storage.tsdb.retention.time=3650d",
        f"--web.listen-address=127.0.0.1:{port}",
    ]
    with daemon(args, directory / "prometheus.log", f"{url}/-/ready"):
        yield url


@contextmanager
def slow_prometheus(delay_seconds: float, value: str = "1") -> Iterator[tuple[str, list[str]]]:
    """A loopback server answering ``/api/v1/query`` with a one-series vector (``value``, as
    Prometheus writes it) after ``delay_seconds``; yields its URL and the queries it was asked,
    in order."""
    asked: list[str] = []
    vector = {"resultType": "vector", "result": [{"metric": {}, "value": [0, value]}]}
    body = json.dumps({"status": "success", "data": vector}).encode()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # quiet test output
            pass

        def do_GET(self) -> None:
            asked.append(self.path)
            time.sleep(delay_seconds)
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    with _serving(Handler) as url:
        yield url, asked


@contextmanager
def trickling_prometheus(seconds_per_byte: float) -> Iterator[tuple[str, list[str]]]:
    """``slow_prometheus``'s answer sent one byte every ``seconds_per_byte``, from the status
    line on (174 bytes): no single read waits long, the whole answer does. Yields its
    URL and the queries it was asked, in order."""
    asked: list[str] = []
    vector = {"resultType": "vector", "result": [{"metric": {}, "value": [0, "1"]}]}
    body = json.dumps({"status": "success", "data": vector}).encode()
    answer = (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body
    )

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # quiet test output
            pass

        def do_GET(self) -> None:
            asked.append(self.path)
            self.close_connection = True
            for at in range(len(answer)):
                time.sleep(seconds_per_byte)
                try:
                    self.wfile.write(answer[at : at + 1])
                    self.wfile.flush()
                except OSError:  # the client gave up
                    return

    with _serving(Handler) as url:
        yield url, asked


@contextmanager
def _serving(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """A threading HTTP server on a loopback port, its URL yielded."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
