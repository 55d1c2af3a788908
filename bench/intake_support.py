"""Shared parts of the intake benchmarks: a server with a catalog, and an efficient load generator.

The server is `firetower serve` in a subprocess (bench/support.py) on a database this module
names, so a benchmark can count what was committed afterwards. The load generator is one or
more processes, each an asyncio loop with a fixed number of httpx connections; request
bodies come from pre-serialised templates (one bytes join per request, no JSON encoding while
timing). Every run prints its generator parameters so it can be repeated.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import re
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path

import httpx
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from bench.support import percentiles_ms, running_server

POSTGRES_ENV = "FIRETOWER_BENCH_POSTGRES_URL"
PLACEHOLDER = "@@N@@"
"""Where a request's sequence number goes in a body template (instances, dedup keys)."""
FINGERPRINT = "@@F@@"
"""Where a fingerprint goes in a body template: each one unique to its request and place,
16 hex digits scattered as Alertmanager's hashes of the labels are (``fingerprint``)."""
REPEATED = "@@R@@"
"""Where an earlier request's fingerprint goes: ``Template.render(n, earlier=k)`` fills the
i-th REPEATED mark with the fingerprint of request ``k``'s i-th FINGERPRINT mark."""
FINGERPRINTS_PER_BODY = 10_000
"""Places per body: an Alertmanager batch holds at most 10,000 alerts (places 0 to 9,999)."""
FINGERPRINT_MULTIPLIER = 0x9E3779B97F4A7C15
"""Odd, so that multiplying by it modulo 2**64 maps distinct numbers to distinct ones."""


def fingerprint(n: int, place: int) -> str:
    """The fingerprint of request ``n`` at its ``place``-th FINGERPRINT mark."""
    return f"{(n * FINGERPRINTS_PER_BODY + place) * FINGERPRINT_MULTIPLIER % 2**64:016x}"


# -- server and catalog ------------------------------------------------------------------------
@dataclass
class Target:
    """A running server: its URL, an admin token, its database and its process id."""

    label: str
    url: str
    token: str
    database_url: str
    pid: int

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


def _fresh_postgres(admin_url: str, name: str) -> str:
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return make_url(admin_url).set(database=name).render_as_string(hide_password=False)


def _children(pid: int) -> list[int]:
    """The processes whose parent is ``pid``, from /proc."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                status = (entry / "status").read_text()
                if re.search(rf"^PPid:\s+{pid}$", status, re.MULTILINE):
                    found.append(int(entry.name))
    return found


def _server_pid() -> int:
    """The `firetower serve` child of this process (bench/support.py does not expose it)."""
    for pid in _children(os.getpid()):
        with contextlib.suppress(OSError):
            command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            if b"serve" in command and any(b"firetower" in part for part in command):
                return pid
    raise RuntimeError("could not find the firetower serve process")


@contextlib.contextmanager
def intake_server(backend: str, postgres_admin_url: str | None, name: str) -> Iterator[Target]:
    """A fresh server on SQLite (a file in a temporary directory) or on a fresh PostgreSQL
    database named ``firetower_bench_<name>``."""
    with tempfile.TemporaryDirectory(prefix="firetower-bench-intake-") as home:
        if backend == "postgresql":
            if not postgres_admin_url:
                raise SystemExit(f"PostgreSQL needs {POSTGRES_ENV} or --postgres")
            database_url = _fresh_postgres(postgres_admin_url, f"firetower_bench_{name}")
        else:
            database_url = f"sqlite:///{Path(home) / 'bench.db'}"
        with running_server(database_url) as server:
            yield Target(backend, server.url, server.token, database_url, _server_pid())


def create_services(target: Target, names: list[str]) -> None:
    with httpx.Client(base_url=target.url, headers=target.headers, timeout=30) as api:
        for name in names:
            made = api.post("/api/v1/services", json={"name": name, "tier": 2})
            if made.status_code != 201:
                raise RuntimeError(f"creating service {name}: {made.status_code} {made.text}")


def create_integration(
    target: Target, name: str, kind: str, service_name: str | None = None
) -> str:
    """A new integration; returns its ingest key."""
    body: dict[str, object] = {"name": name, "kind": kind}
    if service_name:
        body["service_name"] = service_name
    with httpx.Client(base_url=target.url, headers=target.headers, timeout=30) as api:
        made = api.post("/api/v1/integrations", json=body)
        if made.status_code != 201:
            raise RuntimeError(f"creating integration {name}: {made.status_code} {made.text}")
        return str(made.json()["key"])


def count_rows(target: Target, sql: str) -> int:
    engine = create_engine(target.database_url)
    try:
        with engine.connect() as connection:
            return int(connection.execute(text(sql)).scalar_one())
    finally:
        engine.dispose()


def memory_kib(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak resident set) in KiB, from /proc/<pid>/status, summed over the
    process and its children (``serve --processes``: a supervisor and its server processes;
    the sum of peaks is an upper bound of the peak of the sum)."""
    found = {"VmRSS": 0, "VmHWM": 0}
    for process in (pid, *_children(pid)):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{process}/status").read_text().splitlines():
                key, _, value = line.partition(":")
                if key in found:
                    found[key] += int(value.split()[0])
    return found


