"""The console's alert lists over a storm's worth of stored alerts: how long each takes.

The live alert list polls every few seconds, so in a storm each open console reads it again
and again, on the same two cores that take the storm in. This fills a fresh database with
``--alerts`` alerts stored by intake's own row writer (``intake_rows.write``), from 50
services in 50 groups, with every third alert resolved and one in a hundred acknowledged,
each seen a millisecond after the one before. Each service's alerts join its incident (50
of them), but for the three oldest, which are a small incident's. Then it reads each list
the console and the API show, an incident's included, through the query functions they
call, and prints each time (best of ``--repeat``). Last, it times the retention job's
transactions, each deleting a chunk of the oldest resolved alerts, as intake would wait for
them.

    python -m bench.console_lists --alerts 1000000
    python -m bench.console_lists --backend postgresql --alerts 200000
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from bench.intake_support import POSTGRES_ENV, _fresh_postgres, fingerprint
from bench.support import migrated_runtime
from firetower.auth.service import Actor
from firetower.incidents import service as incidents
from firetower.incidents.schemas import IncidentCreate
from firetower.runtime import Runtime
from firetower.signals import intake_rows, queries, service
from firetower.signals.intake_rows import AlertRow
from firetower.signals.schemas import AlertStatus, IntegrationCreate

SERVICES = 50
SMALL_INCIDENT_ALERTS = 3
"""The oldest alerts stored join a small incident of their own; every other alert, its
service's incident (50 incidents of a storm)."""
STORM_INCIDENT = "INC-8"
"""svc-07's incident (the first declared is INC-1)."""
SMALL_INCIDENT = f"INC-{SERVICES + 1}"
ROWS_PER_TRANSACTION = 5_000
LIST_ROWS = 200
"""What the console's alert list and the API show by default."""
RETENTION_CHUNKS = 50
"""Retention transactions timed after the lists (each deletes the oldest resolved alerts)."""


def _status(number: int) -> str:
    if number % 3 == 0:
        return "resolved"
    return "acknowledged" if number % 100 == 1 else "firing"


