"""Authentication and authorisation: tokens, roles, revocation, console login, and a route audit.

The route audit walks every route of the app (mounted ones included) and proves each
non-public one refuses a missing token, a wrong token and a too-weak role. Routes added
later are covered without touching this file; a new public route must be added to PUBLIC.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pytest
from fastapi import Depends, FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, APIWebSocketRoute, iter_route_contexts
from fastapi.testclient import TestClient
from sqlalchemy import select, text
from starlette.routing import BaseRoute, Host, Mount, Route, WebSocketRoute

from firetower.auth import service as auth_service
from firetower.auth.models import ApiToken, User
from firetower.auth.schemas import Role, TokenCreate
from firetower.auth.service import TOKEN_PREFIX
from firetower.clock import FrozenClock
from firetower.errors import Conflict
from firetower.events import unit_of_work
from firetower.runtime import Runtime
from tests.factories import SYSTEM, Factory, login, row_counts

PASSWORD = "correct horse battery staple"
T0 = datetime(2026, 12, 1, 9, 30, tzinfo=UTC)

# Routes anyone may call. Exact paths, and prefixes (ending in "/") of public subtrees.
PUBLIC_PATHS = {
    "/healthz",
    "/readyz",
    "/metrics",
    "/login",
    "/logout",
    "/api/v1/openapi.json",
    "/api/v1/docs",
    "/docs/oauth2-redirect",  # FastAPI's Swagger UI helper page
    # Intake authenticates by the integration or routing key it carries (DESIGN.md).
    "/v2/enqueue",
    "/v2/change/enqueue",
    # The public status page and its Statuspage-compatible JSON (DESIGN.md).
    "/status",
}
PUBLIC_PREFIXES = ("/static/", "/ingest/", "/status/", "/api/v2/")


def is_public(path: str) -> bool:
    return path in PUBLIC_PATHS or (path + "/").startswith(PUBLIC_PREFIXES)


@dataclass(frozen=True)
class Endpoint:
    path: str
    method: str
    needed: Role | None  # None: no role requirement found among its dependencies
    websocket: bool = False


def _needed_role(dependant: Dependant) -> Role | None:
    """The strongest role any dependency (at any depth) of a route requires."""
    found: list[Role] = []

    def walk(node: Dependant) -> None:
        role = getattr(node.call, "needed_role", None)
        if isinstance(role, Role):
            found.append(role)
        for child in node.dependencies:
            walk(child)

    walk(dependant)
    return max(found, key=lambda r: r.rank) if found else None


def endpoints(routes: list[BaseRoute], prefix: str = "") -> Iterator[Endpoint]:
    """Every (path, method) an app answers, with the role its dependencies require.

    ``iter_route_contexts`` flattens included routers and gives each route its effective
    path and dependant (router-level dependencies included); mounts are walked recursively.
    """
    for context in iter_route_contexts(routes):
        route = context.original_route
        path = prefix + (context.path or "")
        if isinstance(route, APIRoute):
            for method in sorted((context.methods or set()) - {"HEAD"}):
                yield Endpoint(path, method, _needed_role(context.dependant))
        elif isinstance(route, APIWebSocketRoute):
            yield Endpoint(path, "WS", _needed_role(context.dependant), True)
        elif isinstance(route, Mount | Host):
            sub = getattr(route, "routes", None) or []
            if sub:
                yield from endpoints(list(sub), path)
            else:  # an opaque ASGI app (static files, a sub-application without routes)
                yield Endpoint(path + "/", "GET", None)
        elif isinstance(route, Route):
            for method in sorted((route.methods or {"GET"}) - {"HEAD"}):
                yield Endpoint(path, method, None)
        elif isinstance(route, WebSocketRoute):
            yield Endpoint(path, "WS", None, True)
        else:
            raise AssertionError(f"the route audit does not know {type(route).__name__}")


def _concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "1", path)


def _weaker(role: Role) -> Role | None:
    weaker = [r for r in Role if r.rank < role.rank]
    return max(weaker, key=lambda r: r.rank) if weaker else None


def audit(app: FastAPI, client: TestClient, tokens: dict[Role, str]) -> list[str]:
    """Every way a non-public route fails to refuse; empty when all is well."""
    problems: list[str] = []
    for endpoint in endpoints(app.router.routes):
        if is_public(endpoint.path):
            continue
        where = f"{endpoint.method} {endpoint.path}"
        api = endpoint.path.startswith("/api/")
        if endpoint.needed is None:
            problems.append(f"{where}: no auth dependency (firetower.auth.deps.require)")
            continue
        if endpoint.websocket:
            continue  # the dependency check above is all a websocket gets
        url = _concrete(endpoint.path)
        anonymous = client.request(endpoint.method, url, follow_redirects=False)
        redirected = (
            not api
            and anonymous.status_code == 303
            and anonymous.headers.get("location", "").startswith("/login")
        )
        if anonymous.status_code != 401 and not redirected:
            problems.append(f"{where}: without credentials answered {anonymous.status_code}")
        wrong = client.request(
            endpoint.method,
            url,
            headers={"Authorization": f"Bearer {TOKEN_PREFIX}000000000000_wrong"},
            follow_redirects=False,
        )
        if wrong.status_code != 401:
            problems.append(f"{where}: with a wrong token answered {wrong.status_code}")
        weaker = _weaker(endpoint.needed)
        if weaker is not None:
            weak = client.request(
                endpoint.method,
                url,
                headers={"Authorization": f"Bearer {tokens[weaker]}"},
                follow_redirects=False,
            )
            if weak.status_code != 403:
                problems.append(
                    f"{where}: needs {endpoint.needed.value}, a {weaker.value} got "
                    f"{weak.status_code}"
                )
    return problems


def _tokens(factory: Factory) -> dict[Role, str]:
    return {role: factory.user(role).token for role in Role}


def test_every_non_public_route_refuses(app: FastAPI, factory: Factory, runtime: Runtime) -> None:
    found = list(endpoints(app.router.routes))
    guarded = [e for e in found if not is_public(e.path)]
    assert any(e.path == "/api/v1/incidents" and e.method == "POST" for e in guarded)
    assert any(e.path.startswith("/static") for e in found)  # mounted routes are walked
    tokens = _tokens(factory)
    before = row_counts(runtime)
    assert audit(app, factory.client, tokens) == []
    assert row_counts(runtime) == before


def test_the_audit_catches_an_unguarded_route(app: FastAPI, factory: Factory) -> None:
    @app.get("/api/v1/oops")
    def oops() -> dict[str, str]:
        return {"open": "to everyone"}

    @app.get("/api/v1/lenient")
    def lenient(actor: Any = None) -> dict[str, str]:
        return {}

    problems = audit(app, factory.client, _tokens(factory))
    assert any(p.startswith("GET /api/v1/oops: no auth dependency") for p in problems)
    assert any(p.startswith("GET /api/v1/lenient: no auth dependency") for p in problems)


def test_the_audit_catches_a_role_that_is_declared_but_not_enforced(
    app: FastAPI, factory: Factory
) -> None:
    def pretends_to_need_admin() -> None:
        """Claims a role but checks nothing: the probes must notice."""

    pretends_to_need_admin.needed_role = Role.admin  # type: ignore[attr-defined]

    @app.post("/api/v1/pretend", dependencies=[Depends(pretends_to_need_admin)])
    def pretend() -> dict[str, str]:
        return {}

    problems = audit(app, factory.client, _tokens(factory))
    assert "POST /api/v1/pretend: without credentials answered 200" in problems
    assert "POST /api/v1/pretend: with a wrong token answered 200" in problems
    assert "POST /api/v1/pretend: needs admin, a responder got 200" in problems


# -- tokens ------------------------------------------------------------------------------------
def test_tokens_are_stored_as_sha256_and_shown_once(factory: Factory, runtime: Runtime) -> None:
    user = factory.user(Role.responder)
    made = user.post("/api/v1/tokens", json={"name": "laptop"})
    assert made.status_code == 201, made.text
    assert made.headers["cache-control"] == "no-store"  # no cache keeps the secret
    secret = made.json()["token"]
    prefix = made.json()["prefix"]
    assert secret.startswith(f"{TOKEN_PREFIX}{prefix}_")
    with runtime.read() as session:
        stored = session.scalar(select(ApiToken).where(ApiToken.prefix == prefix))
        assert stored is not None
        plain = secret.removeprefix(f"{TOKEN_PREFIX}{prefix}_")
        assert stored.token_hash == hashlib.sha256(plain.encode()).hexdigest()
        assert plain not in stored.token_hash
    listed = user.get("/api/v1/tokens").json()
    assert {t["prefix"] for t in listed} >= {prefix}
    assert all("token" not in t for t in listed)
    assert secret not in user.get("/api/v1/tokens").text
    assert (
        factory.client.get("/api/v1/me", headers={"Authorization": f"Bearer {secret}"}).json()[
            "email"
        ]
        == user.email
    )


def test_a_token_whose_prefix_is_taken_is_drawn_again_and_every_token_works(
    factory: Factory, runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A token is found by its prefix, which api_tokens stores once (revoked tokens too). A
    new token drawing a taken prefix was a 409 "conflicts with existing data" for a user who
    did nothing wrong; it is drawn again instead."""
    user = factory.user(Role.responder)  # its token drawn before the script starts
    prefixes = iter(
        ["aaaaaaaaaaaa", "aaaaaaaaaaaa", "bbbbbbbbbbbb", "aaaaaaaaaaaa", "cccccccccccc"]
    )
    monkeypatch.setattr(
        auth_service,
        "secrets",
        SimpleNamespace(token_hex=lambda n: next(prefixes), token_urlsafe=secrets.token_urlsafe),
    )
    first = user.post("/api/v1/tokens", json={"name": "first"})
    assert first.status_code == 201, first.text
    live = user.post("/api/v1/tokens", json={"name": "live"})  # first's prefix: drawn again
    assert live.status_code == 201, live.text
    assert live.json()["prefix"] == "bbbbbbbbbbbb"
    assert user.delete(f"/api/v1/tokens/{first.json()['id']}").status_code == 200
    after = user.post("/api/v1/tokens", json={"name": "after"})  # revoked first's: again
    assert after.status_code == 201, after.text
    assert after.json()["prefix"] == "cccccccccccc"
    assert next(prefixes, None) is None  # every prefix drawn was asked for

    for made in (live, after):
        headers = {"Authorization": f"Bearer {made.json()['token']}"}
        me = factory.client.get("/api/v1/me", headers=headers)
        assert me.status_code == 200, me.text
        assert me.json()["email"] == user.email
    revoked = {"Authorization": f"Bearer {first.json()['token']}"}
    assert factory.client.get("/api/v1/me", headers=revoked).status_code == 401
    with runtime.read() as session:
        stored = list(session.scalars(select(ApiToken.prefix).where(ApiToken.name != "tests")))
    assert sorted(stored) == ["aaaaaaaaaaaa", "bbbbbbbbbbbb", "cccccccccccc"]


