"""The API's contract: problem details, nothing written on refusal, pagination, health, metrics."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from typing import Any

import pytest
import structlog
from fastapi.testclient import TestClient
from sqlalchemy import event

from firetower.app import create_app
from firetower.auth.schemas import Role
from firetower.db import Database, make_engine
from firetower.runtime import Runtime
from firetower.settings import Settings
from tests.factories import ApiUser, Factory, login, row_counts

PROBLEM_KEYS = {"type", "title", "status", "detail", "field"}


def _assert_problem(answer: Any, status: int, field: str | None = None) -> dict[str, Any]:
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = answer.json()
    assert body["status"] == status
    assert body["type"] == "about:blank"
    assert body["title"] and body["detail"]
    if field is not None:
        assert body["field"] == field, body
    return body


@pytest.fixture
def responder(factory: Factory) -> ApiUser:
    return factory.user(Role.responder)


def test_validation_errors_list_every_field(responder: ApiUser) -> None:
    answer = responder.post(
        "/api/v1/incidents", json={"title": "", "severity": "SEV9", "services": ["a", 3]}
    )
    body = _assert_problem(answer, 422)
    fields = {e["field"] for e in body["errors"]}
    assert {"title", "severity", "services.1"} <= fields
    assert body["field"] == body["errors"][0]["field"]
    assert body["detail"].startswith(body["field"] + ":")


@pytest.mark.parametrize(
    ("content", "headers"),
    [
        (b'{"title": ', {"content-type": "application/json"}),
        (b"[1, 2]", {"content-type": "application/json"}),
        (b"\xff\xfe", {"content-type": "application/json"}),
        (b"null", {"content-type": "application/json"}),
        (b"title=x", {"content-type": "application/x-www-form-urlencoded"}),
        (b"", {}),
    ],
)
def test_malformed_bodies_are_422_naming_the_body(
    responder: ApiUser, runtime: Runtime, content: bytes, headers: dict[str, str]
) -> None:
    before = row_counts(runtime)
    answer = responder.client.post(
        "/api/v1/incidents", content=content, headers={**responder.headers, **headers}
    )
    body = _assert_problem(answer, 422)
    assert body["field"] == "body", body
    assert row_counts(runtime) == before


def test_every_domain_error_is_a_problem(factory: Factory, responder: ApiUser) -> None:
    viewer = factory.user(Role.viewer)
    _assert_problem(responder.get("/api/v1/incidents/INC-424242"), 404, "ref")
    _assert_problem(viewer.post("/api/v1/incidents", json={"title": "x"}), 403)
    _assert_problem(factory.client.get("/api/v1/incidents"), 401)
    ref = factory.incident(title="x")
    conflict = _assert_problem(
        responder.post(f"/api/v1/incidents/{ref}/transitions", json={"to": "closed"}),
        409,
        "status",
    )
    assert conflict["allowed"]


def test_unknown_routes_and_methods_are_problems(responder: ApiUser) -> None:
    _assert_problem(responder.get("/api/v1/nothing-here"), 404)
    answer = responder.client.put("/api/v1/incidents", headers=responder.headers)
    _assert_problem(answer, 405)
    assert answer.headers["allow"]


@pytest.mark.parametrize(
    ("method", "path", "payload"),
    [
        ("post", "/api/v1/incidents", {"title": "x", "services": ["ghost"]}),
        ("post", "/api/v1/incidents", {"title": "x", "severity": "SEV0"}),
        ("patch", "/api/v1/incidents/{ref}", {"status": "closed", "title": "renamed"}),
        ("patch", "/api/v1/incidents/{ref}", {"summary": "s", "services": ["ghost"]}),
        (
            "post",
            "/api/v1/incidents/{ref}/transitions",
            {"to": "merged", "merged_into": "INC-999999"},
        ),
        ("put", "/api/v1/incidents/{ref}/roles/commander", {"user": "ghost@example.com"}),
        ("post", "/api/v1/incidents/{ref}/tasks", {"title": "t", "assignee": "ghost@x.org"}),
        ("post", "/api/v1/incidents/{ref}/notes", {"text": "\x00"}),
        ("post", "/api/v1/tokens", {"name": "x", "role": "superuser"}),
        ("post", "/api/v1/users", {"email": "not-an-email"}),
        ("delete", "/api/v1/tokens/999999", None),
    ],
)
def test_a_refused_request_writes_nothing(
    factory: Factory,
    runtime: Runtime,
    responder: ApiUser,
    method: str,
    path: str,
    payload: dict[str, Any] | None,
) -> None:
    factory.service("api")
    ref = factory.incident(title="x", services=["api"])
    admin = factory.user(Role.admin)
    caller = admin if "/users" in path else responder
    before = row_counts(runtime)
    kwargs: dict[str, Any] = {} if payload is None else {"json": payload}
    answer = getattr(caller, method)(path.format(ref=ref), **kwargs)
    assert 400 <= answer.status_code < 500, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.json()["field"], answer.json()
    assert row_counts(runtime) == before


def test_oversized_bodies_are_413_and_write_nothing(
    responder: ApiUser, runtime: Runtime, factory: Factory
) -> None:
    limit = runtime.settings.max_request_body_bytes
    before = row_counts(runtime)
    big = {"title": "x", "summary": "a" * (limit + 10)}
    declared = _assert_problem(responder.post("/api/v1/incidents", json=big), 413, "body")

    def chunks() -> Iterator[bytes]:  # no Content-Length: sent chunked
        yield b'{"title": "x", "summary": "'
        for _ in range(limit // 65536 + 2):
            yield b"a" * 65536
        yield b'"}'

    streamed = responder.client.post(
        "/api/v1/incidents",
        content=chunks(),
        headers={**responder.headers, "content-type": "application/json"},
    )
    # Refused while read rather than up front, but answered alike.
    assert _assert_problem(streamed, 413, "body")["title"] == declared["title"]
    assert row_counts(runtime) == before


def test_a_locked_sqlite_database_is_503_with_retry_after(settings: Settings) -> None:
    """A long write elsewhere holds SQLite's one write lock: writers are told to retry."""
    if not settings.is_sqlite:
        pytest.skip(
            "SQLite only: it has one database-wide write lock, which a long write transaction "
            "elsewhere holds; PostgreSQL locks rows, so a writer there waits instead"
        )
    engine = make_engine(settings.resolved_database_url)

    def short_busy_timeout(dbapi_connection: Any, _record: Any) -> None:
        # The app waits up to 10 s for the lock (db.py); runs after db.py's own listener.
        dbapi_connection.execute("PRAGMA busy_timeout=200")

    event.listen(engine, "connect", short_busy_timeout)
    database = Database(settings, engine=engine)
    app = create_app(settings, database=database, start_worker=False, configure_logs=False)
    try:
        with TestClient(app) as client:
            runtime: Runtime = app.state.runtime
            responder = Factory(runtime, client).user(Role.responder)
            assert responder.get("/api/v1/incidents").status_code == 200  # token touched now
            never_used = Factory(runtime, client).user(Role.viewer)
            before = row_counts(runtime)
            path = settings.resolved_database_url.removeprefix("sqlite:///")
            holder = sqlite3.connect(path, isolation_level=None)
            try:
                holder.execute("BEGIN IMMEDIATE")
                with structlog.testing.capture_logs() as logs:
                    answer = responder.post("/api/v1/incidents", json={"title": "while locked"})
                # Reads need no lock; recording a token's first use is skipped, not fatal.
                assert never_used.get("/api/v1/incidents").status_code == 200
            finally:
                holder.rollback()
                holder.close()
            body = _assert_problem(answer, 503)
            assert answer.headers["retry-after"] == "1"
            assert body["detail"] == "the database is busy; retry shortly"
            assert [e["log_level"] for e in logs if e["event"] == "database busy"] == ["warning"]
            assert row_counts(runtime) == before
            retried = responder.post("/api/v1/incidents", json={"title": "while locked"})
            assert retried.status_code == 201, retried.text
    finally:
        database.dispose()


