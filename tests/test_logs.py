"""firetower's own logs: JSON when asked, every request line carries its request id, and no
traceback carries local variables (they can hold bearer tokens)."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import structlog
from fastapi import FastAPI, Request
from fastapi.testclient import TestClient

from firetower.auth.schemas import Role
from firetower.logs import configure_logging
from tests.factories import Factory


@contextmanager
def _logging(log_format: str, level: str) -> Iterator[None]:
    configure_logging(log_format=log_format, level=level)
    try:
        yield
    finally:
        configure_logging(log_format="console", level="warning")


@pytest.fixture
def json_logs(capsys: pytest.CaptureFixture[str]) -> Iterator[None]:
    with _logging("json", "debug"):
        yield


def _lines(captured: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in captured.splitlines() if line.startswith("{")]


def _add_failing_route(app: FastAPI) -> None:
    """A route that fails the way a bug would: an unexpected exception, nothing handled."""

    def boom(request: Request) -> None:
        raise RuntimeError(f"boom on {request.url.path}")

    app.add_api_route("/boom", boom, methods=["GET"])


def test_request_lines_are_json_and_carry_the_request_id(json_logs, factory, capsys):
    viewer = factory.user(Role.viewer)
    capsys.readouterr()
    answer = viewer.client.get(
        "/api/v1/incidents", headers={**viewer.headers, "X-Request-ID": "req-abc-123"}
    )
    assert answer.status_code == 200
    assert answer.headers["X-Request-ID"] == "req-abc-123"
    lines = _lines(capsys.readouterr().err)
    requests = [line for line in lines if line.get("event") == "request"]
    assert requests, f"no request line among {lines}"
    assert requests[-1]["request_id"] == "req-abc-123"
    assert requests[-1]["status"] == 200
    assert requests[-1]["route"] == "/api/v1/incidents"


def test_every_request_is_logged_at_the_default_level(factory, capsys):
    viewer = factory.user(Role.viewer)
    capsys.readouterr()
    with _logging("json", "info"):
        answer = viewer.client.get(
            "/api/v1/incidents/INC-424242", headers={**viewer.headers, "X-Request-ID": "r-2"}
        )
    assert answer.status_code == 404
    requests = [line for line in _lines(capsys.readouterr().err) if line["event"] == "request"]
    assert len(requests) == 1, requests
    line = requests[0]
    assert line["level"] == "info"
    assert line["method"] == "GET"
    assert line["route"] == "/api/v1/incidents/{ref}"  # the template, not the raw path
    assert line["status"] == 404
    assert line["request_id"] == "r-2"
    assert isinstance(line["duration_ms"], int | float) and line["duration_ms"] >= 0


def test_a_request_without_an_id_gets_a_fresh_one(json_logs, client, capsys):
    first = client.get("/healthz").headers["X-Request-ID"]
    second = client.get("/healthz").headers["X-Request-ID"]
    assert first != second
    assert len(first) == 32
    ids = {line.get("request_id") for line in _lines(capsys.readouterr().err)}
    assert {first, second} <= ids


def test_an_unhandled_error_is_logged_and_answered_with_the_request_id(
    app: FastAPI, factory: Factory, capsys: pytest.CaptureFixture[str]
) -> None:
    _add_failing_route(app)
    client = TestClient(app, raise_server_exceptions=False)
    capsys.readouterr()
    with _logging("json", "info"):
        answer = client.get("/boom", headers={"X-Request-ID": "req-boom-1"})
    assert answer.status_code == 500
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.headers["X-Request-ID"] == "req-boom-1"
    lines = _lines(capsys.readouterr().err)
    errors = [line for line in lines if line["event"] == "unhandled error"]
    assert len(errors) == 1, lines
    assert errors[0]["request_id"] == "req-boom-1"
    assert "RuntimeError: boom on /boom" in str(errors[0]["exception"])
    requests = [line for line in lines if line["event"] == "request"]
    assert [(r["status"], r["route"], r["request_id"]) for r in requests] == [
        (500, "/boom", "req-boom-1")
    ]


@pytest.mark.parametrize("log_format", ["console", "json"])
def test_a_traceback_never_shows_the_bearer_token(
    app: FastAPI, factory: Factory, capsys: pytest.CaptureFixture[str], log_format: str
) -> None:
    """Tracebacks are plain: no local variables, which hold request scopes and headers."""
    _add_failing_route(app)
    responder = factory.user(Role.responder)
    client = TestClient(app, raise_server_exceptions=False)
    capsys.readouterr()
    with _logging(log_format, "info"):
        answer = client.get("/boom", headers=responder.headers)
    assert answer.status_code == 500
    err = capsys.readouterr().err
    assert "RuntimeError: boom on /boom" in err  # the traceback itself is there
    secret = responder.token.split("_", 2)[2]  # ft_<prefix>_<secret>
    assert secret not in err


@pytest.mark.parametrize("log_format", ["console", "json"])
def test_logged_exceptions_carry_no_local_variables(
    capsys: pytest.CaptureFixture[str], log_format: str
) -> None:
    """A job or a CLI command logs exceptions too; a local there can hold a secret."""
    secret = secrets.token_hex(16)  # made at run time, so no source line shows it

    def fail(credential: str) -> None:
        raise ValueError("bad credential")

    with _logging(log_format, "info"):
        try:
            fail(secret)
        except ValueError:
            structlog.get_logger("t").exception("failed")
    err = capsys.readouterr().err
    assert "ValueError: bad credential" in err
    assert secret not in err


def test_console_format_is_human_readable(capsys):
    with _logging("console", "info"):
        structlog.get_logger("t").info("worker started", worker_id="w1")
    err = capsys.readouterr().err
    assert "worker started" in err
    assert "worker_id=w1" in err
    assert not err.lstrip().startswith("{")