def test_a_token_never_outranks_its_user(factory: Factory, runtime: Runtime) -> None:
    viewer = factory.user(Role.viewer)
    before = row_counts(runtime)
    for role in ("responder", "admin"):
        refused = viewer.post("/api/v1/tokens", json={"name": "up", "role": role})
        assert refused.status_code == 422, refused.text
        assert refused.json()["field"] == "role"
    assert row_counts(runtime) == before
    admin = factory.user(Role.admin)
    weak = admin.post("/api/v1/tokens", json={"name": "ci", "role": "viewer"}).json()
    headers = {"Authorization": f"Bearer {weak['token']}"}
    assert factory.client.get("/api/v1/incidents", headers=headers).status_code == 200
    assert (
        factory.client.post("/api/v1/incidents", json={"title": "x"}, headers=headers).status_code
        == 403
    )


def test_a_weak_token_cannot_mint_a_stronger_one(factory: Factory, runtime: Runtime) -> None:
    admin = factory.user(Role.admin)
    weak = admin.post("/api/v1/tokens", json={"name": "read-only", "role": "viewer"}).json()
    headers = {"Authorization": f"Bearer {weak['token']}"}
    before = row_counts(runtime)
    for role in ("responder", "admin"):
        refused = factory.client.post(
            "/api/v1/tokens", json={"name": "up", "role": role}, headers=headers
        )
        assert refused.status_code == 422, refused.text
        assert refused.json()["field"] == "role"
    assert row_counts(runtime) == before
    # Without a role, the new token takes the maker's, not the user's.
    made = factory.client.post("/api/v1/tokens", json={"name": "same"}, headers=headers)
    assert made.status_code == 201, made.text
    assert made.json()["role"] == "viewer"