# -- request bodies ----------------------------------------------------------------------------
class Template:
    """A JSON body serialised once, with @@X@@ marks (X a capital letter) for numbers.

    ``render(n)`` fills @@N@@ (PLACEHOLDER) with ``n`` and each @@F@@ (FINGERPRINT) with
    ``fingerprint(n, place)``; with ``earlier=k``, each @@R@@ (REPEATED) with
    ``fingerprint(k, place)``, counting its own places; other marks come as keywords.
    """

    def __init__(self, document: object) -> None:
        pieces = re.split(rb"@@([A-Z])@@", json.dumps(document, separators=(",", ":")).encode())
        self.texts = pieces[0::2]
        self.names = [p.decode() for p in pieces[1::2]]

    def render(self, n: int, earlier: int | None = None, **more: int) -> bytes:
        values = {"N": str(n).encode(), **{k: str(v).encode() for k, v in more.items()}}
        out = [self.texts[0]]
        places = {"F": 0, "R": 0}
        requests = {"F": n, "R": earlier}
        for name, piece in zip(self.names, self.texts[1:], strict=True):
            if name in places:
                request = requests[name]
                if request is None:
                    raise ValueError("a template with @@R@@ marks needs render(n, earlier=k)")
                out.append(fingerprint(request, places[name]).encode())
                places[name] += 1
            else:
                out.append(values[name])
            out.append(piece)
        return b"".join(out)


@dataclass(frozen=True)
class Request:
    path: str
    body: bytes


RequestMaker = Callable[[int], Request]
"""Makes request number ``n`` (unique across every generator process of a run)."""


class Turns:
    """Request n: the body of document n mod len(documents) (one per service or routing key,
    taking turns), its PLACEHOLDER filled with n."""

    def __init__(self, path: str, documents: list[object]) -> None:
        self.path = path
        self.templates = [Template(document) for document in documents]

    def __call__(self, n: int) -> Request:
        return Request(self.path, self.templates[n % len(self.templates)].render(n))


# -- load generator ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Load:
    """How the generator drives the server; printed with the figures."""

    connections: int = 8
    processes: int = 1
    seconds: float | None = 10.0
    requests: int | None = None
    """Stop after this many requests in all (the storm); otherwise after ``seconds``."""
    rate_per_second: float | None = None
    """Pace requests to this total rate (paced per connection); None: as fast as answered."""

    def describe(self) -> str:
        stop = f"{self.requests:,} requests" if self.requests else f"{self.seconds:g} s"
        pace = f", paced at {self.rate_per_second:g} requests/s" if self.rate_per_second else ""
        return (
            f"load generator: {self.processes} process(es) x {self.connections} connection(s), "
            f"an httpx {httpx.__version__} client each, HTTP/1.1 keep-alive, bodies from "
            f"pre-serialised templates, stop after {stop}{pace}"
        )


@dataclass
class Outcome:
    elapsed_seconds: float = 0.0
    latencies_seconds: list[float] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)

    @property
    def requests(self) -> int:
        return sum(self.statuses.values())

    @property
    def succeeded(self) -> int:
        return sum(n for code, n in self.statuses.items() if 200 <= code < 300)

    def merge(self, other: Outcome) -> None:
        self.elapsed_seconds = max(self.elapsed_seconds, other.elapsed_seconds)
        self.latencies_seconds.extend(other.latencies_seconds)
        self.statuses.update(other.statuses)
        self.failures.extend(other.failures[: max(0, 5 - len(self.failures))])

    def summary(self) -> str:
        return percentiles_ms(self.latencies_seconds) if self.latencies_seconds else "no requests"

    def batch_rate(self, batch: int) -> str:
        """Alerts and requests a second of the accepted batches, with their latencies."""
        elapsed = self.elapsed_seconds
        return (
            f"{self.succeeded * batch / elapsed:,.0f} alerts/s, "
            f"{self.succeeded / elapsed:,.1f} requests/s over {elapsed:.1f} s ({self.summary()})"
        )

    def print_failures(self) -> None:
        for failure in self.failures:
            print(f"    failure: {failure}")


ONE_CONNECTION = httpx.Limits(max_connections=1, max_keepalive_connections=1)
"""The generator gives each connection its own httpx client: 16 clients that shared one pool
of 16 connections answered 416 single events/s where 16 clients of one connection each
answered 1,007, from the same server (encode/httpx#3215): the pool measured itself."""


