"""An admin deactivates a user from the console's users page in a real Chromium: the
button asks first, the row then says by whom, and the last admin's refusal shows in red."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from firetower.auth import service as auth_service
from firetower.auth.models import User
from tests.browser.conftest import LiveServer, create_admin
from tests.browser.test_console_browser import WAIT_MS, log_in

pytestmark = pytest.mark.browser


def test_an_admin_deactivates_a_user_from_the_users_page(
    live_server: LiveServer, browser: Any, screenshots: Path
) -> None:
    from playwright.sync_api import expect

    expect.set_options(timeout=WAIT_MS)
    create_admin(live_server.runtime)
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    failures: list[str] = []
    page.on("pageerror", lambda error: failures.append(str(error)))
    log_in(page, live_server, "root@example.com")
    page.get_by_role("link", name="Users").click()
    page.wait_for_url(f"{live_server.url}/users")
    bo = page.locator('tr[data-email="bo@example.com"]')
    expect(bo.locator(".user-state")).to_have_text("active")

    # Dismissing the question leaves the user as they were.
    page.once("dialog", lambda dialog: dialog.dismiss())
    page.get_by_role("button", name="Deactivate bo@example.com").click()
    expect(bo.locator(".user-state")).to_have_text("active")
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Deactivate bo@example.com").click()
    expect(page.get_by_role("status")).to_contain_text("bo@example.com is deactivated")
    expect(bo.locator(".user-state")).to_contain_text("deactivated by root@example.com")
    expect(page.get_by_role("button", name="Reactivate bo@example.com")).to_be_visible()
    page.screenshot(path=screenshots / "30-users-deactivated.png", full_page=True)
    with live_server.runtime.read() as session:
        stored = auth_service.get_user_by_email(session, "bo@example.com")
        assert isinstance(stored, User) and not stored.active

    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Deactivate root@example.com").click()
    expect(page.get_by_role("alert")).to_contain_text("root@example.com is the last active admin")
    page.screenshot(path=screenshots / "31-users-last-admin.png", full_page=True)
    assert failures == []
    context.close()