def test_a_demoted_user_takes_their_tokens_down_too(factory: Factory, runtime: Runtime) -> None:
    user = factory.user(Role.admin)
    with runtime.transaction() as session:
        session.scalar(select(User).where(User.email == user.email)).role = "viewer"  # type: ignore[union-attr]
    refused = user.post("/api/v1/incidents", json={"title": "x"})
    assert refused.status_code == 403
    assert "viewer" in refused.json()["detail"]
    with runtime.transaction() as session:
        session.scalar(select(User).where(User.email == user.email)).active = False  # type: ignore[union-attr]
    assert user.get("/api/v1/incidents").status_code == 401


def test_revoked_tokens_stop_working(factory: Factory) -> None:
    user = factory.user(Role.responder)
    other = factory.user(Role.responder)
    made = user.post("/api/v1/tokens", json={"name": "temp"}).json()
    headers = {"Authorization": f"Bearer {made['token']}"}
    assert factory.client.get("/api/v1/me", headers=headers).status_code == 200
    assert other.delete(f"/api/v1/tokens/{made['id']}").status_code == 403
    revoked = user.delete(f"/api/v1/tokens/{made['id']}")
    assert revoked.status_code == 200
    assert revoked.json()["revoked_at"] is not None
    denied = factory.client.get("/api/v1/me", headers=headers)
    assert denied.status_code == 401
    assert denied.headers["www-authenticate"] == "Bearer"
    assert user.get("/api/v1/me").status_code == 200  # the user's other token still works
    assert user.delete("/api/v1/tokens/999999").status_code == 404


