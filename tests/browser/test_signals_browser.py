"""The alert list in a real Chromium against a real server: it shows a firing alert, picks
up a new one on its own, and silences one in one click without reloading the page."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from firetower.signals import service as signals
from firetower.signals.models import Alert, Silence
from firetower.signals.schemas import IntegrationCreate, IntegrationKind
from tests.browser.conftest import SYSTEM, LiveServer, create_admin
from tests.browser.test_console_browser import WAIT_MS, log_in

pytestmark = pytest.mark.browser


def fire(server: LiveServer, key: str, fingerprint: str, **labels: str) -> None:
    alert = {
        "status": "firing",
        "labels": {"alertname": "HighLatency", **labels},
        "annotations": {"summary": "p99 above 2 s"},
        "fingerprint": fingerprint,
    }
    answer = httpx.post(
        f"{server.url}/ingest/alertmanager/{key}",
        json={"version": "4", "status": "firing", "alerts": [alert]},
        timeout=30,
    )
    assert answer.status_code == 200, answer.text


def alert_id(server: LiveServer, fingerprint: str) -> int:
    with server.runtime.read() as session:
        found = session.scalar(select(Alert.id).where(Alert.fingerprint == fingerprint))
    assert found is not None
    return int(found)


def _alert_list_with_one_firing(
    live_server: LiveServer, browser: Any
) -> tuple[str, int, Any, Any, list[str]]:
    """An integration's key, its one firing alert (checkout), and ana's page on the alert
    list: its browser context, the page, and the page's script errors as they come."""
    with live_server.runtime.transaction() as session:
        _integration, key = signals.create_integration(
            session,
            SYSTEM,
            IntegrationCreate(name="prom-prod", kind=IntegrationKind.alertmanager),
        )
    fire(live_server, key, "lat-checkout", service="checkout", instance="checkout-1")
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    failures: list[str] = []
    page.on("pageerror", lambda error: failures.append(str(error)))
    log_in(page, live_server, "ana@example.com", then="/alerts")
    return key, alert_id(live_server, "lat-checkout"), context, page, failures


def test_silence_a_firing_alert_in_one_click(
    live_server: LiveServer, browser: Any, screenshots: Path
) -> None:
    from playwright.sync_api import expect

    expect.set_options(timeout=WAIT_MS)
    key, first, context, page, failures = _alert_list_with_one_firing(live_server, browser)
    row = page.locator(f"#alert-{first}")
    expect(row).to_contain_text("HighLatency")
    expect(row.locator(".alert-status")).to_have_text("firing")
    expect(row).to_contain_text("checkout")
    page.evaluate("window.notReloaded = true")

    # A new alert shows up without anyone reloading the page.
    fire(live_server, key, "lat-payments", service="payments", instance="payments-1")
    second = alert_id(live_server, "lat-payments")
    expect(page.locator(f"#alert-{second}")).to_contain_text("payments")
    page.screenshot(path=screenshots / "20-alerts-firing.png", full_page=True)

    # One click, with the form's defaults (2 hours, no comment).
    page.get_by_role("button", name=f"Silence alert {first}").click()
    expect(page.locator(f"#alert-{first} .mark-silenced")).to_have_text("silenced")
    expect(page.get_by_role("status")).to_contain_text(f"Alert {first} silenced")
    expect(page.get_by_role("button", name=f"Silence alert {first}")).to_have_count(0)
    expect(page.get_by_role("button", name=f"Silence alert {second}")).to_be_visible()
    assert page.evaluate("window.notReloaded") is True  # swapped in by HTMX, not reloaded
    page.screenshot(path=screenshots / "21-alert-silenced.png", full_page=True)

    with live_server.runtime.read() as session:
        (silence,) = session.scalars(select(Silence)).all()
        assert silence.created_by == "ana@example.com"
        assert {m["label"] for m in silence.matchers} == {"alertname", "service", "instance"}
        assert round((silence.ends_at - silence.starts_at).total_seconds()) == 2 * 3600

    page.get_by_role("link", name="Silences").click()
    expect(page.locator(f"#silence-{silence.id} .silence-state")).to_have_text("active")
    page.screenshot(path=screenshots / "22-silences.png", full_page=True)
    assert failures == []
    context.close()


def test_acknowledge_then_resolve_an_alert_from_its_row(
    live_server: LiveServer, browser: Any, screenshots: Path
) -> None:
    from playwright.sync_api import expect

    expect.set_options(timeout=WAIT_MS)
    _key, alert, context, page, failures = _alert_list_with_one_firing(live_server, browser)
    row = page.locator(f"#alert-{alert}")
    expect(row.locator(".alert-status")).to_have_text("firing")
    page.evaluate("window.notReloaded = true")

    page.get_by_role("button", name=f"Acknowledge alert {alert}").click()
    expect(row.locator(".alert-status")).to_have_text("acknowledged")
    expect(row.locator(".status-by")).to_have_text("by ana@example.com")
    expect(page.get_by_role("status")).to_contain_text(f"Alert {alert} acknowledged.")
    expect(page.get_by_role("button", name=f"Acknowledge alert {alert}")).to_have_count(0)

    page.get_by_role("button", name=f"Resolve alert {alert}").click()
    expect(row.locator(".alert-status")).to_have_text("resolved")
    expect(page.get_by_role("button", name=f"Resolve alert {alert}")).to_have_count(0)
    assert page.evaluate("window.notReloaded") is True  # swapped in by HTMX, not reloaded
    page.screenshot(path=screenshots / "23-alert-resolved-by-hand.png", full_page=True)

    with live_server.runtime.read() as session:
        stored = session.get(Alert, alert)
        assert stored is not None
        assert (stored.status, stored.status_by) == ("resolved", "ana@example.com")
    assert failures == []
    context.close()


def test_an_admin_creates_an_integration_and_sees_its_key_once(
    live_server: LiveServer, browser: Any, screenshots: Path
) -> None:
    from playwright.sync_api import expect

    expect.set_options(timeout=WAIT_MS)
    create_admin(live_server.runtime)
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    log_in(page, live_server, "root@example.com", then="/integrations")
    page.get_by_text("New integration").click()
    page.get_by_label("Name").fill("prom-prod")
    page.get_by_label("Service (optional)").select_option("checkout")
    page.get_by_role("button", name="Create integration").click()
    key = page.locator("#new-key").inner_text()
    assert len(key) == 32
    fire(live_server, key, "from-the-console-key")  # the key works
    expect(page.locator("#integration-prom-prod")).to_contain_text(key[:8])
    page.screenshot(path=screenshots / "23-integration-key-once.png", full_page=True)
    page.goto(f"{live_server.url}/integrations")
    expect(page.locator("#new-key")).to_have_count(0)
    assert key not in page.content()
    context.close()
