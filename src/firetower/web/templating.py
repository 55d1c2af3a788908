"""The console's Jinja2 environment and the one helper every page renders through.

``render`` adds what the layout needs (the actor, the CSRF token, a one-shot flash
message) so that page handlers only pass their own data.
"""

from __future__ import annotations

import json
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any

import structlog
from fastapi import Request
from fastapi.responses import Response
from fastapi.templating import Jinja2Templates
from sqlalchemy.exc import SQLAlchemyError

from firetower.auth.deps import csrf_token_for
from firetower.auth.schemas import Role
from firetower.auth.service import Actor
from firetower.errors import DomainError
from firetower.jobs import WorkerStatus, worker_status
from firetower.monitors.rounding import percent_text
from firetower.runtime import Runtime

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=str(HERE / "templates"))

FLASH_KEY = "flash"
log = structlog.get_logger(__name__)


def when(value: datetime | None) -> str:
    """A timestamp as responders read it: UTC, to the second, no ambiguity."""
    if value is None:
        return "—"
    return value.strftime("%Y-%m-%d %H:%M:%S UTC")


def iso(value: datetime | None) -> str:
    return value.isoformat() if value else ""


def label(value: Any) -> str:
    """``communications_lead`` → ``communications lead``."""
    return str(value).replace("_", " ")


def describe(kind: str, text: str, before: Any, after: Any) -> str:
    """One line for a timeline entry: its own text, or what changed, before → after."""
    if text:
        return text
    after_map = after if isinstance(after, dict) else {}
    before_map = before if isinstance(before, dict) else {}
    if not after_map:
        return label(kind).capitalize()
    changes = []
    for key, value in after_map.items():
        shown = ", ".join(map(str, value)) if isinstance(value, list) else str(value)
        if key in before_map:
            old = before_map[key]
            old_shown = ", ".join(map(str, old)) if isinstance(old, list) else str(old)
            changes.append(f"{label(key)}: {old_shown} → {shown}")
        else:
            changes.append(f"{label(key)}: {shown}")
    return f"{label(kind).capitalize()} — " + "; ".join(changes)


def pretty_json(value: Any) -> str:
    """JSON indented, with its text as written (``tojson`` escapes every non-ASCII letter);
    a plain string, so the template escapes it as HTML."""
    return json.dumps(value, indent=2, ensure_ascii=False)


templates.env.filters["when"] = when
templates.env.filters["pretty_json"] = pretty_json
templates.env.globals["describe"] = describe
templates.env.filters["iso"] = iso
templates.env.filters["label"] = label
templates.env.filters["percent"] = percent_text


def flash(request: Request, text: str, kind: str = "ok") -> None:
    """Remember a message to show on the next page (after a redirect)."""
    request.session[FLASH_KEY] = {"text": text, "kind": kind}


def flash_refusal(request: Request, exc: DomainError) -> None:
    """Remember a refusal to show on the next page, as the page itself would show it: its
    title, its detail and the field it names (after a redirect, so a reload sends nothing)."""
    request.session[FLASH_KEY] = {
        "text": exc.detail,
        "kind": "error",
        "title": exc.title,
        "field": exc.field,
    }


def workers(request: Request) -> WorkerStatus | None:
    """Whether a worker is alive, for the layout's banner; None if that cannot be told now.

    Every signed-in page asks (one small query while a worker is alive). It is a courtesy
    to the page: a busy database leaves the page without the banner rather than failing it.
    """
    runtime: Runtime = request.app.state.runtime
    try:
        with runtime.read() as session:
            return worker_status(
                session, stale_seconds=runtime.settings.worker_heartbeat_stale_seconds
            )
    except SQLAlchemyError:
        log.warning("could not tell whether a worker is alive", exc_info=True)
        return None


def render(
    request: Request,
    name: str,
    context: dict[str, Any] | None = None,
    *,
    actor: Actor | None = None,
    status_code: int = 200,
) -> Response:
    """A page, or a fragment of one. Call it off the event loop: for a signed-in actor the
    layout reads the database (whether a worker is alive); a fragment outside the layout
    (a polled panel) does not ask."""
    full = {
        "actor": actor,
        "is_admin": actor is not None and actor.role.allows(Role.admin),
        "csrf_token": csrf_token_for(request),
        "flash": request.session.pop(FLASH_KEY, None),
        "path": request.url.path,
        "worker_status": partial(workers, request) if actor is not None else None,
    }
    full.update(context or {})
    return templates.TemplateResponse(request, name, full, status_code=status_code)
