"""FastAPI dependencies: the runtime, the current actor, and role requirements.

An actor is found from a bearer token (API, CLI) or from the signed session cookie of the
web console; requests authenticated by cookie that change state must carry the CSRF token.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Annotated, Any

import structlog
from fastapi import Depends, Request
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from firetower import clock
from firetower.auth.models import ApiToken
from firetower.auth.schemas import Role
from firetower.auth.service import Actor, actor_for_user_id, authenticate_token, touch_token
from firetower.errors import PermissionDenied, Unauthenticated
from firetower.runtime import Runtime

log = structlog.get_logger(__name__)
TOUCH_INTERVAL = timedelta(minutes=5)
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf_token"
NO_STORE = {"Cache-Control": "no-store"}
"""The headers of an answer that shows a secret once (an API token, an ingest key): no
browser or proxy cache may keep a copy of it."""


def get_runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


def read_session(runtime: RuntimeDep) -> Iterator[Session]:
    with runtime.read() as session:
        yield session


ReadSession = Annotated[Session, Depends(read_session)]


def csrf_token_for(request: Request) -> str:
    token = request.session.get("csrf")
    if not token:
        token = secrets.token_urlsafe(32)
        request.session["csrf"] = token
    return str(token)


async def check_csrf(request: Request) -> None:
    """Refuse a console form or fetch that does not carry this session's CSRF token."""
    expected = request.session.get("csrf")
    presented = request.headers.get(CSRF_HEADER)
    if presented is None and request.headers.get("content-type", "").startswith(
        ("application/x-www-form-urlencoded", "multipart/form-data")
    ):
        form = await request.form()
        value = form.get(CSRF_FIELD)
        presented = value if isinstance(value, str) else None
    if not expected or not presented or not hmac.compare_digest(str(expected), presented):
        raise PermissionDenied("missing or wrong CSRF token; reload the page and try again")


def authenticate(session: Session, request: Request) -> tuple[Actor, ApiToken | None]:
    """The actor of a request's credential (its token, if it came by one), or Unauthenticated.

    Also for a long answer (the live timeline) to check again that its credential still
    holds: a revoked token, a deactivated user or an ended session stops it.
    """
    header = request.headers.get("authorization", "")
    if header:
        scheme, _, credential = header.partition(" ")
        if scheme.lower() != "bearer" or not credential.strip():
            raise Unauthenticated("expected 'Authorization: Bearer <token>'")
        return authenticate_token(session, credential.strip())
    user_id = request.session.get("user_id") if "session" in request.scope else None
    if user_id is None:
        raise Unauthenticated("authentication required: a bearer token or a console login")
    epoch = request.session.get("epoch", 0)
    return actor_for_user_id(session, int(user_id), int(epoch)), None


def _resolve_actor(request: Request, runtime: RuntimeDep) -> tuple[Actor, bool]:
    """Find the actor and whether it came by cookie.

    A plain ``def``: FastAPI runs it in the thread pool, so waiting for the database never
    blocks the event loop (which would stall every request in flight).
    """
    with runtime.read() as session:
        actor, token = authenticate(session, request)
    if token is not None:
        if token.last_used_at is None or clock.now() - token.last_used_at > TOUCH_INTERVAL:
            try:
                with runtime.transaction() as session:
                    touch_token(session, token.id)
            except OperationalError:
                # "Last used" is a courtesy; a busy database must not refuse a read for it.
                log.warning("could not record token use; database busy", token_id=token.id)
        return actor, False
    return actor, True


async def current_actor(
    request: Request, resolved: Annotated[tuple[Actor, bool], Depends(_resolve_actor)]
) -> Actor:
    actor, by_cookie = resolved
    if by_cookie and request.method not in SAFE_METHODS:
        await check_csrf(request)
    return actor


CurrentActor = Annotated[Actor, Depends(current_actor)]


def require(role: Role) -> Callable[..., Any]:
    """A dependency that admits actors holding ``role`` or a stronger one."""

    async def dependency(actor: CurrentActor) -> Actor:
        actor.require(role)
        return actor

    dependency.needed_role = role  # type: ignore[attr-defined]  # read by the route audit test
    dependency.__name__ = f"require_{role.value}"
    return dependency


Viewer = Annotated[Actor, Depends(require(Role.viewer))]
Responder = Annotated[Actor, Depends(require(Role.responder))]
Admin = Annotated[Actor, Depends(require(Role.admin))]
