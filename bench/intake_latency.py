"""Alert received -> incident opened -> first job enqueued, while alerts flow in the background.

Background: a generator process sends Alertmanager batches (BATCH distinct alerts each, over
SERVICES services: a service's first batch opens its incident, the later ones attach to it)
paced to BACKGROUND alerts/s in all.
Foreground: every INTERVAL seconds one single-alert batch for a service with no incident
yet, so each one opens an incident; sent one at a time from this process.

What is measured for each foreground alert (all clocks are this machine's wall clock):
- *opened*: from sending the request to its response. Intake answers after the transaction
  that stores the alert and declares the incident has committed, so this is the time until
  the incident exists for everyone (plus one loopback HTTP round trip).
- *declared*: from sending to the incident's ``declared_at`` (the server's clock when it
  made the row; committed a little later, within *opened*).
- *first job*: from sending to the ``created_at`` of the first job row whose payload names
  the incident (its ref or id) and was made before the response came, so in the declaring
  transaction. When declaring an incident enqueues no job (paging comes with a later issue)
  the script says so, and *opened* is the figure to hold to the target: p99 under 200 ms.

    python -m bench.intake_latency --seconds 20 --background 1000 --interval 0.2
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from multiprocessing import get_context

import httpx
from sqlalchemy import select

from bench.intake_alertmanager import alertmanager_batch, distinct_batches, service_names
from bench.intake_support import (
    Load,
    Outcome,
    Target,
    Template,
    arguments,
    create_integration,
    create_services,
    drive,
    intake_server,
    run_each_backend,
)
from bench.support import percentiles_ms
from firetower.db import Database
from firetower.incidents.lifecycle import format_ref
from firetower.incidents.models import Incident
from firetower.jobs import Job
from firetower.settings import Settings

BATCH = 100
SERVICES = 50
BACKGROUND = 1000.0
INTERVAL = 0.2
SECONDS = 20.0
WARMUP = 2.0
"""Seconds of background load before the first foreground alert."""


@dataclass
class Probe:
    ref: str
    sent_at: datetime
    latency_seconds: float


def _probes(target: Target, key: str, count: int, interval: float) -> list[Probe]:
    templates = [Template(alertmanager_batch(f"probe-{i:04d}", 1)) for i in range(count)]
    path = f"/ingest/alertmanager/{key}"
    found: list[Probe] = []
    headers = {"Content-Type": "application/json"}
    with httpx.Client(base_url=target.url, timeout=120, headers=headers) as client:
        client.get("/healthz")  # open the connection before timing
        start = time.perf_counter()
        for i, template in enumerate(templates):
            wait = start + i * interval - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
            body = template.render(10_000_000 + i)
            sent_at = datetime.now(UTC)
            sent = time.perf_counter()
            answer = client.post(path, content=body)
            latency = time.perf_counter() - sent
            if answer.status_code != 200 or len(answer.json()["opened"]) != 1:
                raise RuntimeError(f"probe {i} opened nothing: {answer.status_code} {answer.text}")
            found.append(Probe(answer.json()["opened"][0], sent_at, latency))
    return found


def _names_incident(job: Job, incident: Incident) -> bool:
    text = json.dumps(job.payload)
    return f'"{incident.ref}"' in text or any(
        job.payload.get(k) == incident.id for k in ("incident_id", "incident")
    )


def _server_side(target: Target, probes: list[Probe]) -> tuple[list[float], list[float]]:
    """Seconds from sending to ``declared_at``, and to the first job naming the incident."""
    settings = Settings(env="test", database_url=target.database_url, secret_key="b" * 40)
    database = Database(settings)
    declared: list[float] = []
    jobs: list[float] = []
    try:
        with database.sessions() as session:
            first_sent = min(p.sent_at for p in probes)
            recent = list(
                session.scalars(
                    select(Job).where(Job.created_at >= first_sent).order_by(Job.created_at)
                )
            )
            by_ref = {format_ref(i.id): i for i in session.scalars(select(Incident))}
            for probe in probes:
                incident = by_ref[probe.ref]
                declared.append((incident.declared_at - probe.sent_at).total_seconds())
                answered = probe.sent_at + timedelta(seconds=probe.latency_seconds)
                job = next(
                    (
                        j
                        for j in recent
                        if j.created_at <= answered and _names_incident(j, incident)
                    ),
                    None,
                )
                if job is not None:
                    jobs.append((job.created_at - probe.sent_at).total_seconds())
    finally:
        database.dispose()
    return declared, jobs


def run(
    backend: str,
    postgres: str | None,
    *,
    seconds: float = SECONDS,
    background: float = BACKGROUND,
    interval: float = INTERVAL,
    connections: int = 4,
    batch: int = BATCH,
    services: int = SERVICES,
) -> None:
    count = max(1, int(seconds / interval))
    load = Load(
        connections=connections,
        processes=1,
        seconds=WARMUP + seconds + 1.0,
        rate_per_second=background / batch,
    )
    with intake_server(backend, postgres, "intake_latency") as target:
        names = service_names(services, "bg")
        create_services(target, names + [f"probe-{i:04d}" for i in range(count)])
        key = create_integration(target, "bench-am", "alertmanager")
        with ProcessPoolExecutor(1, mp_context=get_context("fork")) as pool:
            flowing = pool.submit(drive, target.url, distinct_batches(key, names, batch), load)
            time.sleep(WARMUP)
            probes = _probes(target, key, count, interval)
            outcome: Outcome = flowing.result()
        declared, jobs = _server_side(target, probes)
    elapsed = outcome.elapsed_seconds
    print(f"[{backend}] alert -> incident latency")
    print(
        f"    background: {load.describe()}; batches of {batch} distinct alerts over "
        f"{services} services (each opens its incident with its first batch); achieved "
        f"{outcome.succeeded * batch / elapsed:,.0f} alerts/s over {elapsed:.1f} s "
        f"(requests: {outcome.summary()}; statuses {dict(outcome.statuses)})"
    )
    print(
        f"    foreground: {len(probes)} single-alert batches, one every {interval:g} s, "
        f"each opening an incident for a new service"
    )
    opened = percentiles_ms([p.latency_seconds for p in probes])
    print(f"    opened (send -> response after commit): {opened}")
    print(f"    declared (send -> declared_at): {percentiles_ms(declared)}")
    if len(jobs) == len(probes):
        print(f"    first job (send -> job created_at): {percentiles_ms(jobs)}")
    else:
        print(
            f"    first job: {len(jobs)} of {len(probes)} incidents enqueued a job naming them "
            "when declared (none is enqueued before paging exists); hold 'opened' to the target"
        )
    for failure in outcome.failures:
        print(f"    background failure: {failure}")


def main() -> None:
    parser = arguments(__doc__.splitlines()[0], processes=False)
    parser.set_defaults(connections=4)
    parser.add_argument("--seconds", type=float, default=SECONDS, help="of foreground alerts")
    parser.add_argument("--background", type=float, default=BACKGROUND, help="alerts/s")
    parser.add_argument("--interval", type=float, default=INTERVAL, help="between foreground")
    parser.add_argument("--batch", type=int, default=BATCH, help="background alerts per request")
    parser.add_argument("--services", type=int, default=SERVICES, help="background services")
    run_each_backend(parser, run)


if __name__ == "__main__":
    main()
