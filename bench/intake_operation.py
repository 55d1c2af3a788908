"""The Alertmanager batch operation alone: CPU per alert before and inside its transaction.

What the server does for a batch while it holds SQLite's write turn (authenticate, read the
known alerts, record, route, insert, commit), without HTTP and without other processes, so
that a change to that path can be measured without the noise of a loaded 2-core machine;
and, timed apart, what its request does before (parse the body, make the signals, encode
their values, draft the rows). Each batch is stored in a transaction of its own (the server
groups several, so its per-alert cost is a little lower). Every service already has its
open incident: later batches attach to it.

    python -m bench.intake_operation --batches 200 --rounds 5

``--silences N`` adds N active silences, each a regex on ``instance`` that no alert matches,
so every alert is matched against every one, each with a label value not seen before (RE2's
remembered answers do not help): what users' regexes cost intake at worst.

For a count that does not move with the machine's speed, run it under callgrind with
``--callgrind``: it switches instrumentation on for one part only (``--part``, the
transaction by default), and valgrind's "Collected" line divided by the alerts printed is
the instructions per alert.

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
from datetime import UTC, datetime, timedelta

from bench.intake_alertmanager import BATCH, SERVICES, distinct_batches, service_names
from bench.support import migrated_runtime
from firetower.app import tune_garbage_collector
from firetower.auth.service import Actor
from firetower.catalog import service as catalog
from firetower.catalog.schemas import ServiceCreate
from firetower.runtime import Runtime
from firetower.signals import routes, service
from firetower.signals.schemas import (
    AlertmanagerPayload,
    IntegrationCreate,
    IntegrationKind,
    Matcher,
    MatchOp,
    SilenceCreate,
)


class Batches:
    """Alertmanager bodies of distinct alerts, and the store operation the endpoint runs."""

    def __init__(self, runtime: Runtime, silences: int = 0) -> None:
        self.runtime = runtime
        names = service_names(SERVICES)
        with runtime.transaction() as session:
            for name in names:
                catalog.create_service(session, Actor.system(), ServiceCreate(name=name))
            _, self.key = service.create_integration(
                session, Actor.system(), IntegrationCreate(name="am", kind="alertmanager")
            )
            for number in range(silences):
                matcher = Matcher(label="instance", op=MatchOp.regex, value=f"db-{number}-.*")
                ends_at = datetime.now(UTC) + timedelta(days=1)
                silence = SilenceCreate(matchers=[matcher], ends_at=ends_at)
                service.create_silence(session, Actor.system(), silence)
        self.make = distinct_batches(self.key, names, BATCH)  # the server benchmark's bodies
        self.sent = 0

    def bodies(self, count: int) -> list[bytes]:
        """The next ``count`` request bodies."""
        made = [self.make(number).body for number in range(self.sent, self.sent + count)]
        self.sent += count
        return made

    def prepare(self, bodies: list[bytes]) -> list[tuple[bytes, routes._Prepared]]:
        """The bodies parsed and prepared as the endpoint does before its transaction."""
        prepared = []
        engine = self.runtime.database.engine
        policy = self.runtime.settings.severity_policy
        for body in bodies:
            payload = routes._parse_fast(AlertmanagerPayload, body)
            assert payload is not None
            ready = routes._prepare_ahead(engine, policy, self.key, payload)
            prepared.append((body, ready))
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


PARTS = ("transaction", "request")


def run(
    batches: int = 200,
    rounds: int = 5,
    callgrind: bool = False,
    part: str = "transaction",
    silences: int = 0,
) -> None:
    with (
        tempfile.TemporaryDirectory(prefix="firetower-bench-operation-") as home,
        migrated_runtime(home, checkpoints=False) as runtime,
    ):
        made = Batches(runtime, silences)
        made.store(made.prepare(made.bodies(2 * SERVICES)))  # every service has its incident
        tune_garbage_collector()  # as ``serve`` does
        per_alert_us: dict[str, list[float]] = {name: [] for name in PARTS}
        for _ in range(rounds):
            bodies = made.bodies(batches)
            if callgrind and part == "request":
                _callgrind("on")
            started = time.process_time()
            prepared = made.prepare(bodies)
            per_alert_us["request"].append(_per_alert_us(started, batches))
            if callgrind:
                _callgrind("off" if part == "request" else "on")
            started = time.process_time()
            made.store(prepared)
            per_alert_us["transaction"].append(_per_alert_us(started, batches))
            if callgrind:
                _callgrind("off")
    muted = f", {silences} regex silences" if silences else ""
    print(f"[sqlite] Alertmanager batch operation, {batches} batches of {BATCH} per round{muted}")
    for name, where in (("request", "before the transaction"), ("transaction", "in it")):
        shown = ", ".join(f"{value:.1f}" for value in per_alert_us[name])
        print(
            f"    CPU per alert {where}: median {statistics.median(per_alert_us[name]):.1f} µs "
            f"(rounds: {shown}); {rounds * batches * BATCH:,} alerts timed"
        )


def _per_alert_us(started: float, batches: int) -> float:
    return (time.process_time() - started) / (batches * BATCH) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=200, help="batches per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--callgrind",
        action="store_true",
        help="switch callgrind's instrumentation on while timing one part",
    )
    parser.add_argument(
        "--part", choices=PARTS, default="transaction", help="the part callgrind counts"
    )
    parser.add_argument(
        "--silences", type=int, default=0, help="active regex silences that match no alert"
    )
    run(**vars(parser.parse_args()))


if __name__ == "__main__":
    main()
