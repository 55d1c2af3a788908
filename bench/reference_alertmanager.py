"""The reference of issue 3, measured here: real Alertmanager taking in batches of distinct alerts.

Issue 3 asks for 35,000 alerts/s on SQLite on a 2-core machine because Alertmanager 0.25 took in
about that much on such a machine, holding the alerts only in memory. Machines differ in speed,
so this runs Alertmanager itself (Debian's prometheus-alertmanager) on the machine at hand,
driven by the same load generator as bench/intake_alertmanager.py, and the firetower figure can
be compared with it on the same hardware.

Each request is ``POST /api/v2/alerts`` with BATCH postable alerts of one service, every label
set never seen before (the instance carries the batch number); batch n goes to service
n mod SERVICES. Alertmanager runs alone: no clustering, its own storage path, and one route to
a receiver with no integrations, so it sends nothing. At the end its own counter of received
alerts must equal the alerts of every accepted batch.

    python -m bench.reference_alertmanager --processes 2 --connections 16 --seconds 10
"""

from __future__ import annotations

import argparse
import contextlib
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from tests.process_support import daemon

from bench.intake_alertmanager import BATCH, SECONDS, SERVICES, service_names
from bench.intake_support import PLACEHOLDER, Load, Turns, drive, memory_kib
from bench.support import free_port

BINARY = "prometheus-alertmanager"
INSTALL = "apt-get install -y prometheus-alertmanager"

CONFIG = """\
route:
  receiver: nowhere
  group_by: [alertname, service]
receivers:
  - name: nowhere
"""
"""Grouped as bench/intake_alertmanager.py's batches are; the receiver has no integrations."""


def version(binary: str) -> str:
    """The first line of ``--version``, e.g. 'alertmanager, version 0.25.0 (branch: ...)'."""
    done = subprocess.run([binary, "--version"], capture_output=True, text=True, check=True)
    return (done.stdout or done.stderr).splitlines()[0].strip()


@contextlib.contextmanager
def running_alertmanager(binary: str) -> Iterator[Alertmanager]:
    """Alertmanager on a free loopback port with a temporary config and storage path; ready
    (``/-/ready`` answers 200) when yielded, stopped afterwards."""
    with tempfile.TemporaryDirectory(prefix="firetower-bench-alertmanager-") as home:
        config = Path(home) / "alertmanager.yml"
        config.write_text(CONFIG)
        storage = Path(home) / "data"
        storage.mkdir()
        url = f"http://127.0.0.1:{free_port()}"
        args = [
            binary,
            f"--config.file={config}",
            f"--storage.path={storage}",
            f"--web.listen-address={url.removeprefix('http://')}",
            "--cluster.listen-address=",  # empty: no gossip, no second port
            "--log.level=warn",
        ]
        with daemon(args, Path(home) / "alertmanager.log", f"{url}/-/ready") as process:
            yield Alertmanager(url, process.pid)


@dataclass
class Alertmanager:
    url: str
    pid: int


def metric_total(url: str, name: str) -> float:
    """The sum of every series of metric ``name`` on ``/metrics``."""
    text = httpx.get(f"{url}/metrics", timeout=30).text
    pattern = re.compile(rf"^{re.escape(name)}(?:\{{[^}}]*\}})? (\S+)$", re.MULTILINE)
    return sum(float(value) for value in pattern.findall(text))


def postable_batch(service: str, size: int) -> list[dict[str, object]]:
    """The alerts of bench/intake_alertmanager.py's batch as Alertmanager's API takes them:
    firing for an hour, instances carrying PLACEHOLDER (the batch number)."""
    started = datetime.now(UTC)
    common = {"alertname": "HighErrorRate", "service": service, "severity": "warning"}
    return [
        {
            "labels": {**common, "instance": f"node-{PLACEHOLDER}-{k}:9100", "job": "api"},
            "annotations": {"summary": f"Error rate above 5% on node-{PLACEHOLDER}-{k}"},
            "startsAt": started.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "endsAt": (started + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "generatorURL": "http://prometheus.example:9090/graph?g0.expr=error_ratio",
        }
        for k in range(size)
    ]


def run(
    *,
    seconds: float = SECONDS,
    connections: int = 8,
    processes: int = 1,
    services: int = SERVICES,
    batch: int = BATCH,
) -> None:
    binary = shutil.which(BINARY)
    if binary is None:
        print(f"[alertmanager] reference intake skipped: {BINARY} not found (`{INSTALL}`)")
        return
    load = Load(connections=connections, processes=processes, seconds=seconds)
    names = service_names(max(1, services))  # every alert has a service label here
    make = Turns("/api/v2/alerts", [postable_batch(name, batch) for name in names])
    with running_alertmanager(binary) as alertmanager:
        outcome = drive(alertmanager.url, make, load)
        received = metric_total(alertmanager.url, "alertmanager_alerts_received_total")
        invalid = metric_total(alertmanager.url, "alertmanager_alerts_invalid_total")
        peak_rss_kib = memory_kib(alertmanager.pid)["VmHWM"]
    sent = outcome.succeeded * batch
    print(f"[alertmanager] reference intake, {load.describe()}")
    print(f"    reference: {version(binary)}; in memory, no cluster, a receiver that sends nothing")
    print(
        f"    batches of {batch} distinct alerts over {len(names)} services: "
        f"{outcome.batch_rate(batch)}"
    )
    all_held = received == sent and invalid == 0 and outcome.succeeded == outcome.requests
    print(
        f"    received: {received:,.0f} alerts ({invalid:,.0f} invalid) for {sent:,} alerts "
        f"accepted ({'OK' if all_held else 'MISMATCH'}); statuses {dict(outcome.statuses)}; "
        f"peak RSS {peak_rss_kib / 1024:,.0f} MiB"
    )
    outcome.print_failures()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=SECONDS)
    parser.add_argument("--connections", type=int, default=8, help="per generator process")
    parser.add_argument("--processes", type=int, default=1, help="load generator processes")
    parser.add_argument("--services", type=int, default=SERVICES, help="services taking turns")
    parser.add_argument("--batch", type=int, default=BATCH, help="alerts per request")
    run(**vars(parser.parse_args()))


if __name__ == "__main__":
    main()