@pytest.mark.parametrize(
    "header",
    [
        "Bearer",
        "Bearer ",
        "Basic dXNlcjpwYXNz",
        "Bearer ft_",
        "Bearer ft__",
        "Bearer nonsense",
        "Token ft_abc_def",
    ],
)
def test_malformed_credentials_are_401(factory: Factory, header: str) -> None:
    answer = factory.client.get("/api/v1/incidents", headers={"Authorization": header})
    assert answer.status_code == 401, answer.text
    assert answer.headers["content-type"] == "application/problem+json"


def test_a_tampered_secret_with_a_real_prefix_is_refused(factory: Factory) -> None:
    user = factory.user(Role.admin)
    tampered = user.token[:-1] + ("A" if user.token[-1] != "A" else "B")
    answer = factory.client.get("/api/v1/me", headers={"Authorization": f"Bearer {tampered}"})
    assert answer.status_code == 401


def test_only_admins_create_users(factory: Factory) -> None:
    responder = factory.user(Role.responder)
    admin = factory.user(Role.admin)
    payload = {"email": "New@Example.com", "role": "viewer"}
    assert responder.post("/api/v1/users", json=payload).status_code == 403
    made = admin.post("/api/v1/users", json=payload)
    assert made.status_code == 201, made.text
    assert made.json()["email"] == "new@example.com"
    again = admin.post("/api/v1/users", json=payload)
    assert again.status_code == 409
    assert again.json()["field"] == "email"


def test_an_admin_token_for_another_user_respects_that_user(
    factory: Factory, runtime: Runtime
) -> None:
    viewer = factory.user(Role.viewer)
    with runtime.transaction() as session, pytest.raises(Exception) as refused:
        auth_service.create_token(
            session, SYSTEM, viewer.email, TokenCreate(name="x", role=Role.admin)
        )
    assert getattr(refused.value, "field", None) == "role"


# -- console login -----------------------------------------------------------------------------
def test_passwords_are_stored_as_argon2(factory: Factory, runtime: Runtime) -> None:
    user = factory.user(Role.responder, password=PASSWORD)
    with runtime.read() as session:
        stored = session.scalar(select(User.password_hash).where(User.email == user.email))
    assert stored is not None
    assert stored.startswith("$argon2id$")
    assert PASSWORD not in stored


def test_a_password_change_ends_console_sessions(
    factory: Factory, client: TestClient, runtime: Runtime
) -> None:
    user = factory.user(Role.responder, password=PASSWORD)
    assert login(client, user.email, PASSWORD).status_code == 303
    assert client.get("/api/v1/me").status_code == 200
    with runtime.transaction() as session:
        auth_service.set_password(session, SYSTEM, user.email, "another long password")
    ended = client.get("/api/v1/me")
    assert ended.status_code == 401
    assert "log in again" in ended.json()["detail"]
    assert login(client, user.email, "another long password").status_code == 303
    assert client.get("/api/v1/me").status_code == 200


