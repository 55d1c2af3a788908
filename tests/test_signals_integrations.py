"""Integrations: keys shown once and stored hashed, rotated and revoked by admins only."""

from __future__ import annotations

import hashlib

from sqlalchemy import select

from firetower.auth.schemas import Role
from firetower.runtime import Runtime
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
