"""Console pages. Every page reads through service functions and writes only through them."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from firetower.auth import service as auth_service
from firetower.auth.deps import csrf_token_for
from firetower.errors import DomainError, Unauthenticated
from firetower.runtime import Runtime

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=str(HERE / "templates"))


def mount(app: FastAPI) -> None:
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")

    @app.get("/login", response_class=HTMLResponse, include_in_schema=False)
    def login_form(request: Request) -> Response:
        return templates.TemplateResponse(
            request, "login.html", {"csrf_token": csrf_token_for(request), "error": None}
        )

    @app.post("/login", include_in_schema=False)
    async def login(request: Request) -> Response:
        form = await request.form()
        email, password = str(form.get("email", "")), str(form.get("password", ""))
        expected = request.session.get("csrf")
        if not expected or form.get("csrf_token") != expected:
            return templates.TemplateResponse(
                request,
                "login.html",
                {"csrf_token": csrf_token_for(request), "error": "The form expired; try again."},
                status_code=403,
            )
        runtime: Runtime = request.app.state.runtime
        try:
            with runtime.read() as session:
                user = auth_service.authenticate_password(session, email, password)
        except Unauthenticated as exc:
            return templates.TemplateResponse(
                request,
                "login.html",
                {"csrf_token": csrf_token_for(request), "error": exc.detail},
                status_code=401,
            )
        request.session.clear()
        request.session["user_id"] = user.id
        csrf_token_for(request)
        return RedirectResponse("/", status_code=303)

    @app.post("/logout", include_in_schema=False)
    def logout(request: Request) -> Response:
        request.session.clear()
        return RedirectResponse("/login", status_code=303)


async def error_page(request: Request, exc: DomainError) -> Response:
    if exc.status_code == 401:
        return RedirectResponse(f"/login?next={request.url.path}", status_code=303)
    return templates.TemplateResponse(
        request, "error.html", {"error": exc}, status_code=exc.status_code
    )


def register_listeners(runtime: Runtime) -> None:
    """Live updates are wired here once the console pages exist."""
