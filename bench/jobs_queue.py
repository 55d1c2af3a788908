"""Durable job queue: enqueue and drain throughput with one worker (two on PostgreSQL)."""

from __future__ import annotations

import tempfile
import threading
import time
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from firetower.db import Database
from firetower.events import unit_of_work
from firetower.jobs import JobRegistry, Worker, enqueue
from firetower.migrate import upgrade
from firetower.settings import Settings

JOBS = 5000


def _fresh_postgres(admin_url: str) -> str:
    name = "firetower_bench_jobs"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return make_url(admin_url).set(database=name).render_as_string(hide_password=False)


def run(label: str, database_url: str | None, workers: int = 1) -> None:
    with tempfile.TemporaryDirectory(prefix="firetower-bench-") as home:
        url = (
            _fresh_postgres(database_url) if database_url else f"sqlite:///{Path(home) / 'jobs.db'}"
        )
        settings = Settings(env="test", home=Path(home), database_url=url, secret_key="b" * 40)
        database = Database(settings)
        upgrade(database.engine)
        registry = JobRegistry()
        registry.handler("noop")(lambda ctx, payload: None)

        started = time.perf_counter()
        for batch in range(JOBS // 100):
            with unit_of_work(database.sessions, None) as session:
                for n in range(100):
                    enqueue(session, "noop", {"n": batch * 100 + n})
        enqueue_rate = JOBS / (time.perf_counter() - started)

        pool = [Worker(database, registry, batch_size=50) for _ in range(workers)]
        started = time.perf_counter()

        def drain(worker: Worker) -> None:
            while worker.run_once():
                pass

        threads = [threading.Thread(target=drain, args=(w,)) for w in pool]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        drain_rate = JOBS / (time.perf_counter() - started)
        print(
            f"[{label}] jobs: enqueue {enqueue_rate:,.0f}/s (100 per transaction), "
            f"run {drain_rate:,.0f}/s with {workers} worker(s)"
        )
        database.dispose()