# -- console session cookie -------------------------------------------------------------------
@pytest.mark.parametrize(
    ("env", "configured", "secure"),
    [("production", None, True), ("test", None, False), ("production", False, False)],
)
def test_the_session_cookie_is_secure_in_production(
    settings: Settings, database: Database, env: str, configured: bool | None, secure: bool
) -> None:
    settings = settings.model_copy(update={"env": env, "secure_cookies": configured})
    app = create_app(settings, database=database, start_worker=False, configure_logs=False)
    password = "correct horse battery staple"
    # https: a client keeps a Secure cookie (the CSRF token's session) only for https.
    with TestClient(app, base_url="https://testserver") as client:
        user = Factory(app.state.runtime, client).user(Role.viewer, password=password)
        answer = login(client, user.email, password)
    assert answer.status_code == 303, answer.text
    cookie = answer.headers["set-cookie"]
    assert cookie.startswith("firetower_session=")
    attributes = [part.strip().lower() for part in cookie.split(";")[1:]]
    assert ("secure" in attributes) is secure, cookie
    assert "httponly" in attributes


# -- pagination --------------------------------------------------------------------------------
def _all_pages(user: ApiUser, *, limit: int, declare_between: int = 0, **params: Any) -> list[str]:
    refs: list[str] = []
    cursor: str | None = None
    while True:
        query: dict[str, Any] = {"limit": limit, **params}
        if cursor:
            query["cursor"] = cursor
        page = user.get("/api/v1/incidents", params=query)
        assert page.status_code == 200, page.text
        body = page.json()
        assert len(body["items"]) <= limit
        refs.extend(i["ref"] for i in body["items"])
        for _ in range(declare_between):
            user.post("/api/v1/incidents", json={"title": "declared while paging"})
        cursor = body["next_cursor"]
        if cursor is None:
            return refs


