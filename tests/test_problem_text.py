"""Refusals of blank text and NUL say so in words, wherever the text comes in."""

from __future__ import annotations

from typing import Any

import pytest

from firetower.auth.schemas import Role
from firetower.runtime import Runtime
from firetower.text import with_article
from tests.factories import Factory, row_counts


@pytest.mark.parametrize(
    ("path", "body", "field", "message"),
    [
        ("/api/v1/incidents", {"title": "   "}, "title", "must not be blank"),
        ("/api/v1/incidents", {"title": " \x1c\x01"}, "title", "must not be blank"),
        (
            "/api/v1/incidents",
            {"title": "a\u0000b"},
            "title",
            "must not contain the NUL character (\\u0000)",
        ),
        (
            "/api/v1/incidents",
            {"title": "Slow", "summary": "x\u0000"},
            "summary",
            "must not contain the NUL character (\\u0000)",
        ),
        (
            "/api/v1/services",
            {"name": "api", "description": "\u0000"},
            "description",
            "must not contain the NUL character (\\u0000)",
        ),
    ],
)
def test_blank_and_nul_text_are_refused_in_words(
    factory: Factory,
    runtime: Runtime,
    path: str,
    body: dict[str, Any],
    field: str,
    message: str,
) -> None:
    admin = factory.user(Role.admin)
    before = row_counts(runtime)
    answer = admin.post(path, json=body)
    assert answer.status_code == 422, answer.text
    assert answer.json()["field"] == field
    assert answer.json()["detail"] == f"{field}: {message}"
    assert "pattern" not in answer.text
    assert row_counts(runtime) == before


@pytest.mark.parametrize("url", ["/v2/enqueue", "/v2/change/enqueue"])
def test_a_blank_pagerduty_summary_is_refused(factory: Factory, runtime: Runtime, url: str) -> None:
    admin = factory.user(Role.admin)
    made = admin.post("/api/v1/integrations", json={"name": "pd", "kind": "pagerduty"})
    key = made.json()["key"]
    before = row_counts(runtime)
    payload = {"summary": "  \t\x1f", "source": "db-1", "severity": "error"}
    event = {"routing_key": key, "event_action": "trigger", "payload": payload}
    if url.endswith("change/enqueue"):
        event = {"routing_key": key, "payload": {"summary": "  \t"}}
    answer = admin.client.post(url, json=event)
    assert answer.status_code == 400, answer.text
    assert answer.json()["errors"] == ["payload.summary: must not be blank"]
    after = row_counts(runtime)
    assert after.pop("rejected_payloads") == before.pop("rejected_payloads") + 1
    assert after == before


@pytest.mark.parametrize(
    ("word", "said"),
    [
        ("http", "an http"),  # said "aitch": signals once wrote "a http"
        ("HTTPS", "an HTTPS"),
        ("alertmanager", "an alertmanager"),
        ("Event", "an Event"),
        ("tcp", "a tcp"),
        ("dns", "a dns"),
        ("grafana", "a grafana"),
        ("", "a "),
    ],
)
def test_a_word_gets_its_indefinite_article(word: str, said: str) -> None:
    """One helper for every message that names a kind: signals' and probes' used to be
    two, and signals' wrote "a http"."""
    assert with_article(word) == said
