"""An alert storm: ALERTS alerts from 50 services in Alertmanager batches, repeats and new ones.

Batch n belongs to service s = n mod SERVICES and is that service's m-th batch (m = n div
SERVICES). It carries BATCH alerts: BATCH - REPEATS new fingerprints, and REPEATS
fingerprints first sent in the service's previous batch (firing again, as Alertmanager
re-sends a group's alerts). So every alert is seen once or twice and fingerprints keep
coming; they are 16 hex digits scattered as Alertmanager's hashes are
(``intake_support.fingerprint``). Issue 3: such a storm of 1,000,000 alerts leaves at most
50 open incidents (one per service) and the server's memory stays under 500 MB.

With ``--resolve`` a routing rule resolves an incident once all its alerts have, and after
the storm every batch is sent again with its alerts resolved, as Alertmanager does when the
cause clears: the storm must then leave no incident open, and the resolving half must not slow
down as the incidents' alerts pile up (each resolving batch checks whether its incidents'
alerts have all resolved).

The server's resident memory is sampled from /proc/<pid>/status (VmRSS) twice a second, and
its peak (VmHWM) read at the end. `make bench` sends 100,000 alerts; the issue's figure:

    python -m bench.intake_storm --alerts 1000000
"""

from __future__ import annotations

import threading
import time

import httpx

from bench.intake_alertmanager import service_names
from bench.intake_support import (
    FINGERPRINT,
    REPEATED,
    Load,
    Request,
    Target,
    Template,
    arguments,
    count_rows,
    create_integration,
    create_services,
    drive,
    intake_server,
    memory_kib,
    run_each_backend,
)

ALERTS = 100_000
SERVICES = 50
BATCH = 100
REPEATS = 50
SAMPLE_SECONDS = 0.5


def storm_batch(service: str, size: int, repeats: int, status: str = "firing") -> dict[str, object]:
    """A v4 batch: new alerts carry @@M@@ (this batch of the service) and FINGERPRINT marks,
    repeats @@P@@ (its previous batch) and REPEATED marks."""
    common = {"alertname": "HighLatency", "service": service, "severity": "critical"}
    ends_at = "2026-11-28T11:00:00Z" if status == "resolved" else "0001-01-01T00:00:00Z"

    def alert(batch_mark: str, fingerprint_mark: str, j: int) -> dict[str, object]:
        name = f"{service}-pod-{batch_mark}-{j}"
        return {
            "status": status,
            "labels": {**common, "pod": name, "namespace": "prod"},
            "annotations": {"summary": f"p99 latency above 2 s on {name}"},
            "startsAt": "2026-11-28T10:00:00Z",
            "endsAt": ends_at,
            "generatorURL": "http://prometheus.example:9090/graph?g0.expr=latency",
            "fingerprint": fingerprint_mark,
        }

    # The j-th repeat names the j-th new alert of the previous batch (place j of each kind).
    alerts = [alert("@@P@@", REPEATED, j) for j in range(repeats)]
    alerts += [alert("@@M@@", FINGERPRINT, j) for j in range(size - repeats)]
    return {
        "version": "4",
        "status": status,
        "receiver": "firetower",
        "groupKey": '{}:{alertname="HighLatency", service="' + service + '"}',
        "groupLabels": {"alertname": "HighLatency", "service": service},
        "commonLabels": common,
        "commonAnnotations": {},
        "externalURL": "http://alertmanager.example:9093",
        "alerts": alerts,
    }


class StormBatches:
    def __init__(
        self, key: str, services: list[str], size: int, repeats: int, status: str = "firing"
    ) -> None:
        if repeats > size - repeats:
            raise SystemExit("--repeats must be at most half of --batch")
        self.path = f"/ingest/alertmanager/{key}"
        self.templates = [Template(storm_batch(s, size, repeats, status)) for s in services]

    def __call__(self, n: int) -> Request:
        s, m = n % len(self.templates), n // len(self.templates)
        previous = n - len(self.templates)  # its previous batch; for m = 0, one never sent
        return Request(self.path, self.templates[s].render(n, earlier=previous, M=m, P=m - 1))


def distinct_fingerprints(batches: int, services: int, size: int, repeats: int) -> int:
    """How many alerts the storm's first ``batches`` batches name (each service: its new
    ones, plus the repeats of its first batch, which point at a batch never sent)."""
    total = 0
    for s in range(services):
        sent = len(range(s, batches, services))
        if sent:
            total += sent * (size - repeats) + repeats
    return total


class MemorySampler(threading.Thread):
    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.peak_rss_kib = 0
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.wait(SAMPLE_SECONDS):
            self.peak_rss_kib = max(self.peak_rss_kib, memory_kib(self.pid)["VmRSS"])


