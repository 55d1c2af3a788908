"""Console pages: login, and the mounting of every page router and the static assets.

Every page reads through service functions and writes only through them, each write in
its own ``runtime.transaction()``.
"""

from __future__ import annotations

import hmac
from typing import Annotated
from urllib.parse import quote, urlsplit

from fastapi import FastAPI, Form, Request
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool

from firetower.auth import service as auth_service
from firetower.auth.deps import check_csrf
from firetower.auth.service import Actor
from firetower.errors import DomainError, Unauthenticated
from firetower.runtime import Runtime
from firetower.web import (
    catalog_pages,
    incident_pages,
    jobs_pages,
    live,
    probe_pages,
    signal_pages,
    slo_pages,
    user_pages,
)
from firetower.web.templating import HERE, render

__all__ = ["error_page", "mount", "register_listeners", "safe_next"]


def safe_next(target: str | None) -> str:
    """Where to go after login: only a path on this site, never another origin."""
    if not target or not target.startswith("/") or target.startswith("//"):
        return "/"
    if "\\" in target or any(ord(c) < 32 for c in target):
        return "/"
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return "/"
    return target


def mount(app: FastAPI) -> None:
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")

    @app.get("/login", include_in_schema=False)
    def login_form(request: Request, next: str = "/") -> Response:
        return render(request, "login.html", {"error": None, "next": safe_next(next)})

    @app.post("/login", include_in_schema=False)
    def login(
        request: Request,
        email: Annotated[str, Form(max_length=320)] = "",
        password: Annotated[str, Form(max_length=1024)] = "",
        csrf_token: Annotated[str, Form(max_length=200)] = "",
        next: Annotated[str, Form(max_length=2000)] = "/",
    ) -> Response:
        context = {"next": safe_next(next), "email": email}
        expected = request.session.get("csrf")
        if not expected or not hmac.compare_digest(str(expected), csrf_token):
            context["error"] = "The form expired; try again."
            return render(request, "login.html", context, status_code=403)
        runtime: Runtime = request.app.state.runtime
        try:
            with runtime.read() as session:
                user = auth_service.authenticate_password(session, email, password)
        except Unauthenticated as exc:
            context["error"] = exc.detail
            return render(request, "login.html", context, status_code=401)
        request.session.clear()  # a fresh session (and CSRF token) on every login
        request.session["user_id"] = user.id
        request.session["epoch"] = user.session_epoch
        return RedirectResponse(safe_next(next), status_code=303)

    @app.post("/logout", include_in_schema=False)
    async def logout(request: Request) -> Response:
        await check_csrf(request)
        user_id = request.session.get("user_id")
        if user_id is not None:
            epoch = int(request.session.get("epoch", 0))
            await run_in_threadpool(_end_sessions, request.app.state.runtime, int(user_id), epoch)
        request.session.clear()
        return RedirectResponse("/login", status_code=303)

    app.include_router(incident_pages.router)
    app.include_router(live.router)
    app.include_router(catalog_pages.router)
    app.include_router(signal_pages.router)
    app.include_router(probe_pages.router)
    app.include_router(slo_pages.router)
    app.include_router(jobs_pages.router)
    app.include_router(user_pages.router)


async def error_page(request: Request, exc: DomainError) -> Response:
    if exc.status_code == 401:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/login?next={quote(target, safe='')}", status_code=303)
    return await run_in_threadpool(_error_page, request, exc)


def _error_page(request: Request, exc: DomainError) -> Response:
    actor = _signed_in_actor(request)
    return render(request, "error.html", {"error": exc}, actor=actor, status_code=exc.status_code)


def _end_sessions(runtime: Runtime, user_id: int, session_epoch: int) -> None:
    try:
        with runtime.transaction() as session:
            auth_service.end_sessions(session, user_id, session_epoch)
    except Unauthenticated:
        pass  # the session had ended already: clearing the cookie is all that is left


def _signed_in_actor(request: Request) -> Actor | None:
    """Who is logged in, for the error page's navigation; nobody if that cannot be told.

    An error page is reached before (or instead of) a route's own actor dependency, so the
    console cookie is read again here. It is a courtesy: a busy database or an ended
    session leaves the page without navigation rather than failing the page itself.
    """
    user_id = request.session.get("user_id") if "session" in request.scope else None
    if user_id is None:
        return None
    runtime: Runtime = request.app.state.runtime
    try:
        with runtime.read() as session:
            return auth_service.actor_for_user_id(
                session, int(user_id), int(request.session.get("epoch", 0))
            )
    except (Unauthenticated, SQLAlchemyError):
        return None


def register_listeners(runtime: Runtime) -> None:
    """Wake the live timelines of this process as soon as an entry is committed."""
    live.install(runtime)
