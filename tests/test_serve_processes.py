"""`firetower serve --processes 2`: two real server processes on one database and one port.

Keep-alive connections opened together are spread over both processes; concurrent
Alertmanager batches land in both, every alert is committed exactly once, the storm opens
one incident per service, and /metrics counts every request whichever process answers the
scrape. Stopping the server removes the shared metrics directory.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, text

from tests.cli_support import unused_port
from tests.conftest import SECRET
from tests.process_support import daemon

BIN = Path(sys.executable).parent
PROCESSES = 2
BATCHES = 40
BATCH = 25
KEPT_OPEN = 16


def _firetower(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [str(BIN / "firetower"), *args], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def _servers(pid: int) -> list[int]:
    """The server processes ``serve`` started (not multiprocessing's resource tracker)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                status = (entry / "status").read_text()
                command = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if (
                re.search(rf"^PPid:\s+{pid}$", status, re.MULTILINE)
                and b"resource_tracker" not in command
            ):
                found.append(int(entry.name))
    return found


def _connections_by_process(pids: list[int], port: int) -> dict[int, int]:
    """Established TCP connections to ``port`` that each process holds."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local_port = int(fields[1].rsplit(":", 1)[1], 16)
            if local_port == port and fields[3] == "01":  # 01: established
                inodes.add(fields[9])
    counts = {}
    for pid in pids:
        links = [os.readlink(fd) for fd in Path(f"/proc/{pid}/fd").iterdir()]
        counts[pid] = sum(
            1 for link in links if link[8:-1] in inodes and link.startswith("socket:")
        )
    return counts


@pytest.fixture
def server(database_url: str, tmp_path: Path) -> Iterator[tuple[str, str, subprocess.Popen[bytes]]]:
    port = unused_port()
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    env = {
        **os.environ,
        "FIRETOWER_HOME": str(tmp_path / "home"),
        "FIRETOWER_DATABASE_URL": database_url,
        "FIRETOWER_SECRET_KEY": SECRET,
        "FIRETOWER_PORT": str(port),
        "FIRETOWER_LOG_LEVEL": "warning",
        "TMPDIR": str(scratch),
    }
    _firetower(env, "migrate")
    _firetower(env, "admin", "create-user", "ops@example.com", "--role", "admin")
    token = _firetower(env, "admin", "create-token", "--user", "ops@example.com", "--name", "t")
    args = [str(BIN / "firetower"), "serve", "--processes", str(PROCESSES)]
    url = f"http://127.0.0.1:{port}"
    with daemon(args, tmp_path / "serve.log", f"{url}/readyz", env=env) as process:
        yield url, token, process


def _batch(service: str, n: int) -> dict[str, object]:
    labels = {"alertname": "Down", "service": service, "severity": "critical"}
    return {
        "version": "4",
        "status": "firing",
        "groupLabels": labels,
        "commonLabels": labels,
        "commonAnnotations": {},
        "alerts": [
            {
                "status": "firing",
                "labels": {**labels, "instance": f"i-{n}-{k}"},
                "annotations": {"summary": "down"},
                "startsAt": "2026-11-28T10:00:00Z",
                "endsAt": "0001-01-01T00:00:00Z",
                "fingerprint": f"f-{n}-{k}",
            }
            for k in range(BATCH)
        ],
    }


def _metric(url: str, name: str, **labels: str) -> float:
    exposition = httpx.get(f"{url}/metrics", timeout=10).text
    total = 0.0
    for line in exposition.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_two_processes_share_the_port_and_the_database(
    server: tuple[str, str, subprocess.Popen[bytes]], database_url: str, tmp_path: Path
) -> None:
    url, token, process = server
    servers = _servers(process.pid)
    assert len(servers) == PROCESSES
    # Opened at once and kept open, as Alertmanager's are: every process gets some. (Opened
    # in one burst, a shared listening socket hands them all to whichever process wakes.)
    port = int(url.rsplit(":", 1)[1])
    kept = [socket.create_connection(("127.0.0.1", port)) for _ in range(KEPT_OPEN)]
    try:
        for sock in kept:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: firetower\r\n\r\n")
        for sock in kept:
            sock.settimeout(30)
            assert sock.recv(4096).startswith(b"HTTP/1.1 200")
        held = _connections_by_process(servers, port)
    finally:
        for sock in kept:
            sock.close()
    assert sum(held.values()) == KEPT_OPEN
    assert all(count > 0 for count in held.values()), held
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}) as api:
        for name in ("checkout", "search"):
            assert api.post("/api/v1/services", json={"name": name}).status_code == 201
        made = api.post("/api/v1/integrations", json={"name": "am", "kind": "alertmanager"})
        key = made.json()["key"]

    def send(n: int) -> int:
        # A new connection per batch: the kernel hands each to whichever process accepts.
        body = _batch(("checkout", "search")[n % 2], n)
        return httpx.post(f"{url}/ingest/alertmanager/{key}", json=body, timeout=60).status_code

    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(send, range(BATCHES)))
    assert statuses == [200] * BATCHES

    engine = create_engine(database_url)
    with engine.connect() as connection:
        alerts = connection.execute(text("SELECT count(*) FROM alerts")).scalar_one()
        incidents = connection.execute(text("SELECT count(*) FROM incidents")).scalar_one()
    engine.dispose()
    assert alerts == BATCHES * BATCH
    assert incidents == 2
    route = "/ingest/alertmanager/{key}"
    for _ in range(5):  # any process may answer the scrape: each one sees every request
        counted = _metric(url, "firetower_http_requests_total", route=route, status="200")
        assert counted == BATCHES

    # A server process that dies is replaced; the others go on serving meanwhile.
    os.kill(servers[0], signal.SIGKILL)
    deadline = time.monotonic() + 60
    while sorted(_servers(process.pid)) == sorted(servers) or len(_servers(process.pid)) < 2:
        assert time.monotonic() < deadline, "the dead server process was not replaced"
        time.sleep(0.1)
    assert servers[0] not in _servers(process.pid)

    process.send_signal(signal.SIGTERM)
    assert process.wait(60) == 0
    assert not list((tmp_path / "tmp").glob("firetower-metrics-*"))


def test_a_port_in_use_is_refused_in_one_line(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [str(BIN / "firetower"), "serve", "--processes", "2", "--port", str(port)],
            env={
                **os.environ,
                "FIRETOWER_HOME": str(tmp_path / "home"),
                "FIRETOWER_SECRET_KEY": SECRET,
                "FIRETOWER_LOG_LEVEL": "warning",
            },
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        f"error: cannot listen on 127.0.0.1:{port}: Address already in use"
    ]


def test_a_server_process_that_keeps_failing_is_started_ever_more_slowly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Failing at once, it is started again after 1 s, then 2 s, then 4 s: in 6 s that is at
    most three starts, where starting it again at every check made six."""
    from firetower.cli.processes import supervise
    from tests.crashing_server import crash

    starts = tmp_path / "starts"
    monkeypatch.setenv("FIRETOWER_TEST_CRASH_LOG", str(starts))
    stop = threading.Timer(6.0, signal.raise_signal, (signal.SIGTERM,))
    stop.start()
    try:
        supervise(1, "127.0.0.1", unused_port(), embedded_worker=True, target=crash)
    finally:
        stop.cancel()
    assert 2 <= len(starts.read_text().splitlines()) <= 3
    said = capsys.readouterr().out
    assert "exited with code 3; starting another in 1 s" in said
    assert "exited with code 3; starting another in 2 s" in said
    assert "PROMETHEUS_MULTIPROC_DIR" not in os.environ  # the environment is put back


def test_the_supervisor_stops_once_every_server_process_has_stopped_cleanly() -> None:
    from firetower.cli.processes import supervise
    from tests.crashing_server import leave

    stop = threading.Timer(30.0, signal.raise_signal, (signal.SIGTERM,))  # a safety net
    stop.start()
    started = time.monotonic()
    try:
        supervise(2, "127.0.0.1", unused_port(), embedded_worker=True, target=leave)
    finally:
        stop.cancel()
    assert time.monotonic() - started < 30, "it went on supervising nothing"


def test_each_server_process_is_told_how_many_there_are(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``serve --processes 3`` with no FIRETOWER_WEB_PROCESSES: each process's settings say
    3, which sizes its group commit on PostgreSQL (``runtime.postgres_writer_threads``)."""
    from firetower.cli.processes import supervise
    from tests.crashing_server import tell_processes

    told = tmp_path / "told"
    monkeypatch.setenv("FIRETOWER_TEST_CRASH_LOG", str(told))
    monkeypatch.delenv("FIRETOWER_WEB_PROCESSES", raising=False)
    stop = threading.Timer(30.0, signal.raise_signal, (signal.SIGTERM,))  # a safety net
    stop.start()
    try:
        supervise(3, "127.0.0.1", unused_port(), embedded_worker=True, target=tell_processes)
    finally:
        stop.cancel()
    assert told.read_text().splitlines() == ["3", "3", "3"]
    assert "FIRETOWER_WEB_PROCESSES" not in os.environ  # the environment is put back
