"""PagerDuty Events API v2: single-event `POST /v2/enqueue` requests, each a new alert.

Every request is a trigger with a dedup key never sent before. There is one Events v2
integration per service (SERVICES of them, each bound to its catalog service) and event n
uses integration n mod SERVICES, as many PagerDuty client libraries each holding one
routing key would; the first trigger of a service opens its incident, the later ones attach.
``--services 0``: one integration bound to no service (alerts are stored, open nothing).
The alert rows are counted at the end: one per accepted event. Target (issue 3): 5,000
events/s.

    python -m bench.intake_events --seconds 10 --connections 16 --services 50
"""

from __future__ import annotations

from datetime import UTC, datetime

from bench.intake_alertmanager import service_names
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

SERVICES = 50
SECONDS = 10.0
CONNECTIONS = 16


def trigger(routing_key: str, service: str | None) -> dict[str, object]:
    """A trigger whose source carries PLACEHOLDER (the event number) and whose dedup key is a
    FINGERPRINT mark (new keys scatter over the dedup index as hashes and UUIDs do)."""
    return {
        "routing_key": routing_key,
        "event_action": "trigger",
        "dedup_key": FINGERPRINT,
        "payload": {
            "summary": f"Disk 91% full on db-{PLACEHOLDER}",
            "source": f"db-{PLACEHOLDER}.{service or 'example'}.internal",
            "severity": "warning",
            "timestamp": datetime.now(UTC).isoformat(),
            "component": "postgres",
            "group": service or "storage",
            "class": "disk",
            "custom_details": {"free_bytes": 1_234_567, "mount": "/var/lib/postgresql"},
        },
        "client": "bench",
        "client_url": "https://monitoring.example/disk",
        "links": [{"href": "https://runbooks.example/disk", "text": "Runbook"}],
    }


def triggers(keys: list[tuple[str, str | None]]) -> Turns:
    """Request n: a trigger with dedup key evt-<n> on routing key n mod len(keys)."""
    return Turns("/v2/enqueue", [trigger(key, service) for key, service in keys])


def run(
    backend: str,
    postgres: str | None,
    *,
    seconds: float = SECONDS,
    connections: int = CONNECTIONS,
    processes: int = 1,
    services: int = SERVICES,
) -> None:
    load = Load(connections=connections, processes=processes, seconds=seconds)
    with intake_server(backend, postgres, "intake_events") as target:
        names = service_names(services)
        create_services(target, names)
        keys: list[tuple[str, str | None]] = [
            (create_integration(target, f"bench-pd-{name}", "pagerduty", name), name)
            for name in names
        ] or [(create_integration(target, "bench-pd", "pagerduty"), None)]
        outcome = drive(target.url, triggers(keys), load)
        committed = count_rows(target, "SELECT count(*) FROM alerts")
        incidents = count_rows(target, "SELECT count(*) FROM incidents")
    accepted = outcome.statuses[202]
    elapsed = outcome.elapsed_seconds
    print(f"[{backend}] events v2 intake, {load.describe()}")
    print(
        f"    single triggers over {len(keys)} routing keys: {accepted / elapsed:,.0f} events/s "
        f"over {elapsed:.1f} s ({outcome.summary()})"
    )
    verdict = "OK" if committed == accepted else "MISMATCH"
    print(
        f"    committed: {committed:,} alert rows for {accepted:,} events accepted ({verdict}); "
        f"{incidents} incidents; statuses {dict(outcome.statuses)}"
    )
    outcome.print_failures()


def main() -> None:
    parser = arguments(__doc__.splitlines()[0])
    parser.set_defaults(connections=CONNECTIONS)
    parser.add_argument("--seconds", type=float, default=SECONDS)
    parser.add_argument(
        "--services", type=int, default=SERVICES, help="integrations, one per service"
    )
    run_each_backend(parser, run)


if __name__ == "__main__":
    main()
