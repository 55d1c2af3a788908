"""Sustained Alertmanager intake: v4 webhook batches of distinct alerts, every alert committed.

Each request is one batch as Alertmanager sends it for a group (group_by alertname and
service): BATCH alerts of one service, all with label sets never seen before. Batch n goes
to service n mod SERVICES, so the services (made in the catalog first) take turns; the
first batch of a service opens its incident and the later ones attach to it. ``--services 0``
sends alerts without a service label: they are stored and open nothing.

Each alert carries a fingerprint of 16 hex digits scattered as Alertmanager's hashes of the
labels are (``intake_support.fingerprint``), so new alerts land all over the dedup index.
Numbered fingerprints (``b<n>a<k>``, until 2026-11-29) put a batch's alerts side by side in
the index, which cost about half as much in the transaction (17.8 against 34.8-47.1 µs per
alert, ``bench.intake_operation``) and flattered every figure taken with them.

At the end the alert rows are counted in the database: they must equal the alerts of every
accepted batch. Target (issue 3): 35,000 alerts/s on SQLite on a 2-core machine.

    python -m bench.intake_alertmanager --seconds 10 --connections 8 --services 50
"""

from __future__ import annotations

from datetime import UTC, datetime

from bench.intake_support import (
    FINGERPRINT,
    PLACEHOLDER,
    Load,
    Turns,
    arguments,
    count_rows,
    create_integration,
    create_services,
    drive,
    intake_server,
    run_each_backend,
)

BATCH = 100
SERVICES = 50
SECONDS = 10.0


def service_names(count: int, prefix: str = "svc") -> list[str]:
    return [f"{prefix}-{i:03d}" for i in range(count)]


def alertmanager_batch(service: str | None, size: int, status: str = "firing") -> dict[str, object]:
    """One v4 payload whose instances carry PLACEHOLDER (the batch number) and whose
    fingerprints are FINGERPRINT marks."""
    started = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    group = {"alertname": "HighErrorRate", **({"service": service} if service else {})}
    common = {**group, "severity": "warning"}
    alerts = [
        {
            "status": status,
            "labels": {**common, "instance": f"node-{PLACEHOLDER}-{k}:9100", "job": "api"},
            "annotations": {"summary": f"Error rate above 5% on node-{PLACEHOLDER}-{k}"},
            "startsAt": started,
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "http://prometheus.example:9090/graph?g0.expr=error_ratio",
            "fingerprint": FINGERPRINT,
        }
        for k in range(size)
    ]
    labels = ", ".join(f'{k}="{v}"' for k, v in group.items())
    return {
        "version": "4",
        "status": status,
        "receiver": "firetower",
        "groupKey": "{}:{" + labels + "}",
        "truncatedAlerts": 0,
        "groupLabels": group,
        "commonLabels": common,
        "commonAnnotations": {},
        "externalURL": "http://alertmanager.example:9093",
        "alerts": alerts,
    }


def distinct_batches(key: str, services: list[str], size: int) -> Turns:
    """Request n: a batch for service n mod len(services), instances node-<n>-<k>."""
    names: list[str | None] = list(services) or [None]  # no services: no service label
    return Turns(f"/ingest/alertmanager/{key}", [alertmanager_batch(s, size) for s in names])


def run(
    backend: str,
    postgres: str | None,
    *,
    seconds: float = SECONDS,
    connections: int = 8,
    processes: int = 1,
    services: int = SERVICES,
    batch: int = BATCH,
) -> None:
    load = Load(connections=connections, processes=processes, seconds=seconds)
    with intake_server(backend, postgres, "intake_alertmanager") as target:
        names = service_names(services)
        create_services(target, names)
        key = create_integration(target, "bench-am", "alertmanager")
        make = distinct_batches(key, names, batch)
        outcome = drive(target.url, make, load)
        committed = count_rows(target, "SELECT count(*) FROM alerts")
        incidents = count_rows(target, "SELECT count(*) FROM incidents")
    sent = outcome.succeeded * batch
    print(f"[{backend}] alertmanager intake, {load.describe()}")
    print(
        f"    batches of {batch} distinct alerts over {services or 'no'} services: "
        f"{outcome.batch_rate(batch)}"
    )
    verdict = "OK" if committed == sent else "MISMATCH"
    print(
        f"    committed: {committed:,} alert rows for {sent:,} alerts accepted ({verdict}); "
        f"{incidents} incidents; statuses {dict(outcome.statuses)}"
    )
    outcome.print_failures()


def main() -> None:
    parser = arguments(__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=SECONDS)
    parser.add_argument("--services", type=int, default=SERVICES, help="0: no service label")
    parser.add_argument("--batch", type=int, default=BATCH, help="alerts per request")
    run_each_backend(parser, run)


if __name__ == "__main__":
    main()
