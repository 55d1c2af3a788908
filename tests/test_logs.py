"""firetower's own logs: JSON when asked, and every request line carries its request id."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import structlog

from firetower.auth.schemas import Role
from firetower.logs import configure_logging


@pytest.fixture
def json_logs(capsys: pytest.CaptureFixture[str]) -> Iterator[None]:
    configure_logging(log_format="json", level="debug")
    yield
    configure_logging(log_format="console", level="warning")


def _lines(captured: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in captured.splitlines() if line.startswith("{")]


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
    assert requests[-1]["path"] == "/api/v1/incidents"


def test_a_request_without_an_id_gets_a_fresh_one(json_logs, client, capsys):
    first = client.get("/healthz").headers["X-Request-ID"]
    second = client.get("/healthz").headers["X-Request-ID"]
    assert first != second
    assert len(first) == 32
    ids = {line.get("request_id") for line in _lines(capsys.readouterr().err)}
    assert {first, second} <= ids


def test_console_format_is_human_readable(capsys):
    configure_logging(log_format="console", level="info")
    try:
        structlog.get_logger("t").info("worker started", worker_id="w1")
    finally:
        configure_logging(log_format="console", level="warning")
    err = capsys.readouterr().err
    assert "worker started" in err
    assert "worker_id=w1" in err
    assert not err.lstrip().startswith("{")
