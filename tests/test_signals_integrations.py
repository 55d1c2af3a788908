"""Integrations: keys shown once and stored hashed, rotated and revoked by admins only."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from types import SimpleNamespace

import pytest
from sqlalchemy import select

from firetower.auth.schemas import Role
from firetower.runtime import Runtime
from firetower.signals import service
from firetower.signals.models import Integration
from tests.factories import Factory

AM_BATCH = {
    "version": "4",
    "status": "firing",
    "alerts": [{"status": "firing", "labels": {"alertname": "Up"}, "fingerprint": "f1"}],
}


def test_a_key_is_shown_once_and_stored_as_sha256(factory: Factory, runtime: Runtime) -> None:
    admin = factory.user(Role.admin)
    answer = admin.post("/api/v1/integrations", json={"name": "prom", "kind": "alertmanager"})
    assert answer.status_code == 201, answer.text
    key = answer.json()["key"]
    assert len(key) == 32
    with runtime.read() as session:
        stored = session.scalar(select(Integration).where(Integration.name == "prom"))
        assert stored is not None
        assert stored.key_hash == hashlib.sha256(key.encode()).hexdigest()
        assert key not in (stored.key_hash, stored.key_prefix)
    listed = admin.get("/api/v1/integrations").json()
    assert [i["name"] for i in listed] == ["prom"]
    assert "key" not in listed[0]


def test_rotation_replaces_the_key_and_revocation_ends_it(factory: Factory) -> None:
    admin = factory.user(Role.admin)
    old = admin.post("/api/v1/integrations", json={"name": "am", "kind": "alertmanager"}).json()
    assert admin.client.post(f"/ingest/alertmanager/{old['key']}", json=AM_BATCH).status_code == 200

    rotated = admin.post("/api/v1/integrations/am/rotate")
    assert rotated.status_code == 200, rotated.text
    new_key = rotated.json()["key"]
    assert new_key != old["key"]
    assert admin.client.post(f"/ingest/alertmanager/{old['key']}", json=AM_BATCH).status_code == 401
    assert admin.client.post(f"/ingest/alertmanager/{new_key}", json=AM_BATCH).status_code == 200

    assert admin.delete("/api/v1/integrations/am").status_code == 204
    assert admin.client.post(f"/ingest/alertmanager/{new_key}", json=AM_BATCH).status_code == 401
    [listed] = admin.get("/api/v1/integrations").json()
    assert listed["revoked_at"] is not None
    assert admin.post("/api/v1/integrations/am/rotate").status_code == 409
    # Its name stays taken (its alerts keep it): the refusal says why, not just "exists".
    again = admin.post("/api/v1/integrations", json={"name": "am", "kind": "alertmanager"})
    assert again.status_code == 409
    assert again.json()["field"] == "name"
    assert again.json()["detail"] == (
        "an integration named am already exists, revoked: its alerts keep the name; choose another"
    )


def test_answers_that_carry_a_key_tell_caches_not_to_keep_them(factory: Factory) -> None:
    """A key is shown once: a browser's or a proxy's cache must not keep a copy of it."""
    admin = factory.user(Role.admin)
    made = admin.post("/api/v1/integrations", json={"name": "am", "kind": "alertmanager"})
    assert made.status_code == 201, made.text
    assert made.headers["cache-control"] == "no-store"
    rotated = admin.post("/api/v1/integrations/am/rotate")
    assert rotated.status_code == 200, rotated.text
    assert rotated.headers["cache-control"] == "no-store"


def test_only_admins_manage_integrations(factory: Factory) -> None:
    responder = factory.user(Role.responder)
    answer = responder.post("/api/v1/integrations", json={"name": "x", "kind": "generic"})
    assert answer.status_code == 403
    assert responder.get("/api/v1/integrations").status_code == 403


def test_bad_integrations_are_refused_naming_the_field(factory: Factory) -> None:
    admin = factory.user(Role.admin)
    unknown = admin.post(
        "/api/v1/integrations", json={"name": "a", "kind": "alertmanager", "service_name": "nope"}
    )
    assert unknown.status_code == 422
    assert unknown.json()["field"] == "service_name"
    kind = admin.post("/api/v1/integrations", json={"name": "a", "kind": "nagios"})
    assert kind.status_code == 422
    assert kind.json()["field"] == "kind"
    assert (
        admin.post("/api/v1/integrations", json={"name": "a", "kind": "grafana"}).status_code == 201
    )
    again = admin.post("/api/v1/integrations", json={"name": "a", "kind": "grafana"})
    assert again.status_code == 409
    assert admin.get("/api/v1/integrations").json()[0]["kind"] == "grafana"
    assert admin.post("/api/v1/integrations/missing/rotate").status_code == 404


def _drawn(monkeypatch: pytest.MonkeyPatch, *keys: str) -> Iterator[str]:
    """Make the ingest keys the service draws these, in order (the key material, not the
    lookup: everything else is the real thing)."""
    left = iter(keys)
    monkeypatch.setattr(service, "secrets", SimpleNamespace(token_hex=lambda n: next(left)))
    return left


def test_a_key_whose_prefix_is_taken_is_drawn_again_and_every_key_works(
    factory: Factory, runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Keys are found by their first 8 characters, stored once per integration (revoked ones
    too). A new key starting like another integration's was a 409 "conflicts with existing
    data" for an admin who did nothing wrong, and a 500 when a built-in integration drew it."""
    admin = factory.user(Role.admin)
    viewer = factory.user(Role.viewer)
    left = _drawn(
        monkeypatch,
        "0123abcd" + "1" * 24,  # am
        "0123abcd" + "2" * 24,  # pd: am's prefix, so drawn again
        "feedf00d" + "2" * 24,
        "deadbeef" + "3" * 24,  # old, then revoked: its prefix stays taken
        "deadbeef" + "4" * 24,  # am rotated onto old's prefix: drawn again
        "cafe0000" + "4" * 24,
        "feedf00d" + "5" * 24,  # the user reports' built-in integration: pd's prefix
        "5eed0000" + "5" * 24,
    )
    am = admin.post("/api/v1/integrations", json={"name": "am", "kind": "alertmanager"})
    assert am.status_code == 201, am.text
    pd = admin.post("/api/v1/integrations", json={"name": "pd", "kind": "alertmanager"})
    assert pd.status_code == 201, pd.text
    assert pd.json()["key"] == "feedf00d" + "2" * 24
    old = admin.post("/api/v1/integrations", json={"name": "old", "kind": "alertmanager"})
    assert old.status_code == 201, old.text
    assert admin.delete("/api/v1/integrations/old").status_code == 204
    rotated = admin.post("/api/v1/integrations/am/rotate")
    assert rotated.status_code == 200, rotated.text
    assert rotated.json()["key"] == "cafe0000" + "4" * 24
    report = viewer.post("/api/v1/reports", json={"what": "checkout is down"})
    assert report.status_code == 201, report.text
    assert next(left, None) is None  # every key drawn was asked for

    for key in (rotated.json()["key"], pd.json()["key"]):
        sent = admin.client.post(f"/ingest/alertmanager/{key}", json=AM_BATCH)
        assert sent.status_code == 200, sent.text
    with runtime.read() as session:
        prefixes = list(session.scalars(select(Integration.key_prefix)))
    assert sorted(prefixes) == ["5eed0000", "cafe0000", "deadbeef", "feedf00d"]
