"""The console's users page through HTTP: admins only, deactivate and reactivate buttons that
go through the API's service function, and every outcome, refusals too, redirected to the page
(Post/Redirect/Get) which shows it once; a refusal changes nothing."""

from __future__ import annotations

import html
import re
from datetime import UTC, datetime

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from firetower.auth.models import User
from firetower.auth.schemas import Role
from firetower.clock import FrozenClock
from firetower.runtime import Runtime
from tests.factories import Factory, row_counts
from tests.test_web_pages import HTML, PASSWORD, Console, login

T0 = datetime(2026, 12, 1, 9, 30, tzinfo=UTC)


def user_id(runtime: Runtime, email: str) -> int:
    with runtime.read() as session:
        found = session.scalar(select(User.id).where(User.email == email))
    assert found is not None
    return found


def row(page: str, email: str) -> str:
    """The text of one user's row, tags dropped and spaces squeezed."""
    match = re.search(rf'<tr [^>]*data-email="{re.escape(email)}".*?</tr>', page, re.DOTALL)
    assert match, f"no row for {email}"
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", match.group(0))).split())


def shown(page: str) -> str:
    """A page's text as read: tags dropped, spaces squeezed."""
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", page)).split())


@pytest.fixture
def admin(factory: Factory, client: TestClient) -> Console:
    factory.user(Role.admin, email="root@example.com", password=PASSWORD)
    assert login(client, "root@example.com").status_code == 303
    return Console(client)


@pytest.mark.parametrize("role", [Role.viewer, Role.responder])
def test_the_users_page_and_its_buttons_are_for_admins(
    factory: Factory, client: TestClient, runtime: Runtime, role: Role
) -> None:
    factory.user(Role.admin, email="root@example.com")
    target = user_id(runtime, factory.user(Role.viewer, email="vi@example.com").email)
    factory.user(role, email="someone@example.com", password=PASSWORD)
    assert login(client, "someone@example.com").status_code == 303
    console = Console(client)
    assert 'href="/users"' not in console.get("/").text
    page = console.get("/users")
    assert page.status_code == 403
    assert "this needs the admin role" in page.text
    before = row_counts(runtime)
    refused = console.post(f"/users/{target}/deactivate")
    assert refused.status_code == 403
    assert row_counts(runtime) == before
    with runtime.read() as session:
        assert session.get(User, target).active is True  # type: ignore[union-attr]


def test_an_admin_deactivates_and_reactivates_a_user_from_the_page(
    admin: Console, factory: Factory, runtime: Runtime
) -> None:
    ops = factory.user(Role.responder, email="ops@example.com")
    ops_id = user_id(runtime, ops.email)
    page = admin.get("/users")
    assert page.status_code == 200
    assert 'href="/users" aria-current="page"' in page.text
    assert row(page.text, "ops@example.com") == "ops ops@example.com responder active Deactivate"
    assert row(page.text, "root@example.com").startswith("root (you) root@example.com admin")

    with FrozenClock(T0):
        done = admin.post(f"/users/{ops_id}/deactivate")
    assert done.status_code == 303
    assert done.headers["location"] == "/users"
    page = admin.get("/users").text
    assert "ops@example.com is deactivated" in html.unescape(page)
    assert "ops@example.com is deactivated" not in html.unescape(admin.get("/users").text)
    assert row(page, "ops@example.com") == (
        "ops ops@example.com responder deactivated by root@example.com, "
        "2026-12-01 09:30:00 UTC Reactivate"
    )
    # The same change the API makes: their token stops, and the API says who and when.
    assert ops.get("/api/v1/me").status_code == 401
    listed = {u["email"]: u for u in factory.user(Role.admin).get("/api/v1/users").json()}
    assert listed["ops@example.com"]["deactivated_by"] == "root@example.com"

    assert admin.post(f"/users/{ops_id}/reactivate").status_code == 303
    page = admin.get("/users").text
    assert "ops@example.com is active" in html.unescape(page)
    assert row(page, "ops@example.com") == "ops ops@example.com responder active Deactivate"
    assert ops.get("/api/v1/me").status_code == 200
    # Asking again for what is so changes nothing and is no error.
    assert admin.post(f"/users/{ops_id}/reactivate").status_code == 303


def test_the_last_active_admin_is_refused_on_the_page_and_nothing_changes(
    admin: Console, runtime: Runtime
) -> None:
    root_id = user_id(runtime, "root@example.com")
    before = row_counts(runtime)
    refused = admin.post(f"/users/{root_id}/deactivate")
    # Post/Redirect/Get: the refusal too answers with a redirect, so that reloading the page
    # it leads to shows it again without sending the button a second time.
    assert (refused.status_code, refused.headers["location"]) == (303, "/users")
    page = admin.get("/users")
    assert page.status_code == 200
    text = shown(page.text)
    refusal = (
        "Conflict: root@example.com is the last active admin; make another user an admin "
        "before deactivating them"
    )
    assert 'role="alert" data-field="active"' in page.text and refusal in text
    assert row(page.text, "root@example.com").endswith("admin active Deactivate")
    assert refusal not in shown(admin.get("/users").text)  # shown once
    assert row_counts(runtime) == before
    with runtime.read() as session:
        root = session.get(User, root_id)
        assert root is not None and root.active and root.deactivated_at is None


def test_an_unknown_user_or_action_or_a_missing_csrf_token_changes_nothing(
    admin: Console, factory: Factory, client: TestClient, runtime: Runtime
) -> None:
    target = user_id(runtime, factory.user(Role.viewer, email="vi@example.com").email)
    before = row_counts(runtime)
    missing = admin.post("/users/999999/deactivate")
    assert (missing.status_code, missing.headers["location"]) == (303, "/users")
    page = admin.get("/users")
    assert "Not found: no user with id 999999" in shown(page.text)
    assert "vi@example.com" in page.text  # the page, with the refusal above it
    assert admin.post(f"/users/{target}/delete").status_code == 422
    no_csrf = client.post(f"/users/{target}/deactivate", headers=HTML, follow_redirects=False)
    assert no_csrf.status_code == 403
    assert "CSRF" in no_csrf.text
    assert row_counts(runtime) == before
    with runtime.read() as session:
        assert session.get(User, target).active is True  # type: ignore[union-attr]


def test_an_admin_who_deactivates_themselves_is_logged_out(
    admin: Console, factory: Factory, client: TestClient, runtime: Runtime
) -> None:
    other = factory.user(Role.admin, email="other@example.com", password=PASSWORD)
    done = admin.post(f"/users/{user_id(runtime, 'root@example.com')}/deactivate")
    assert done.status_code == 303
    after = admin.get("/users")
    assert after.status_code == 303
    assert after.headers["location"].startswith("/login?next=")
    listed = {u["email"]: u for u in other.get("/api/v1/users").json()}
    assert (listed["root@example.com"]["active"], listed["root@example.com"]["deactivated_by"]) == (
        False,
        "root@example.com",
    )
