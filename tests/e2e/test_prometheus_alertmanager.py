"""Prometheus scrapes a tiny app, its rule fires, Alertmanager posts to firetower: an incident.

Everything is real and on loopback: a prometheus_client app in a thread exposing a gauge,
Debian's Prometheus (1 s scrape and evaluation) with the rule ``error_ratio > 0.5``,
Debian's Alertmanager (clustering off, 1 s group wait and interval, resolved notices on)
posting to a live firetower server's Alertmanager webhook. The gauge goes up, an incident
opens for the service; it goes down, the alert resolves and the incident gets the
"all alerts resolved" note. Checks go through firetower's HTTP API only.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import httpx
from fastapi import FastAPI
from prometheus_client import CollectorRegistry, Gauge, start_http_server

from firetower.auth.schemas import Role
from tests.cli_support import live_server, unused_port
from tests.factories import Factory
from tests.process_support import daemon

SERVICE = "checkout"
WAIT_SECONDS = 60.0
T = TypeVar("T")


@contextmanager
def metrics_app() -> Iterator[tuple[int, Gauge]]:
    """The app Prometheus scrapes: one gauge, ``error_ratio``, on a port the OS picks."""
    registry = CollectorRegistry()
    gauge = Gauge("error_ratio", "Share of requests that failed.", registry=registry)
    gauge.set(0.0)
    server, thread = start_http_server(0, addr="127.0.0.1", registry=registry)
    try:
        yield int(server.server_port), gauge
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def _write_prometheus_config(home: Path, app_port: int, alertmanager_port: int) -> Path:
    # JSON is YAML: no templating of YAML by hand.
    rules = {
        "groups": [
            {
                "name": "e2e",
                "interval": "1s",
                "rules": [
                    {
                        "alert": "HighErrorRatio",
                        "expr": "error_ratio > 0.5",
                        "for": "0s",
                        "labels": {"service": SERVICE, "severity": "critical"},
                        "annotations": {"summary": "More than half of checkout requests fail"},
                    }
                ],
            }
        ]
    }
    (home / "rules.yml").write_text(json.dumps(rules, indent=2))
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(home / "rules.yml")],
        "alerting": {
            "alertmanagers": [{"static_configs": [{"targets": [f"127.0.0.1:{alertmanager_port}"]}]}]
        },
        "scrape_configs": [
            {"job_name": "e2e-app", "static_configs": [{"targets": [f"127.0.0.1:{app_port}"]}]}
        ],
    }
    path = home / "prometheus.yml"
    path.write_text(json.dumps(config, indent=2))
    return path


def _write_alertmanager_config(home: Path, webhook_url: str) -> Path:
    config = {
        "route": {
            "receiver": "firetower",
            "group_by": ["alertname", "service"],
            "group_wait": "1s",
            "group_interval": "1s",
            "repeat_interval": "4h",
        },
        "receivers": [
            {
                "name": "firetower",
                "webhook_configs": [{"url": webhook_url, "send_resolved": True}],
            }
        ],
    }
    path = home / "alertmanager.yml"
    path.write_text(json.dumps(config, indent=2))
    return path


def _wait_for(what: str, probe: Callable[[], T | None], logs: Path) -> T:
    """Poll ``probe`` until it returns something, or fail after WAIT_SECONDS naming ``what``."""
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        found = probe()
        if found is not None:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} within {WAIT_SECONDS:.0f} s; logs in {logs}")
        time.sleep(0.25)


def test_a_prometheus_rule_opens_an_incident_and_its_recovery_resolves_the_alert(
    app: FastAPI,
    factory: Factory,
    prometheus_binary: str,
    alertmanager_binary: str,
    artifacts: Path,
    tmp_path: Path,
) -> None:
    factory.service(SERVICE)
    admin = factory.user(Role.admin)
    headers = {"Authorization": f"Bearer {admin.token}"}

    with (
        live_server(app) as url,
        httpx.Client(base_url=url, headers=headers, timeout=10) as api,
        metrics_app() as (app_port, error_ratio),
    ):
        made = api.post("/api/v1/integrations", json={"name": "prod-am", "kind": "alertmanager"})
        assert made.status_code == 201, made.text
        webhook = f"{url}/ingest/alertmanager/{made.json()['key']}"

        am_home = tmp_path / "alertmanager"
        prom_home = tmp_path / "prometheus"
        am_home.mkdir()
        prom_home.mkdir()
        am_port, prom_port = unused_port(), unused_port()
        alertmanager_args = [
            alertmanager_binary,
            f"--config.file={_write_alertmanager_config(am_home, webhook)}",
            f"--storage.path={am_home / 'data'}",
            f"--web.listen-address=127.0.0.1:{am_port}",
            "--cluster.listen-address=",
            "--log.level=debug",
        ]
        prometheus_args = [
            prometheus_binary,
            f"--config.file={_write_prometheus_config(prom_home, app_port, am_port)}",
            f"--storage.tsdb.path={prom_home / 'data'}",
            f"--web.listen-address=127.0.0.1:{prom_port}",
            "--log.level=debug",
        ]
        with (
            daemon(
                alertmanager_args,
                artifacts / "alertmanager.log",
                f"http://127.0.0.1:{am_port}/-/ready",
            ),
            daemon(
                prometheus_args,
                artifacts / "prometheus.log",
                f"http://127.0.0.1:{prom_port}/-/ready",
            ),
        ):
            assert api.get("/api/v1/incidents").json()["items"] == []
            error_ratio.set(0.9)

            def opened() -> dict[str, Any] | None:
                items = api.get("/api/v1/incidents", params={"service": SERVICE}).json()["items"]
                return items[0] if items else None

            incident = _wait_for(f"incident for {SERVICE}", opened, artifacts)
            assert incident["source"] == "alert"
            assert incident["services"] == [SERVICE]
            assert incident["severity"] == "SEV1"
            assert incident["title"] == "More than half of checkout requests fail"
            alerts = api.get("/api/v1/alerts").json()
            assert len(alerts) == 1, alerts
            assert alerts[0]["status"] == "firing"
            assert alerts[0]["integration"] == "prod-am"
            assert alerts[0]["labels"]["alertname"] == "HighErrorRatio"
            assert alerts[0]["labels"]["job"] == "e2e-app"
            assert alerts[0]["incident"] == incident["ref"]

            error_ratio.set(0.1)

            def resolved() -> dict[str, Any] | None:
                found = api.get("/api/v1/alerts", params={"status": "resolved"}).json()
                return found[0] if found else None

            alert = _wait_for("resolved alert", resolved, artifacts)
            assert alert["fingerprint"] == alerts[0]["fingerprint"]
            assert alert["incident"] == incident["ref"]

            timeline = api.get(f"/api/v1/incidents/{incident['ref']}/timeline").json()["items"]
            notes = [e["text"] for e in timeline if e["kind"] == "note"]
            assert "The 1 alert attached to this incident has resolved." in notes, notes
            # Still one alert and one incident: Prometheus's repeats were deduplicated.
            assert len(api.get("/api/v1/alerts").json()) == 1
            assert len(api.get("/api/v1/incidents").json()["items"]) == 1