def _mib(kib: int) -> str:
    return f"{kib / 1024:,.0f} MiB"


def run(
    backend: str,
    postgres: str | None,
    *,
    alerts: int = ALERTS,
    connections: int = 8,
    processes: int = 1,
    services: int = SERVICES,
    batch: int = BATCH,
    repeats: int = REPEATS,
    resolve: bool = False,
) -> None:
    batches = max(1, alerts // batch)
    load = Load(connections=connections, processes=processes, seconds=None, requests=batches)
    with intake_server(backend, postgres, "intake_storm") as target:
        names = service_names(services)
        create_services(target, names)
        key = create_integration(target, "bench-storm", "alertmanager")
        if resolve:
            _resolving_rule(target)
        before = memory_kib(target.pid)
        sampler = MemorySampler(target.pid)
        sampler.start()
        started = time.perf_counter()
        outcome = drive(target.url, StormBatches(key, names, batch, repeats), load)
        elapsed = time.perf_counter() - started
        if resolve:
            with httpx.Client(base_url=target.url, headers=target.headers, timeout=60) as api:
                page = api.get("/api/v1/incidents", params={"active": "true", "limit": 200})
                opened = len(page.json()["items"])
            started = time.perf_counter()
            resolving = StormBatches(key, names, batch, repeats, status="resolved")
            cleared = drive(target.url, resolving, load)
            cleared_seconds = time.perf_counter() - started
        sampler.stopping.set()
        sampler.join()
        after = memory_kib(target.pid)
        with httpx.Client(base_url=target.url, headers=target.headers, timeout=60) as api:
            page = api.get("/api/v1/incidents", params={"active": "true", "limit": 200})
            open_incidents = len(page.json()["items"])
        rows = count_rows(target, "SELECT count(*) FROM alerts")
        seen = count_rows(target, "SELECT coalesce(sum(count), 0) FROM alerts")
        still_firing = count_rows(target, "SELECT count(*) FROM alerts WHERE status != 'resolved'")
    expected = distinct_fingerprints(outcome.succeeded, services, batch, repeats)
    print(f"[{backend}] alert storm, {load.describe()}")
    print(
        f"    {batches * batch:,} alerts in {batches:,} batches of {batch} ({repeats} repeats "
        f"of the service's previous batch) from {services} services: {elapsed:.1f} s, "
        f"{outcome.succeeded * batch / elapsed:,.0f} alerts/s ({outcome.summary()})"
    )
    received = outcome.succeeded * batch
    if resolve:
        received += cleared.succeeded * batch
        print(
            f"    the same batches resolved: {cleared_seconds:.1f} s, "
            f"{cleared.succeeded * batch / cleared_seconds:,.0f} alerts/s ({cleared.summary()}); "
            f"open incidents {opened} before, {open_incidents} after (none wanted); "
            f"alerts not resolved: {still_firing:,}; statuses {dict(cleared.statuses)}"
        )
    verdict = "OK" if rows == expected and seen == received else "MISMATCH"
    print(
        f"    {rows:,} alert rows (expected {expected:,}), repeat counts add up to {seen:,} "
        f"({verdict}); open incidents: {open_incidents} (at most {services} wanted); "
        f"statuses {dict(outcome.statuses)}"
    )
    print(
        f"    server memory: peak {_mib(after['VmHWM'])} (VmHWM; target < 500 MB), "
        f"sampled RSS max {_mib(max(sampler.peak_rss_kib, after['VmRSS']))}, "
        f"RSS {_mib(before['VmRSS'])} before and {_mib(after['VmRSS'])} after"
    )
    outcome.print_failures()
    if resolve:
        cleared.print_failures()


def _resolving_rule(target: Target) -> None:
    """Every alert opens or joins its service's incident, which resolves once they all have."""
    rule = {"name": "storm-resolves", "action": "open", "on_clear": "resolve"}
    with httpx.Client(base_url=target.url, headers=target.headers, timeout=30) as api:
        made = api.post("/api/v1/routing-rules", json=rule)
        if made.status_code != 201:
            raise RuntimeError(f"creating the routing rule: {made.status_code} {made.text}")


def main() -> None:
    parser = arguments(__doc__.splitlines()[0])
    parser.add_argument("--alerts", type=int, default=ALERTS)
    parser.add_argument("--services", type=int, default=SERVICES)
    parser.add_argument("--batch", type=int, default=BATCH, help="alerts per request")
    parser.add_argument("--repeats", type=int, default=REPEATS, help="repeats per batch")
    parser.add_argument(
        "--resolve", action="store_true", help="then send every batch again, resolved"
    )
    run_each_backend(parser, run)


if __name__ == "__main__":
    main()
