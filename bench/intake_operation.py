"""The Alertmanager batch operation alone: CPU per alert inside its transaction on SQLite.

What the server does for a batch while it holds SQLite's write turn (authenticate, read the
known alerts, record, route, insert, commit), without HTTP and without other processes, so
that a change to that path can be measured without the noise of a loaded 2-core machine.
Batches are parsed and prepared as requests prepare them, before the timing; then each is
stored in a transaction of its own (the server groups several, so its per-alert cost is a
little lower). Every service already has its open incident: later batches attach to it.

    python -m bench.intake_operation --batches 200 --rounds 5

For a count that does not move with the machine's speed, run it under callgrind with
``--callgrind``: it switches instrumentation on for the timed part only, and valgrind's
"Collected" line divided by the alerts printed is the instructions per alert.

    valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file=/dev/null \\
        .venv/bin/python -m bench.intake_operation --callgrind --batches 20 --rounds 1
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from bench.intake_alertmanager import BATCH, SERVICES, distinct_batches, service_names
from firetower.app import build_runtime
from firetower.auth.service import Actor
from firetower.catalog import service as catalog
from firetower.catalog.schemas import ServiceCreate
from firetower.db import Database
from firetower.migrate import upgrade
from firetower.runtime import Runtime
from firetower.settings import Settings
from firetower.signals import routes, service
from firetower.signals.schemas import AlertmanagerPayload, IntegrationCreate, IntegrationKind


class Batches:
    """Alertmanager bodies of distinct alerts, and the store operation the endpoint runs."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        names = service_names(SERVICES)
        with runtime.transaction() as session:
            for name in names:
                catalog.create_service(session, Actor.system(), ServiceCreate(name=name))
            _, self.key = service.create_integration(
                session, Actor.system(), IntegrationCreate(name="am", kind="alertmanager")
            )
        self.make = distinct_batches(self.key, names, BATCH)  # the server benchmark's bodies
        self.sent = 0

    def prepare(self, count: int) -> list[tuple[bytes, routes._Prepared]]:
        """The next ``count`` bodies, parsed and prepared as the endpoint does before its
        transaction."""
        prepared = []
        engine = self.runtime.database.engine
        for number in range(self.sent, self.sent + count):
            body = self.make(number).body
            payload = routes._parse_fast(AlertmanagerPayload, body)
            assert payload is not None
            prepared.append((body, routes._prepare_ahead(engine, self.key, payload)))
        self.sent += count
        return prepared

    def store(self, prepared: list[tuple[bytes, routes._Prepared]]) -> None:
        policy = self.runtime.settings.severity_policy
        for body, ready in prepared:
            with self.runtime.transaction() as session:
                answer = routes._store_batch(
                    policy, self.key, body, IntegrationKind.alertmanager, ready, session
                )
                assert answer.status_code == 200, answer


def _callgrind(switch: str) -> None:
    subprocess.run(["callgrind_control", "-i", switch, str(os.getpid())], check=True)


def run(batches: int = 200, rounds: int = 5, callgrind: bool = False) -> None:
    with tempfile.TemporaryDirectory(prefix="firetower-bench-operation-") as home:
        settings = Settings(
            env="test",
            home=Path(home),
            database_url=f"sqlite:///{home}/bench.db",
            secret_key="bench-" * 8,
            embedded_worker=False,
        )
        database = Database(settings)
        upgrade(database.engine)
        if database.writer_lock is not None:
            # No checkpoint thread: its work would be counted too (process time, callgrind).
            database.writer_lock.first_write = None
        runtime = build_runtime(settings, database)
        made = Batches(runtime)
        made.store(made.prepare(2 * SERVICES))  # every service has its incident
        per_alert_us = []
        for _ in range(rounds):
            prepared = made.prepare(batches)
            if callgrind:
                _callgrind("on")
            started = time.process_time()
            made.store(prepared)
            spent = time.process_time() - started
            if callgrind:
                _callgrind("off")
            per_alert_us.append(spent / (batches * BATCH) * 1e6)
        database.dispose()
    shown = ", ".join(f"{value:.1f}" for value in per_alert_us)
    print(f"[sqlite] Alertmanager batch operation, {batches} batches of {BATCH} per round")
    print(
        f"    CPU per alert in the transaction: median {statistics.median(per_alert_us):.1f} µs "
        f"(rounds: {shown}); {rounds * batches * BATCH:,} alerts timed"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=200, help="batches per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--callgrind",
        action="store_true",
        help="switch callgrind's instrumentation on while timing",
    )
    run(**vars(parser.parse_args()))


if __name__ == "__main__":
    main()
