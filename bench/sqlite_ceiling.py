"""SQLite's own ceiling for alert intake: new alerts committed with no HTTP and no routing.

Two writer processes take turns at one database file as two ``serve`` processes do
(firetower's ``WriterLock``, its connection pragmas, its WAL checkpointer), and each commits
groups of new alerts the way intake's transaction stores them: one known-alert read by
fingerprint, then INSERTs of 100 rows each into the migrated ``alerts`` table (whose trigger
writes each alert's key), and intake's fold of the keys when it is due. Every row's
values are encoded before the turn is taken. Nothing else runs: no HTTP, no parsing, no
routing, no incidents. The figure bounds what the server can take in on this machine.

It runs with two orders of fingerprints: scattered, as Alertmanager's hashes of the labels
are (``intake_support.fingerprint``), and in order (consecutive numbers, as the first rounds
of the HTTP benchmarks sent by accident). Until the keys moved out of ``alerts`` (0014),
each scattered alert landed in a leaf page of the unique (integration, fingerprint) index
of its own, which the commit then wrote to the log whole; alerts in order fill one page
after another.

    python -m bench.sqlite_ceiling --seconds 10 --group 800
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from datetime import UTC, datetime
from multiprocessing import get_context
from multiprocessing.queues import Queue

from sqlalchemy import text

from bench.intake_alertmanager import BATCH
from bench.intake_support import fingerprint
from firetower.db import WalCheckpointer, WriterLock, make_engine
from firetower.migrate import upgrade
from firetower.signals import intake_rows
from firetower.signals.intake_rows import AlertRow, Encoder, fold_due, fold_keys

ORDERS = ("scattered", "in order")
GROUP = 800
"""Alerts per commit: the HTTP benchmarks keep 16 requests of 100 alerts in flight, which
the group commits of two server processes share."""
TARGET_PER_SECOND = 35_000
KNOWN = str(intake_rows.KNOWN["sqlite"])
"""Intake's own known-alert read, with its named parameters (sqlite3 takes them as such)."""


def _fingerprint(order: str, request: int, place: int) -> str:
    if order == "scattered":
        return fingerprint(request, place)
    return f"{request * BATCH + place:016x}"


def _group_rows(order: str, integration_id: int, requests: range) -> list[AlertRow]:
    """The rows of these requests' alerts."""
    now = datetime.now(UTC)
    annotations = {"summary": "Error rate above 5% on api"}
    rows = []
    for request in requests:
        service = f"svc-{request % 50:02d}"
        for place in range(BATCH):
            labels = {
                "alertname": "HighErrorRate",
                "service": service,
                "severity": "critical",
                "instance": f"node-{request}-{place}:9100",
                "job": "api",
            }
            row = AlertRow(
                integration_id=integration_id,
                fingerprint=_fingerprint(order, request, place),
                status="firing",
                title="HighErrorRate",
                severity="critical",
                service_name=None,
                labels=labels,
                annotations=annotations,
                starts_at=now,
                ends_at=None,
                first_seen_at=now,
                last_seen_at=now,
                group_key=f"alertname=HighErrorRate,service={service}",
            )
            rows.append(row)
    return rows


def _writer(
    path: str,
    order: str,
    integration_id: int,
    first: int,
    writers: int,
    group: int,
    until: float,
    out: Queue,
) -> None:
    """Commit groups until the wall-clock time ``until``; report the alerts committed, the
    seconds the turn was held, and when the first turn was asked for and the last given back."""
    lock = WriterLock(f"{path}.writer")
    checkpointer = WalCheckpointer(path, lock)
    lock.first_write = checkpointer.ensure_running
    engine = make_engine(f"sqlite:///{path}", pool_size=1)
    raw = engine.raw_connection()  # firetower's pragmas; BEGIN IMMEDIATE as its writers
    connection = raw.driver_connection
    assert connection is not None
    connection.execute("PRAGMA temp_store=MEMORY")  # as a group commit (BOUNDED_WRITES_OPTION)
    requests_per_group = group // BATCH
    request = first
    committed, held_seconds = 0, 0.0
    fold_seconds: list[float] = []
    began = ended = time.time()
    while time.time() < until:
        # Writer w sends requests w, w + writers, ...: their fingerprints interleave.
        requests = range(request, request + writers * requests_per_group, writers)
        request += writers * requests_per_group
        rows = _group_rows(order, integration_id, requests)
        fingerprints = json.dumps([row.fingerprint for row in rows])
        # Each request's INSERT made ahead, as a request settled ahead makes it.
        encoder = Encoder("sqlite")  # one per group: it keeps what it encoded alive
        inserts = [
            intake_rows.sqlite_inserts(rows[start : start + BATCH], encoder)
            for start in range(0, len(rows), BATCH)
        ]
        if not committed:
            began = time.time()
        lock.acquire()
        started = time.perf_counter()
        try:
            connection.execute("BEGIN IMMEDIATE")
            known = {"integration_id": integration_id, "fingerprints": fingerprints}
            assert connection.execute(KNOWN, known).fetchall() == []
            for statements in inserts:
                for statement, parameters in statements:
                    last_id = connection.execute(statement, parameters).lastrowid
            if fold_due(last_id - len(rows) + 1, last_id):
                fold_started = time.perf_counter()
                fold_keys(connection.execute)  # and merge, as intake does
                fold_seconds.append(time.perf_counter() - fold_started)
            connection.execute("COMMIT")
        finally:
            held_seconds += time.perf_counter() - started
            lock.release()
        ended = time.time()
        committed += len(rows)
    checkpointer.close()
    raw.close()
    engine.dispose()
    out.put((committed, held_seconds, began, ended, fold_seconds))