def test_pages_have_no_duplicates_or_gaps_while_incidents_are_declared(
    factory: Factory, responder: ApiUser
) -> None:
    existing = [factory.incident(title=f"n{i}") for i in range(11)]
    seen = _all_pages(responder, limit=3, declare_between=2)
    assert seen == list(reversed(existing))  # newest first, each exactly once
    assert len(_all_pages(responder, limit=200)) == 11 + 2 * 4


def test_pagination_with_filters(factory: Factory, responder: ApiUser) -> None:
    sev1 = [factory.incident(title=f"a{i}", severity="SEV1") for i in range(4)]
    for i in range(3):
        factory.incident(title=f"b{i}", severity="SEV3")
    assert _all_pages(responder, limit=2, severity="SEV1") == list(reversed(sev1))
    resolved = responder.post(f"/api/v1/incidents/{sev1[0]}/transitions", json={"to": "resolved"})
    assert resolved.status_code == 200
    assert _all_pages(responder, limit=2, active="false") == [sev1[0]]
    assert (
        _all_pages(responder, limit=5, q="b1")
        == [r for r in _all_pages(responder, limit=50) if r not in sev1][1:2]
    )


def test_an_exact_last_page_has_no_next_cursor(factory: Factory, responder: ApiUser) -> None:
    for i in range(4):
        factory.incident(title=f"n{i}")
    first = responder.get("/api/v1/incidents", params={"limit": 2}).json()
    second = responder.get(
        "/api/v1/incidents", params={"limit": 2, "cursor": first["next_cursor"]}
    ).json()
    assert len(second["items"]) == 2
    assert second["next_cursor"] is None


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"cursor": "not-a-cursor"}, "cursor"),
        ({"cursor": "aWQ6OTk5OTk5OTk5OTk5OTk5OTk5OTk5OTk"}, "cursor"),  # id:99999999999999999999999
        ({"cursor": "aWQ6LTE"}, "cursor"),  # id:-1
        ({"cursor": "é"}, "cursor"),
        ({"limit": 0}, "limit"),
        ({"limit": 201}, "limit"),
        ({"status": "asleep"}, "status.0"),
        ({"q": "nul\x00"}, "q"),
    ],
)
def test_bad_list_parameters_are_422(
    responder: ApiUser, params: dict[str, Any], field: str
) -> None:
    _assert_problem(responder.get("/api/v1/incidents", params=params), 422, field)


# -- health, metrics, request ids ---------------------------------------------------------------
def test_healthz_is_public(factory: Factory) -> None:
    answer = factory.client.get("/healthz")
    assert answer.status_code == 200
    assert answer.json()["status"] == "ok"


def test_readyz_reports_each_check(factory: Factory) -> None:
    answer = factory.client.get("/readyz")
    body = answer.json()
    assert body["checks"]["database"] == "ok"
    assert body["checks"]["migrations"] == "ok"
    # No worker runs in tests, so not ready, and it says why.
    assert answer.status_code == 503
    assert body["checks"]["worker"].startswith("no worker heartbeat on record; ")
    assert body["worker"]["alive"] is False


def test_metrics_are_prometheus_text_counting_requests(
    factory: Factory, responder: ApiUser
) -> None:
    responder.get("/api/v1/incidents")
    answer = factory.client.get("/metrics")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain")
    assert "# TYPE firetower_http_requests_total counter" in answer.text
    assert (
        'firetower_http_requests_total{method="GET",route="/api/v1/incidents",status="200"}'
        in answer.text
    )


def test_unmatched_paths_share_one_metrics_label(factory: Factory) -> None:
    factory.client.get("/no/such/path/12345")
    text = factory.client.get("/metrics").text
    assert "/no/such/path/12345" not in text
    assert 'route="unmatched"' in text


def test_request_ids_are_echoed_or_made(factory: Factory, responder: ApiUser) -> None:
    echoed = factory.client.get("/healthz", headers={"X-Request-ID": "abc-123"})
    assert echoed.headers["x-request-id"] == "abc-123"
    made = factory.client.get("/healthz")
    assert len(made.headers["x-request-id"]) == 32
    assert made.headers["x-request-id"] != factory.client.get("/healthz").headers["x-request-id"]
    on_error = factory.client.get(
        "/api/v1/incidents/INC-9999", headers={**responder.headers, "X-Request-ID": "e-1"}
    )
    assert on_error.status_code == 404
    assert on_error.headers["x-request-id"] == "e-1"
    garbage = factory.client.get("/healthz", headers={"X-Request-ID": "x" * 500})
    assert garbage.headers["x-request-id"] != "x" * 500
    assert len(garbage.headers["x-request-id"]) == 32


def test_openapi_is_served_and_lists_the_incident_api(factory: Factory) -> None:
    schema = factory.client.get("/api/v1/openapi.json").json()
    assert "/api/v1/incidents" in schema["paths"]
    assert "/api/v1/incidents/{ref}/transitions" in schema["paths"]
