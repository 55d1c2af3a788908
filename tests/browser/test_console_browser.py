"""The new-user story in a real Chromium against a real server.

Log in, declare an incident, see it, hand command over from one user to another, add a
note and watch it arrive live in a second browser, then resolve the incident.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from firetower.incidents import service as incident_service
from tests.browser.conftest import PASSWORD, LiveServer

pytestmark = pytest.mark.browser
WAIT_MS = 15_000  # an upper bound for the page to get there, never a speed requirement


def log_in(page: Any, server: LiveServer, email: str, then: str = "/") -> None:
    page.goto(f"{server.url}{then}")
    assert "/login?next=" in page.url  # no session: sent to log in first
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"{server.url}{then}")


def test_new_user_story(live_server: LiveServer, browser: Any, screenshots: Path) -> None:
    from playwright.sync_api import expect

    expect.set_options(timeout=WAIT_MS)
    ana_context = browser.new_context(viewport={"width": 1400, "height": 1000})
    bo_context = browser.new_context(viewport={"width": 1400, "height": 1000})
    ana, bo = ana_context.new_page(), bo_context.new_page()
    failures: list[str] = []
    for page in (ana, bo):
        page.on("pageerror", lambda error: failures.append(str(error)))

    ana.goto(f"{live_server.url}/")
    ana.screenshot(path=screenshots / "01-login.png")
    ana.goto(f"{live_server.url}/login")
    ana.get_by_label("Email").fill("ana@example.com")
    ana.get_by_label("Password").fill("wrong password here")
    ana.get_by_role("button", name="Log in").click()
    expect(ana.get_by_role("alert")).to_contain_text("wrong email or password")
    log_in(ana, live_server, "ana@example.com")
    expect(ana.locator(".whoami")).to_have_text("ana@example.com")
    ana.screenshot(path=screenshots / "02-empty-list.png")

    # Declare.
    ana.get_by_role("link", name="Declare", exact=True).click()
    ana.get_by_label("Title").fill("Checkout payments failing")
    ana.locator("label.sev-choice", has_text="SEV2").click()
    ana.get_by_label("Services affected").select_option(["payments"])
    ana.get_by_label("Summary").fill("Card payments time out for about a third of users.")
    ana.screenshot(path=screenshots / "03-declare.png", full_page=True)
    ana.get_by_role("button", name="Declare").click()
    ana.wait_for_url("**/incidents/INC-*")
    ref = ana.url.rsplit("/", 1)[1]
    expect(ana.get_by_role("heading", level=1)).to_have_text("Checkout payments failing")
    expect(ana.locator(".incident-head .status")).to_have_text("triage")
    expect(ana.locator(".radius .users")).to_have_text("20,000")  # checkout's users too
    expect(ana.locator("#live-indicator")).to_have_text("● live")

    # It is on the list.
    ana.get_by_role("link", name="Incidents").click()
    expect(ana.get_by_role("link", name="Checkout payments failing")).to_be_visible()
    ana.screenshot(path=screenshots / "04-list.png")
    ana.get_by_role("link", name="Checkout payments failing").click()

    # Take command, then hand it over to Bo.
    commander = ana.locator('[data-role-form="commander"]')
    commander.get_by_role("combobox").select_option("ana@example.com")
    commander.get_by_role("button", name="Assign").click()
    expect(ana.locator('[data-role="commander"]')).to_have_text("ana@example.com")
    commander.get_by_role("combobox").select_option("bo@example.com")
    commander.get_by_role("button", name="Hand over").click()
    expect(ana.locator('[data-role="commander"]')).to_have_text("bo@example.com")
    expect(ana.locator(".participants")).to_contain_text("bo@example.com")

    # A task for Bo, ticked off.
    ana.get_by_label("New task").fill("Watch the payment error rate")
    ana.get_by_label("Assignee", exact=True).select_option("bo@example.com")
    ana.get_by_role("button", name="Add task").click()
    task = ana.locator("ul.tasks li.task")
    expect(task).to_contain_text("Watch the payment error rate")
    task.get_by_role("button", name="Done: Watch the payment error rate").click()
    expect(ana.locator("ul.tasks li.task-done")).to_have_count(1)

    # Bo opens the same incident in another browser; Ana writes a note; Bo sees it live.
    log_in(bo, live_server, "bo@example.com", then=f"/incidents/{ref}")
    expect(bo.locator("#live-indicator")).to_have_text("● live")
    bo.evaluate("window.notReloaded = true")
    ana.get_by_label("Note").fill("Rolled back payments to v41; <watching> error rate.")
    ana.get_by_label("Pin for the postmortem").check()
    ana.get_by_role("button", name="Add note").click()
    note = bo.locator("#timeline li.kind-note")
    expect(note).to_contain_text("Rolled back payments to v41; <watching> error rate.")
    expect(note).to_have_class("entry kind-note pinned fresh")
    assert bo.evaluate("window.notReloaded") is True  # it came over SSE, not a reload
    expect(ana.locator("#timeline li.kind-note")).to_have_count(1)
    expect(ana.get_by_label("Note")).to_have_value("")  # the form was swapped in fresh
    bo.screenshot(path=screenshots / "05-live-note-second-browser.png", full_page=True)

    # Resolve.
    ana.get_by_role("button", name="Resolved", exact=True).click()
    expect(ana.locator(".incident-head .status")).to_have_text("resolved")
    expect(bo.locator("#timeline li.kind-status_changed")).to_contain_text("resolved")
    ana.screenshot(path=screenshots / "06-resolved.png", full_page=True)

    ana.get_by_role("link", name="Catalog").click()
    expect(ana.locator('svg.dependency-graph [data-service="checkout"]')).to_be_visible()
    ana.screenshot(path=screenshots / "07-catalog.png", full_page=True)

    with live_server.runtime.read() as session:
        shown = incident_service.read(session, incident_service.get_incident(session, ref))
    assert shown.status == "resolved"
    assert [(r.role, r.user) for r in shown.roles] == [("commander", "bo@example.com")]
    assert failures == []
    ana_context.close()
    bo_context.close()