def _fresh_database(home: str) -> tuple[str, int]:
    path = f"{home}/ceiling.db"
    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine)
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO integrations (name, kind, key_prefix, key_hash, created_at) "
                "VALUES ('am', 'alertmanager', 'ceiling', 'unused', :now)"
            ),
            {"now": Encoder("sqlite").time(datetime.now(UTC))},  # as the ORM stores times
        )
        integration_id = connection.execute(text("SELECT id FROM integrations")).scalar_one()
    engine.dispose()
    return path, int(integration_id)


def measure(
    order: str, seconds: float, group: int, processes: int
) -> tuple[float, float, int, list[float]]:
    """Alerts committed a second, µs of the write turn per alert, rows stored, and the
    seconds each fold of the alert keys took, shortest first."""
    context = get_context("spawn")
    with tempfile.TemporaryDirectory(prefix="firetower-bench-ceiling-") as home:
        path, integration_id = _fresh_database(home)
        out: Queue = context.Queue()
        until = time.time() + 1.5 + seconds  # spawned processes take a moment to start
        writers = [
            context.Process(
                target=_writer,
                args=(path, order, integration_id, first, processes, group, until, out),
            )
            for first in range(processes)
        ]
        for writer in writers:
            writer.start()
        reports = [out.get(timeout=seconds + 120) for _ in writers]
        for writer in writers:
            writer.join()
        engine = make_engine(f"sqlite:///{path}")
        with engine.connect() as connection:
            stored = connection.execute(text("SELECT count(*) FROM alerts")).scalar_one()
        engine.dispose()
    committed = sum(report[0] for report in reports)
    if committed != stored:
        raise RuntimeError(f"{committed} alerts reported committed, {stored} stored")
    held = sum(report[1] for report in reports)
    span = max(report[3] for report in reports) - min(report[2] for report in reports)
    folds = sorted(fold for report in reports for fold in report[4])
    return committed / span, held / committed * 1e6, stored, folds


def run(seconds: float = 10, group: int = GROUP, processes: int = 2) -> None:
    print(
        f"[sqlite] ceiling: {processes} writer process(es), {group} new alerts per commit "
        f"(INSERTs of {BATCH} rows), no HTTP and no routing; target {TARGET_PER_SECOND:,}/s"
    )
    for order in ORDERS:
        rate, held_us, stored, folds = measure(order, seconds, group, processes)
        print(
            f"    fingerprints {order:9}: {rate:8,.0f} alerts/s committed, "
            f"write turn {held_us:4.1f} µs per alert, {stored:,} alerts stored"
        )
        if folds:
            print(
                f"        alert keys folded {len(folds)} times, median "
                f"{statistics.median(folds) * 1e3:.0f} ms, longest {folds[-1] * 1e3:.0f} ms"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--group", type=int, default=GROUP, help="alerts per commit (x100)")
    parser.add_argument("--processes", type=int, default=2, help="writer processes")
    arguments = parser.parse_args()
    if arguments.group < BATCH or arguments.group % BATCH:
        parser.error(f"--group must be a positive multiple of {BATCH}")
    run(arguments.seconds, arguments.group, arguments.processes)


if __name__ == "__main__":
    main()