def _rows(
    integration_id: int, first: int, count: int, epoch: datetime, incident_ids: list[int]
) -> Iterator[AlertRow]:
    for number in range(first, first + count):
        service_name = f"svc-{number % SERVICES:02d}"
        if number < SMALL_INCIDENT_ALERTS:  # the oldest: under every other alert of a status
            incident_id = incident_ids[SERVICES]
        else:
            incident_id = incident_ids[number % SERVICES]
        seen = epoch + timedelta(milliseconds=number)
        status = _status(number)
        yield AlertRow(
            integration_id=integration_id,
            fingerprint=fingerprint(number // 100, number % 100),
            status=status,
            title="HighErrorRate",
            severity="critical",
            service_name=service_name,
            labels={
                "alertname": "HighErrorRate",
                "service": service_name,
                "instance": f"node-{number}:9100",
            },
            annotations={"summary": f"Error rate above 5% on {service_name}"},
            starts_at=seen,
            ends_at=seen if status == "resolved" else None,
            first_seen_at=seen,
            last_seen_at=seen,
            group_key=f"alertname=HighErrorRate,service={service_name}",
            incident_id=incident_id,
        )


def fill(runtime: Runtime, alerts: int) -> None:
    """Store ``alerts`` alerts of one Alertmanager integration, as intake writes new rows:
    each service's join its incident, but the oldest few, which are a small incident's."""
    with runtime.transaction() as session:
        integration, _ = service.create_integration(
            session, Actor.system(), IntegrationCreate(name="am", kind="alertmanager")
        )
        integration_id = integration.id
        policy = runtime.settings.severity_policy
        incident_ids = [
            incidents.declare(session, Actor.system(), IncidentCreate(title=title), policy).id
            for title in [f"svc-{n:02d} storm" for n in range(SERVICES)] + ["small"]
        ]
    epoch = datetime.now(UTC) - timedelta(milliseconds=alerts)
    for first in range(0, alerts, ROWS_PER_TRANSACTION):
        count = min(ROWS_PER_TRANSACTION, alerts - first)
        with runtime.transaction() as session:
            intake_rows.write(session, _rows(integration_id, first, count, epoch, incident_ids))
    if runtime.database.dialect == "postgresql":
        # What autovacuum does within a minute of such a storm: planned on the statistics
        # of an empty table, a list read its integration's million alerts.
        with runtime.database.engine.connect() as connection:
            connection.exec_driver_sql("ANALYZE alerts")
            connection.commit()


LISTS: dict[str, Callable[[Any], Any]] = {
    "alert list, unfiltered": lambda s: queries.alert_rows(s, limit=LIST_ROWS),
    "alert list, firing": lambda s: queries.alert_rows(
        s, status=AlertStatus.firing, limit=LIST_ROWS
    ),
    "alert list, resolved": lambda s: queries.alert_rows(
        s, status=AlertStatus.resolved, limit=LIST_ROWS
    ),
    "alert list, one integration": lambda s: queries.alert_rows(
        s, integration="am", limit=LIST_ROWS
    ),
    "alert list, one group": lambda s: queries.alert_rows(
        s, group_key="alertname=HighErrorRate,service=svc-07", limit=LIST_ROWS
    ),
    "alert list, storm incident": lambda s: queries.alert_rows(
        s, incident=STORM_INCIDENT, limit=LIST_ROWS
    ),
    "alert list, small incident": lambda s: queries.alert_rows(
        s, incident=SMALL_INCIDENT, limit=LIST_ROWS
    ),
    "incident page, storm": lambda s: (
        queries.alert_counts(s, incident=STORM_INCIDENT),
        queries.alert_rows(s, incident=STORM_INCIDENT, limit=5),
    ),
    "alert counts by status": lambda s: queries.alert_counts(s),
    "counts, one integration": lambda s: queries.alert_counts(s, integration="am"),
    "alert groups": lambda s: service.list_groups(s, limit=LIST_ROWS),
    "groups, one integration": lambda s: service.list_groups(s, integration="am", limit=LIST_ROWS),
}


def retention_chunks(runtime: Runtime, chunks: int) -> list[float]:
    """Seconds each of the first ``chunks`` retention transactions took (as the job runs
    them, commit included), deleting the oldest resolved alerts: what intake may wait for."""
    last_seen_before = datetime.now(UTC)  # every resolved alert stored is past it
    seconds = []
    for _ in range(chunks):
        started = time.perf_counter()
        with runtime.transaction() as session:
            deleted = service.delete_expired_alerts(session, last_seen_before=last_seen_before)
        seconds.append(time.perf_counter() - started)
        if deleted != service.RETENTION_CHUNK_ALERTS:
            raise RuntimeError(f"retention chunk deleted {deleted:,} alerts")
    return seconds


def measure(runtime: Runtime, repeat: int) -> dict[str, list[float]]:
    """Seconds each list took, each run; every list must come back non-empty."""
    seconds: dict[str, list[float]] = {name: [] for name in LISTS}
    for _ in range(repeat):
        for name, read in LISTS.items():
            with runtime.read() as session:
                started = time.perf_counter()
                listed = read(session)
                seconds[name].append(time.perf_counter() - started)
            if not listed:
                raise RuntimeError(f"{name}: nothing listed")
    return seconds


@contextmanager
def _runtime(backend: str, postgres: str | None) -> Iterator[Runtime]:
    with tempfile.TemporaryDirectory(prefix="firetower-bench-lists-") as home:
        url = None
        if backend == "postgresql":
            if not postgres:
                raise SystemExit(f"postgresql needs --postgres or {POSTGRES_ENV}")
            url = _fresh_postgres(postgres, "firetower_bench_lists")
        with migrated_runtime(home, url) as runtime:
            yield runtime


def run(backend: str, postgres: str | None, alerts: int = 1_000_000, repeat: int = 3) -> None:
    with _runtime(backend, postgres) as runtime:
        started = time.perf_counter()
        fill(runtime, alerts)
        filled_seconds = time.perf_counter() - started
        seconds = measure(runtime, repeat)
        chunks = retention_chunks(
            runtime, min(RETENTION_CHUNKS, alerts // 3 // service.RETENTION_CHUNK_ALERTS)
        )
    print(
        f"[{backend}] console lists over {alerts:,} stored alerts "
        f"(stored in {filled_seconds:.0f} s), {LIST_ROWS} rows each, best of {repeat}"
    )
    for name, runs in seconds.items():
        shown = ", ".join(f"{value * 1000:,.0f}" for value in runs)
        print(f"    {name:<28} {min(runs) * 1000:>8,.1f} ms   (runs: {shown} ms)")
    if chunks:
        chunk = service.RETENTION_CHUNK_ALERTS
        median_ms, longest_ms = statistics.median(chunks) * 1000, max(chunks) * 1000
        print(
            f"    retention, {len(chunks)} chunks of {chunk:,} resolved alerts: median "
            f"{median_ms:,.1f} ms, longest {longest_ms:,.1f} ms a transaction "
            f"({len(chunks) * chunk / sum(chunks):,.0f} alerts/s)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--postgres", default=os.environ.get(POSTGRES_ENV))
    parser.add_argument("--alerts", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    options = parser.parse_args()
    run(options.backend, options.postgres, options.alerts, options.repeat)


if __name__ == "__main__":
    main()
