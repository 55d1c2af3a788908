"""The users page (admins): everyone who can log in, who deactivated whom and when, and
buttons to deactivate or reactivate them through the same service function as the API."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from firetower.auth import service as auth_service
from firetower.auth.deps import Admin
from firetower.auth.schemas import UserRead
from firetower.errors import DomainError
from firetower.runtime import Runtime
from firetower.web.templating import flash, flash_refusal, render

router = APIRouter(include_in_schema=False)

SETS_ACTIVE = {"deactivate": False, "reactivate": True}
"""A user row's buttons (the last part of their URL) and the ``active`` each one sets."""


@router.get("/users")
def users_page(request: Request, actor: Admin) -> Response:
    runtime: Runtime = request.app.state.runtime
    with runtime.read() as session:
        users = [UserRead.model_validate(user) for user in auth_service.list_users(session)]
    return render(request, "users.html", {"users": users}, actor=actor)


@router.post("/users/{user_id}/{action}")
def set_active(
    request: Request,
    user_id: int,
    action: Literal["deactivate", "reactivate"],
    actor: Admin,
) -> Response:
    """A user row's Deactivate or Reactivate button. Every outcome redirects (303) to /users,
    which shows it once: a reload of the page never sends the button again. A refusal (the
    last active admin, an unknown user) has changed nothing."""
    runtime: Runtime = request.app.state.runtime
    try:
        with runtime.transaction() as session:
            user = auth_service.get_user(session, user_id)
            auth_service.set_active(session, actor, user, SETS_ACTIVE[action])
            email = user.email
    except DomainError as exc:
        flash_refusal(request, exc)
        return RedirectResponse("/users", status_code=303)
    if SETS_ACTIVE[action]:
        flash(request, f"{email} is active: they can log in and use their API tokens again.")
    else:
        flash(
            request,
            f"{email} is deactivated: their console sessions are ended and their API tokens "
            "stopped. Incident roles and tasks they hold are marked until someone takes them.",
        )
    return RedirectResponse("/users", status_code=303)
