"""Test data made through the same service functions the product uses (never by raw inserts)."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

from fastapi.testclient import TestClient

from firetower.auth import service as auth_service
from firetower.auth.schemas import Role, TokenCreate, UserCreate
from firetower.auth.service import Actor
from firetower.catalog import service as catalog_service
from firetower.catalog.schemas import ServiceCreate
from firetower.incidents import service as incident_service
from firetower.incidents.schemas import IncidentCreate
from firetower.runtime import Runtime

SYSTEM = Actor.system("tests")
_counter = itertools.count(1)


@dataclass
class ApiUser:
    """A user with an API token, and a client that sends it."""

    email: str
    role: Role
    token: str
    client: TestClient
    actor: Actor

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def get(self, url: str, **kwargs: Any) -> Any:
        return self.client.get(url, headers=self.headers, **kwargs)

    def post(self, url: str, **kwargs: Any) -> Any:
        return self.client.post(url, headers=self.headers, **kwargs)

    def patch(self, url: str, **kwargs: Any) -> Any:
        return self.client.patch(url, headers=self.headers, **kwargs)

    def put(self, url: str, **kwargs: Any) -> Any:
        return self.client.put(url, headers=self.headers, **kwargs)

    def delete(self, url: str, **kwargs: Any) -> Any:
        return self.client.delete(url, headers=self.headers, **kwargs)


@dataclass
class Factory:
    runtime: Runtime
    client: TestClient
    users: dict[str, ApiUser] = field(default_factory=dict)

    def user(
        self, role: Role = Role.responder, *, email: str | None = None, password: str | None = None
    ) -> ApiUser:
        email = email or f"{role.value}{next(_counter)}@example.com"
        with self.runtime.transaction() as session:
            user = auth_service.create_user(
                session,
                SYSTEM,
                UserCreate(email=email, name=email.split("@")[0], role=role, password=password),
            )
            _token, secret = auth_service.create_token(
                session, SYSTEM, email, TokenCreate(name="tests")
            )
            actor = Actor(user_id=user.id, label=email, role=role)
        api_user = ApiUser(email, role, secret, self.client, actor)
        self.users[email] = api_user
        return api_user

    def service(self, name: str | None = None, **fields: Any) -> str:
        name = name or f"svc-{next(_counter)}"
        with self.runtime.transaction() as session:
            catalog_service.create_service(session, SYSTEM, ServiceCreate(name=name, **fields))
        return name

    def incident(self, actor: Actor | None = None, **fields: Any) -> str:
        fields.setdefault("title", f"Incident {next(_counter)}")
        with self.runtime.transaction() as session:
            incident = incident_service.declare(
                session,
                actor or SYSTEM,
                IncidentCreate(**fields),
                self.runtime.settings.severity_policy,
            )
            return incident.ref


def row_counts(runtime: Runtime) -> dict[str, int]:
    """How many rows every table of the database holds (as the database lists them, so tables
    of models a test never imported count too): compared before and after a refused request."""
    from sqlalchemy import inspect, text

    names = inspect(runtime.database.engine).get_table_names()
    with runtime.read() as session:
        return {
            name: int(session.execute(text(f'SELECT count(*) FROM "{name}"')).scalar_one())
            for name in sorted(names)
        }


def login(client: TestClient, email: str, password: str) -> Any:
    """Log in through the console form (CSRF token taken from the form), keeping the cookie."""
    import re

    form = client.get("/login")
    match = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
    assert match, form.text
    return client.post(
        "/login",
        data={"email": email, "password": password, "csrf_token": match.group(1)},
        follow_redirects=False,
    )
