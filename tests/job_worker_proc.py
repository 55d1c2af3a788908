"""A job worker in its own process for the crash test: ``python -m tests.job_worker_proc URL DIR``.

It runs one kind of job, ``crash.slow``: the handler records its attempt in ``test_job_marks``
(in the job's transaction, so it is rolled back if the process dies), writes a file named
``running-<job id>-<attempt>`` into DIR so the test knows it is running, then sleeps until
a file ``finish-<job id>`` appears in DIR, or far longer than any test waits. The crash test
kills it with SIGKILL; the shutdown test sends SIGTERM, which stops it as it stops
``firetower worker``.
"""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path
from typing import Any

from sqlalchemy import Column, Integer, MetaData, String, Table, UniqueConstraint, insert

from firetower.db import Database
from firetower.jobs import JobContext, JobRegistry, Worker
from firetower.settings import Settings

SLOW_KIND = "crash.slow"
SECRET = "test-secret-" + "x" * 40

# A scratch table outside the app's schema: one row per attempt that committed.
marks_metadata = MetaData()
marks = Table(
    "test_job_marks",
    marks_metadata,
    Column("job_id", Integer, nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("worker", String(100), nullable=False),
    UniqueConstraint("job_id", "attempt", name="uq_test_job_marks_job_id_attempt"),
)


def record_mark(context: JobContext, worker_id: str) -> None:
    context.session.execute(
        insert(marks).values(job_id=context.job_id, attempt=context.attempt, worker=worker_id)
    )


def main(database_url: str, marker_dir: str) -> None:
    settings = Settings(
        env="test",
        home=Path(marker_dir) / "home",
        database_url=database_url,
        secret_key=SECRET,
        job_lease_seconds=1,
        worker_poll_interval_seconds=0.05,
    )
    registry = JobRegistry()
    worker = Worker(Database(settings), registry, worker_id="doomed-worker")

    @registry.handler(SLOW_KIND)
    def slow(context: JobContext, payload: dict[str, Any]) -> None:
        record_mark(context, worker.worker_id)
        context.session.flush()
        Path(marker_dir, f"running-{context.job_id}-{context.attempt}").touch()
        finish = Path(marker_dir, f"finish-{context.job_id}")
        deadline = time.monotonic() + 3600
        while not finish.exists() and time.monotonic() < deadline:
            time.sleep(0.05)

    signal.signal(signal.SIGTERM, lambda *_: worker.stop(0))  # as `firetower worker` does
    worker.run_forever()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
