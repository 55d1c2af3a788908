"""`make bench`: print every figure. PostgreSQL runs when FIRETOWER_BENCH_POSTGRES_URL is set."""

from __future__ import annotations

import os
import platform

from bench import (
    api_incidents,
    console_lists,
    intake_alertmanager,
    intake_alertmanager_wrk,
    intake_events,
    intake_events_wrk,
    intake_latency,
    intake_operation,
    intake_storm,
    jobs_queue,
    migrate_sqlite,
    reference_alertmanager,
    sqlite_ceiling,
)
from bench.intake_support import server_processes
from firetower.logs import configure_logging


def main() -> None:
    configure_logging(level="warning")
    postgres = os.environ.get("FIRETOWER_BENCH_POSTGRES_URL")
    python = f"{platform.python_implementation()} {platform.python_version()}"
    print(f"machine: {os.cpu_count()} cores, {python}")
    jobs_queue.run("sqlite", None)
    if postgres:
        jobs_queue.run("postgresql", postgres, workers=2)
    api_incidents.run("sqlite", None)
    if postgres:
        api_incidents.run("postgresql", jobs_queue._fresh_postgres(postgres))
    # Alert intake (issue 3); each script runs alone too: python -m bench.intake_storm --help
    backends = ["sqlite", "postgresql"] if postgres else ["sqlite"]
    # The reference, Alertmanager itself, on this machine and load (skipped if absent)
    reference_alertmanager.run(seconds=10, connections=16, processes=2)
    intake_operation.run()  # the batch operation alone, without HTTP: CPU per alert
    sqlite_ceiling.run()  # SQLite alone under two writer processes: what bounds the rest
    migrate_sqlite.run()  # an upgrade over 1M stored alerts, and its reference check
    for backend in backends:
        intake_alertmanager.run(backend, postgres, seconds=10)
        with server_processes(2):  # the throughput targets, with both cores serving
            intake_alertmanager.run(backend, postgres, seconds=10, connections=16, processes=2)
            # The same load from wrk, then Alertmanager under it (once)
            intake_alertmanager_wrk.run(
                backend, postgres, seconds=10, connections=16, reference=backend == "sqlite"
            )
            intake_events_wrk.run(backend, postgres, seconds=8, keys=1, connections=64)
            intake_events_wrk.run(backend, postgres, seconds=8, keys=50, connections=64)
        intake_events.run(backend, postgres, seconds=10)
        intake_events_wrk.run(backend, postgres, seconds=8, keys=50)
        intake_latency.run(backend, postgres, seconds=20)
        intake_storm.run(backend, postgres, alerts=100_000, resolve=True)
        console_lists.run(backend, postgres)  # the lists a console polls, over 1M alerts
    if not postgres:
        print(
            "PostgreSQL figures skipped: set FIRETOWER_BENCH_POSTGRES_URL=postgresql+psycopg://USER@HOST/DB"
        )


if __name__ == "__main__":
    main()