def test_login_sets_a_session_cookie_that_authenticates(
    factory: Factory, client: TestClient
) -> None:
    user = factory.user(Role.responder, password=PASSWORD)
    answer = login(client, user.email.upper(), PASSWORD)
    assert answer.status_code == 303, answer.text
    assert "firetower_session" in answer.headers["set-cookie"]
    assert "httponly" in answer.headers["set-cookie"].lower()
    me = client.get("/api/v1/me")
    assert me.status_code == 200
    assert me.json()["email"] == user.email


def test_a_wrong_password_or_unknown_email_is_the_same_refusal(
    factory: Factory, client: TestClient
) -> None:
    user = factory.user(Role.responder, password=PASSWORD)
    wrong = login(client, user.email, PASSWORD + "!")
    unknown = login(client, "nobody@example.com", PASSWORD)
    assert wrong.status_code == unknown.status_code == 401
    assert "wrong email or password" in wrong.text and "wrong email or password" in unknown.text
    assert client.get("/api/v1/me").status_code == 401


def test_login_without_the_form_csrf_token_is_refused(factory: Factory, client: TestClient) -> None:
    user = factory.user(Role.responder, password=PASSWORD)
    client.get("/login")
    answer = client.post(
        "/login", data={"email": user.email, "password": PASSWORD}, follow_redirects=False
    )
    assert answer.status_code == 403
    assert client.get("/api/v1/me").status_code == 401