async def _drive_one_process(
    url: str, make: RequestMaker, load: Load, index: int, start_at: float
) -> Outcome:
    outcome = Outcome()
    numbers = itertools.count(index, load.processes)
    headers = {"Content-Type": "application/json"}
    connection_gap = (
        load.connections * load.processes / load.rate_per_second if load.rate_per_second else 0.0
    )

    async def connection(client: httpx.AsyncClient, offset: int) -> None:
        next_at = start_at + (connection_gap * offset / load.connections)
        while True:
            now = time.time()
            if load.seconds is not None and now - start_at >= load.seconds:
                return
            n = next(numbers)
            if load.requests is not None and n >= load.requests:
                return
            if connection_gap:
                if next_at > now:
                    await asyncio.sleep(next_at - now)
                next_at += connection_gap
            request = make(n)
            sent = time.perf_counter()
            try:
                answer = await client.post(request.path, content=request.body, headers=headers)
            except httpx.HTTPError as exc:
                outcome.statuses[0] += 1
                if len(outcome.failures) < 5:
                    outcome.failures.append(f"{type(exc).__name__}: {exc}")
                continue
            outcome.latencies_seconds.append(time.perf_counter() - sent)
            outcome.statuses[answer.status_code] += 1
            if answer.status_code >= 300 and len(outcome.failures) < 5:
                outcome.failures.append(f"{answer.status_code}: {answer.text[:300]}")

    async with contextlib.AsyncExitStack() as clients:
        # A client per connection (ONE_CONNECTION says why).
        each = [
            await clients.enter_async_context(
                httpx.AsyncClient(base_url=url, limits=ONE_CONNECTION, timeout=120)
            )
            for _ in range(load.connections)
        ]
        await asyncio.sleep(max(0.0, start_at - time.time()))
        began = time.perf_counter()
        await asyncio.gather(*(connection(client, c) for c, client in enumerate(each)))
        outcome.elapsed_seconds = time.perf_counter() - began
    return outcome


def _process_main(url: str, make: RequestMaker, load: Load, index: int, start_at: float) -> Outcome:
    return asyncio.run(_drive_one_process(url, make, load, index, start_at))


def drive(url: str, make: RequestMaker, load: Load) -> Outcome:
    """Run the load; every process starts at the same moment. ``make`` must be picklable
    when ``load.processes`` > 1 (a module-level class instance)."""
    start_at = time.time() + 1.0  # each process makes its clients before then
    if load.processes == 1:
        return _process_main(url, make, load, 0, start_at)
    total = Outcome()
    with ProcessPoolExecutor(load.processes, mp_context=get_context("fork")) as pool:
        futures = [
            pool.submit(_process_main, url, make, load, index, start_at)
            for index in range(load.processes)
        ]
        for future in futures:
            total.merge(future.result())
    return total


# -- command lines -----------------------------------------------------------------------------
def arguments(description: str, *, processes: bool = True) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--backend",
        choices=["sqlite", "postgresql", "both"],
        default=None,
        help=f"default: sqlite, and postgresql too when {POSTGRES_ENV} is set",
    )
    parser.add_argument(
        "--postgres",
        default=os.environ.get(POSTGRES_ENV),
        help=f"admin URL of a PostgreSQL server (default: ${POSTGRES_ENV})",
    )
    parser.add_argument("--connections", type=int, default=8, help="per generator process")
    parser.add_argument(
        "--server-processes",
        type=int,
        default=1,
        help="firetower serve --processes (FIRETOWER_WEB_PROCESSES) for the server",
    )
    if processes:
        parser.add_argument("--processes", type=int, default=1, help="load generator processes")
    return parser


def run_each_backend(parser: argparse.ArgumentParser, run: Callable[..., None]) -> None:
    """Parse the command line and run the benchmark on each chosen backend. Every option but
    --backend and --postgres goes to ``run`` under its own name."""
    options = vars(parser.parse_args())
    choice, postgres = options.pop("backend"), options.pop("postgres")
    with server_processes(options.pop("server_processes")):
        for backend in backends(choice, postgres):
            run(backend, postgres, **options)


@contextlib.contextmanager
def server_processes(count: int) -> Iterator[None]:
    """Servers started meanwhile run ``firetower serve --processes count``."""
    before = os.environ.get("FIRETOWER_WEB_PROCESSES")
    os.environ["FIRETOWER_WEB_PROCESSES"] = str(count)  # the server inherits it
    print(f"server: firetower serve --processes {count}")
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("FIRETOWER_WEB_PROCESSES")
        else:
            os.environ["FIRETOWER_WEB_PROCESSES"] = before


def backends(choice: str | None, postgres: str | None) -> list[str]:
    if choice == "both":
        return ["sqlite", "postgresql"]
    if choice:
        return [choice]
    return ["sqlite", "postgresql"] if postgres else ["sqlite"]
