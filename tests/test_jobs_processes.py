"""Workers as real processes: killed mid-job (SIGKILL), and `firetower worker` on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from firetower.db import Database
from firetower.events import unit_of_work
from firetower.jobs import (
    DEAD,
    QUEUED,
    RUNNING,
    SUCCEEDED,
    Job,
    JobContext,
    JobRegistry,
    Worker,
    WorkerHeartbeat,
    enqueue,
)
from firetower.settings import Settings
from tests.conftest import SECRET
from tests.job_worker_proc import SLOW_KIND, marks, marks_metadata, record_mark

REPO = Path(__file__).resolve().parent.parent


def wait_for(
    condition: Callable[[], bool], what: str, proc: subprocess.Popen[bytes] | None = None
) -> None:
    """Poll (60 s at most) until ``condition`` holds; fail clearly if the process died."""
    deadline = time.monotonic() + 60
    while not condition():
        if proc is not None and proc.poll() is not None:
            _out, err = proc.communicate()
            pytest.fail(f"worker exited ({proc.returncode}) before {what}: {err.decode()[-2000:]}")
        if time.monotonic() > deadline:
            pytest.fail(f"gave up after 60s waiting for {what}")
        time.sleep(0.05)


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FIRETOWER_")}
    src = str(REPO / "src")
    env["PYTHONPATH"] = os.pathsep.join([src, str(REPO), env.get("PYTHONPATH", "")])
    env.update(extra)
    return env


@pytest.fixture
def marks_table(database: Database) -> Iterator[None]:
    marks_metadata.create_all(database.engine)
    yield
    marks_metadata.drop_all(database.engine)


def _job(database: Database, job_id: int) -> Job:
    with database.session() as session:
        job = session.get(Job, job_id)
        assert job is not None
        return job


def _job_worker(database: Database, tmp_path: Path) -> subprocess.Popen[bytes]:
    """``tests.job_worker_proc`` on the test's database, its marker files in ``tmp_path``."""
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.job_worker_proc",
            database.settings.database_url or "",
            str(tmp_path),
        ],
        cwd=REPO,
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


@pytest.mark.usefixtures("marks_table")
def test_job_of_a_killed_worker_runs_again_once(
    database: Database, settings: Settings, tmp_path: Path
) -> None:
    with unit_of_work(database.sessions, None) as session:
        job_id = enqueue(session, SLOW_KIND, {"to": "alice"})
    assert job_id is not None
    proc = _job_worker(database, tmp_path)
    try:
        running = tmp_path / f"running-{job_id}-1"
        wait_for(running.exists, "the doomed worker to start the job", proc)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()
    assert proc.returncode == -signal.SIGKILL

    job = _job(database, job_id)
    assert (job.status, job.attempts, job.lease_owner) == (RUNNING, 1, "doomed-worker")
    assert _marks(database) == [], "the killed attempt's writes died with its transaction"

    ran: list[dict[str, Any]] = []
    registry = JobRegistry()
    rescuer_db = Database(settings.model_copy(update={"job_lease_seconds": 1}))
    rescuer = Worker(rescuer_db, registry, worker_id="rescuer")

    @registry.handler(SLOW_KIND)
    def quick(context: JobContext, payload: dict[str, Any]) -> None:
        record_mark(context, rescuer.worker_id)
        ran.append(payload)

    try:
        # The lease (1 s, renewed when the handler started) must run out first.
        wait_for(
            lambda: rescuer.run_once() >= 0 and _job(database, job_id).status == SUCCEEDED,
            "the job to run again after its lease expired",
        )
        for _ in range(3):
            assert rescuer.run_once() == 0
    finally:
        rescuer_db.dispose()
    job = _job(database, job_id)
    assert (job.status, job.attempts, job.lease_owner) == (SUCCEEDED, 2, "rescuer")
    assert ran == [{"to": "alice"}]
    assert _marks(database) == [(job_id, 2, "rescuer")]


@pytest.mark.usefixtures("marks_table")
def test_sigterm_finishes_the_running_job_and_releases_the_rest(
    database: Database, tmp_path: Path
) -> None:
    with unit_of_work(database.sessions, None) as session:
        job_ids = [enqueue(session, SLOW_KIND, {"n": n}) for n in range(3)]
    first = job_ids[0]
    assert first is not None
    proc = _job_worker(database, tmp_path)
    try:
        wait_for((tmp_path / f"running-{first}-1").exists, "the worker to start a job", proc)
        proc.send_signal(signal.SIGTERM)
        (tmp_path / f"finish-{first}").touch()
        try:
            _out, err = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            pytest.fail("no exit 60 s after SIGTERM: the worker went on with its claimed batch")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err.decode()[-2000:]
    assert _marks(database) == [(first, 1, "doomed-worker")], "it ran only the job it had begun"
    jobs = [_job(database, job_id) for job_id in job_ids if job_id is not None]
    assert [(j.status, j.attempts, j.lease_owner) for j in jobs] == [
        (SUCCEEDED, 1, "doomed-worker"),
        (QUEUED, 0, None),
        (QUEUED, 0, None),
    ], "the claimed jobs it had not begun are released, no attempt spent"


def _marks(database: Database) -> list[tuple[int, int, str]]:
    with database.session() as session:
        rows = session.execute(select(marks.c.job_id, marks.c.attempt, marks.c.worker))
        return [(r.job_id, r.attempt, r.worker) for r in rows]


def test_worker_command_runs_jobs_and_stops_on_sigterm(database: Database, tmp_path: Path) -> None:
    with unit_of_work(database.sessions, None) as session:
        job_id = enqueue(session, "no.such.kind")
    assert job_id is not None
    firetower = Path(sys.executable).parent / "firetower"
    proc = subprocess.Popen(
        [str(firetower), "worker"],
        cwd=tmp_path,
        env=_env(
            FIRETOWER_ENV="test",
            FIRETOWER_HOME=str(tmp_path / "home"),
            FIRETOWER_DATABASE_URL=database.settings.database_url or "",
            FIRETOWER_SECRET_KEY=SECRET,
            FIRETOWER_WORKER_POLL_INTERVAL_SECONDS="0.05",
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )

    def beating() -> bool:
        with database.session() as session:
            return (
                session.scalar(select(WorkerHeartbeat).where(WorkerHeartbeat.pid == proc.pid))
                is not None
            )

    try:
        wait_for(lambda: _job(database, job_id).status == DEAD, "the worker to take the job", proc)
        wait_for(beating, "the worker's heartbeat", proc)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err.decode()[-2000:]
    assert b"worker stopped" in out + err
    with database.session() as session:
        beat = session.scalar(select(WorkerHeartbeat).where(WorkerHeartbeat.pid == proc.pid))
    assert beat is not None and beat.stopped_at is not None, (
        "a worker stopped by SIGTERM keeps its heartbeat, marked stopped"
    )
    assert _job(database, job_id).last_error == (
        "no handler is registered for job kind 'no.such.kind'"
    )