def test_cookie_requests_that_change_state_need_the_csrf_token(
    factory: Factory, client: TestClient, runtime: Runtime
) -> None:
    user = factory.user(Role.responder, password=PASSWORD)
    login(client, user.email, PASSWORD)
    before = row_counts(runtime)
    refused = client.post("/api/v1/incidents", json={"title": "x"})
    assert refused.status_code == 403, refused.text
    assert "CSRF" in refused.json()["detail"]
    wrong = client.post("/api/v1/incidents", json={"title": "x"}, headers={"X-CSRF-Token": "no"})
    assert wrong.status_code == 403
    assert row_counts(runtime) == before
    page = client.get("/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert token
    accepted = client.post(
        "/api/v1/incidents", json={"title": "x"}, headers={"X-CSRF-Token": token.group(1)}
    )
    assert accepted.status_code == 201, accepted.text


def test_logout_ends_the_session(factory: Factory, client: TestClient) -> None:
    user = factory.user(Role.viewer, password=PASSWORD)
    login(client, user.email, PASSWORD)
    assert client.get("/api/v1/me").status_code == 200
    page = client.get("/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert token
    client.post("/logout", data={"csrf_token": token.group(1)}, follow_redirects=False)
    assert client.get("/api/v1/me").status_code == 401


def test_a_deactivated_user_loses_the_session(
    factory: Factory, client: TestClient, runtime: Runtime
) -> None:
    user = factory.user(Role.viewer, password=PASSWORD)
    login(client, user.email, PASSWORD)
    with runtime.transaction() as session:
        session.scalar(select(User).where(User.email == user.email)).active = False  # type: ignore[union-attr]
    assert client.get("/api/v1/me").status_code == 401
    assert login(client, user.email, PASSWORD).status_code == 401


def test_logout_without_the_csrf_token_is_refused(factory: Factory, client: TestClient) -> None:
    """Right after login the session holds no CSRF token yet; a forged logout sent then
    (from another site's page) must not end the session."""
    user = factory.user(Role.viewer, password=PASSWORD)
    login(client, user.email, PASSWORD)
    forged = client.post("/logout", follow_redirects=False)
    assert forged.status_code == 403
    assert client.get("/api/v1/me").status_code == 200


def test_logout_ends_every_session_of_the_user(
    factory: Factory, client: TestClient, app: FastAPI
) -> None:
    """The console cookie is signed, not stored: a copy of it kept elsewhere (another
    browser, or a stolen one) must stop working once its user logs out."""
    user = factory.user(Role.viewer, password=PASSWORD)
    login(client, user.email, PASSWORD)
    elsewhere = TestClient(app)
    elsewhere.cookies.update(client.cookies)
    assert elsewhere.get("/api/v1/me").status_code == 200
    page = client.get("/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert token
    client.post("/logout", data={"csrf_token": token.group(1)}, follow_redirects=False)
    assert elsewhere.get("/api/v1/me").status_code == 401
    assert login(client, user.email, PASSWORD).status_code == 303
    assert client.get("/api/v1/me").status_code == 200


# -- deactivation ------------------------------------------------------------------------------
def _user_id(runtime: Runtime, email: str) -> int:
    with runtime.read() as session:
        found = session.scalar(select(User.id).where(User.email == email))
    assert found is not None
    return found


def test_an_admin_deactivates_a_user_and_their_sessions_and_tokens_stop_at_once(
    factory: Factory, app: FastAPI, runtime: Runtime
) -> None:
    admin = factory.user(Role.admin)
    user = factory.user(Role.responder, password=PASSWORD)
    browser = TestClient(app)
    assert login(browser, user.email, PASSWORD).status_code == 303
    elsewhere = TestClient(app)  # a copy of the cookie kept in another browser
    elsewhere.cookies.update(browser.cookies)
    assert browser.get("/api/v1/me").status_code == 200
    assert user.get("/api/v1/me").status_code == 200
    user_id = _user_id(runtime, user.email)

    with FrozenClock(T0):
        done = admin.patch(f"/api/v1/users/{user_id}", json={"active": False})
    assert done.status_code == 200, done.text
    assert done.json() == {
        "id": user_id,
        "email": user.email,
        "name": user.email.split("@")[0],
        "role": "responder",
        "active": False,
        "deactivated_at": "2026-12-01T09:30:00Z",
        "deactivated_by": admin.email,
    }
    for session_client in (browser, elsewhere):
        ended = session_client.get("/api/v1/me")
        assert ended.status_code == 401
        assert "log in again" in ended.json()["detail"]
    refused = user.get("/api/v1/me")
    assert refused.status_code == 401
    assert refused.headers["www-authenticate"] == "Bearer"
    assert login(TestClient(app), user.email, PASSWORD).status_code == 401
    listed = {u["email"]: u["active"] for u in admin.get("/api/v1/users").json()}
    assert listed[user.email] is False
    # Doing it again changes nothing and is no error.
    again = admin.patch(f"/api/v1/users/{user_id}", json={"active": False})
    assert again.status_code == 200, again.text

    back = admin.patch(f"/api/v1/users/{user_id}", json={"active": True})
    assert back.status_code == 200, back.text
    assert (back.json()["active"], back.json()["deactivated_at"]) == (True, None)
    assert back.json()["deactivated_by"] is None
    assert user.get("/api/v1/me").status_code == 200  # an unrevoked token works again
    assert browser.get("/api/v1/me").status_code == 401  # an ended session stays ended
    assert login(browser, user.email, PASSWORD).status_code == 303
    assert browser.get("/api/v1/me").status_code == 200


def test_a_deactivation_records_who_and_when_and_a_reactivation_clears_it(
    factory: Factory, runtime: Runtime
) -> None:
    admin, other_admin = factory.user(Role.admin), factory.user(Role.admin)
    user = factory.user(Role.viewer)
    user_id = _user_id(runtime, user.email)
    with FrozenClock(T0) as clock:
        first = admin.patch(f"/api/v1/users/{user_id}", json={"active": False})
        clock.advance(minutes=5)
        # Asked again, by someone else and later: still the first deactivation.
        again = other_admin.patch(f"/api/v1/users/{user_id}", json={"active": False})
    for answer in (first, again):
        assert answer.status_code == 200, answer.text
        assert (answer.json()["deactivated_by"], answer.json()["deactivated_at"]) == (
            admin.email,
            "2026-12-01T09:30:00Z",
        )
    with runtime.read() as session:
        stored = session.get(User, user_id)
        assert stored is not None
        assert stored.deactivated_by_id == _user_id(runtime, admin.email)
        assert stored.deactivated_at == T0
    listed = {u["email"]: u for u in admin.get("/api/v1/users").json()}
    assert listed[user.email]["deactivated_by"] == admin.email
    assert listed[admin.email]["deactivated_by"] is None

    assert admin.patch(f"/api/v1/users/{user_id}", json={"active": True}).status_code == 200
    with runtime.read() as session:
        stored = session.get(User, user_id)
        assert stored is not None
        assert (stored.deactivated_at, stored.deactivated_by_id, stored.deactivated_by) == (
            None,
            None,
            None,
        )
    # The server's CLI acts as nobody's user: its label is what is recorded.
    with runtime.transaction() as session:
        auth_service.set_active(
            session,
            auth_service.Actor.system("firetower admin"),
            session.get(User, user_id),
            False,
        )
    with runtime.read() as session:
        stored = session.get(User, user_id)
        assert stored is not None
        assert (stored.deactivated_by_id, stored.deactivated_by) == (None, "firetower admin")
        assert stored.deactivated_at is not None


def test_only_an_admin_deactivates_and_a_refusal_changes_nothing(
    factory: Factory, runtime: Runtime
) -> None:
    admin = factory.user(Role.admin)
    responder = factory.user(Role.responder)
    target = _user_id(runtime, factory.user(Role.viewer).email)
    weak_admin = admin.post("/api/v1/tokens", json={"name": "ro", "role": "responder"}).json()
    before = row_counts(runtime)
    denied = responder.patch(f"/api/v1/users/{target}", json={"active": False})
    assert denied.status_code == 403, denied.text
    assert "admin" in denied.json()["detail"]
    weak = factory.client.patch(
        f"/api/v1/users/{target}",
        json={"active": False},
        headers={"Authorization": f"Bearer {weak_admin['token']}"},
    )
    assert weak.status_code == 403, weak.text
    missing = admin.patch("/api/v1/users/999999", json={"active": False})
    assert missing.status_code == 404, missing.text
    assert missing.json()["field"] == "user_id"
    assert "999999" in missing.json()["detail"]
    for body, field in (({}, "active"), ({"active": False, "role": "admin"}, "role")):
        bad = admin.patch(f"/api/v1/users/{target}", json=body)
        assert bad.status_code == 422, bad.text
        assert bad.json()["field"] == field
    assert row_counts(runtime) == before
    with runtime.read() as session:
        assert session.get(User, target).active is True  # type: ignore[union-attr]


def test_the_last_active_admin_is_never_deactivated(factory: Factory, runtime: Runtime) -> None:
    admin = factory.user(Role.admin)
    admin_id = _user_id(runtime, admin.email)
    other = factory.user(Role.admin)
    other_id = _user_id(runtime, other.email)
    assert admin.patch(f"/api/v1/users/{other_id}", json={"active": False}).status_code == 200
    with runtime.read() as session:
        epoch = session.get(User, admin_id).session_epoch  # type: ignore[union-attr]
    refused = admin.patch(f"/api/v1/users/{admin_id}", json={"active": False})
    assert refused.status_code == 409, refused.text
    assert refused.json()["field"] == "active"
    assert refused.json()["detail"] == (
        f"{admin.email} is the last active admin; make another user an admin "
        "before deactivating them"
    )
    with runtime.read() as session:
        kept = session.get(User, admin_id)
        assert kept is not None and kept.active and kept.session_epoch == epoch
    # With a second active admin again, either may go.
    assert admin.patch(f"/api/v1/users/{other_id}", json={"active": True}).status_code == 200
    assert admin.patch(f"/api/v1/users/{admin_id}", json={"active": False}).status_code == 200
    assert admin.get("/api/v1/me").status_code == 401


def test_two_admins_deactivating_each_other_at_once_leave_one_active(
    factory: Factory, runtime: Runtime
) -> None:
    """On PostgreSQL both could count two active admins before either commits; the admin rows
    are locked before counting, so the second waits for the first and then sees its change."""
    if runtime.settings.is_sqlite:
        pytest.skip("PostgreSQL only: SQLite runs one writer at a time")
    first, second = factory.user(Role.admin), factory.user(Role.admin)
    sessions = runtime.database.sessions
    outcome: list[BaseException | None] = []

    def deactivate(email: str) -> None:
        try:
            with unit_of_work(sessions, None) as session:
                user = auth_service.get_user_by_email(session, email)
                auth_service.set_active(session, SYSTEM, user, False)
            outcome.append(None)
        except Conflict as refused:
            outcome.append(refused)

    with unit_of_work(sessions, None) as session:
        auth_service.set_active(
            session, SYSTEM, auth_service.get_user_by_email(session, first.email), False
        )
        racing = threading.Thread(target=deactivate, args=(second.email,))
        racing.start()
        # Hold the first change open until the second waits on a row lock (or has finished,
        # which only a missing lock allows).
        with runtime.read() as watcher:
            while racing.is_alive() and not watcher.scalar(
                text(
                    "SELECT count(*) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND wait_event_type = 'Lock'"
                )
            ):
                watcher.rollback()
    racing.join(60)
    assert len(outcome) == 1 and isinstance(outcome[0], Conflict), outcome
    assert "last active admin" in outcome[0].detail
    with runtime.read() as session:
        active = session.scalars(
            select(User.email).where(User.role == "admin", User.active.is_(True))
        ).all()
    assert active == [second.email]
