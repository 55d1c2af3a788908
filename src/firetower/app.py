"""create_app(settings): the FastAPI app with its API, console, health and metrics.

Nothing is built at import time. The app's lifespan starts an embedded worker unless told
not to (``firetower serve --no-worker`` leaves jobs to ``firetower worker`` processes).
"""

from __future__ import annotations

import asyncio
import gc
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Annotated, Any

import structlog
from fastapi import APIRouter, FastAPI, Path, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from prometheus_client import CONTENT_TYPE_LATEST
from sqlalchemy import text
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.sessions import SessionMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from firetower import __version__
from firetower.apply import router as apply_router
from firetower.auth.deps import Admin, ReadSession, RuntimeDep
from firetower.auth.routes import router as auth_router
from firetower.catalog.routes import router as catalog_router
from firetower.db import MAX_ID, Database
from firetower.errors import DomainError, NotFound
from firetower.incidents import reactions as incident_reactions
from firetower.incidents.routes import router as incidents_router
from firetower.jobs import (
    JobRead,
    Worker,
    WorkerStatus,
    dead_letters,
    retry_dead,
    worker_status,
)
from firetower.logs import configure_logging
from firetower.metrics import HTTP_LATENCY, HTTP_REQUESTS, exposition
from firetower.migrate import migrations_current
from firetower.monitors import reactions as monitor_reactions
from firetower.monitors.routes import router as monitors_router
from firetower.problems import PROBLEM, problem, validation_message
from firetower.runtime import Runtime
from firetower.settings import Settings, load_settings
from firetower.signals import reactions as signal_reactions
from firetower.signals.routes import intake_router, pagerduty_refusal, speaks_pagerduty
from firetower.signals.routes import router as signals_router
from firetower.web import pages as web_pages

log = structlog.get_logger(__name__)
TOO_LARGE_TITLE = "Content too large"


def _field_of(loc: tuple[Any, ...] | list[Any]) -> str:
    """``("body", "services", 2)`` → ``services.2``; a bare ``("body", 17)`` (a JSON syntax
    error at character 17) → ``body``."""
    # Only the first element says where the input was; a body field may itself be called
    # "path" or "query" and must keep its name.
    where = ("body", "query", "path", "header", "cookie")
    parts = [str(p) for p in (loc[1:] if loc and loc[0] in where else loc)]
    if loc and loc[0] == "body" and len(loc) == 2 and isinstance(loc[1], int):
        parts = []
    return ".".join(parts) or "body"


def too_large_detail(length: str | int, limit: int) -> str:
    return f"the body is {length} bytes or more; at most {limit} are accepted"


def too_large(path: str, detail: str) -> JSONResponse:
    """The 413 of a body over the limit, in the shape the path's clients read: PagerDuty's
    on its Events API, problem details elsewhere."""
    if speaks_pagerduty(path):
        return pagerduty_refusal(413, detail)
    return problem(413, TOO_LARGE_TITLE, detail, field="body")


def refused_coding(headers: list[tuple[bytes, bytes]]) -> str | None:
    """The first content coding of a request body other than ``identity``, if any.

    Intake reads a body as sent; one in a coding (gzip, say) was read as JSON anyway and
    refused for its bytes, and one only labelled so was taken as plain. Such a body is
    refused by name instead (415, RFC 9110), before anything reads it."""
    for name, value in headers:
        if name == b"content-encoding":
            for coding in value.decode("latin-1").split(","):
                coding = coding.strip()
                if coding and coding.lower() != "identity":
                    return coding
    return None


def unsupported_coding(path: str, coding: str) -> JSONResponse:
    """The 415 of a body in a content coding, in the shape the path's clients read; its
    ``Accept-Encoding`` says what is taken (RFC 9110, 12.5.3)."""
    detail = f"the body's Content-Encoding {coding!r} is not accepted; send it uncompressed"
    if speaks_pagerduty(path):
        refusal = pagerduty_refusal(415, detail)
    else:
        refusal = problem(415, "Unsupported media type", detail, field="content-encoding")
    refusal.headers["Accept-Encoding"] = "identity"
    return refusal


def install_error_handlers(app: FastAPI) -> None:
    """Every refusal becomes a problem details answer naming the field; nothing is a bare 500."""
    from sqlalchemy.exc import DataError, IntegrityError, OperationalError

    @app.exception_handler(DomainError)
    async def domain_error(request: Request, exc: DomainError) -> Response:
        if request.url.path.startswith("/api/") or "text/html" not in request.headers.get(
            "accept", ""
        ):
            headers = {"WWW-Authenticate": "Bearer"} if exc.status_code == 401 else None
            response = problem(exc.status_code, exc.title, exc.detail, field=exc.field, **exc.extra)
            if headers:
                response.headers.update(headers)
            return response
        return await web_pages.error_page(request, exc)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
        errors = [
            {"field": _field_of(e["loc"]), "message": validation_message(e)} for e in exc.errors()
        ]
        first = errors[0] if errors else {"field": "body", "message": "invalid request"}
        return problem(
            422,
            "Invalid input",
            f"{first['field']}: {first['message']}",
            field=first["field"],
            errors=errors,
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 413:  # a body found too large while read (sent without a length)
            return too_large(request.scope["path"], str(exc.detail))
        if isinstance(exc.__cause__, RecursionError):  # FastAPI's "error parsing the body"
            detail = "body: arrays or objects nest too deeply to read"
            return problem(exc.status_code, _title(exc.status_code), detail, field="body")
        response = problem(exc.status_code, _title(exc.status_code), str(exc.detail))
        if exc.headers:  # e.g. Allow on a 405
            response.headers.update(exc.headers)
        return response

    # Safety nets: the database refused a value or a constraint that validation let through.
    # The transaction was rolled back, so the answer is a client error, and it is logged
    # because it means a validation rule is missing.
    @app.exception_handler(DataError)
    async def data_error(request: Request, exc: DataError) -> Response:
        log.warning("database refused a value", error=str(exc.orig))
        return problem(422, "Invalid input", "a value cannot be stored", field="body")

    @app.exception_handler(OverflowError)
    async def overflow_error(request: Request, exc: OverflowError) -> Response:
        # SQLite's driver refuses integers beyond 64 bits before the database sees them.
        log.warning("a number too large to store", error=str(exc))
        return problem(422, "Invalid input", "a number is out of range", field="body")

    @app.exception_handler(IntegrityError)
    async def integrity_error(request: Request, exc: IntegrityError) -> Response:
        log.warning("database refused a change", error=str(exc.orig))
        return problem(
            409,
            "Conflict",
            "the change conflicts with existing data (or a change made at the "
            "same time); reload and try again",
            field="body",
        )

    # SQLite's write lock held past the busy timeout ("database is locked"), or a database
    # that cannot answer now: nothing was written, and the same request can be sent again.
    @app.exception_handler(OperationalError)
    async def database_busy(request: Request, exc: OperationalError) -> Response:
        log.warning("database busy", error=str(exc.orig))
        response = problem(503, "Service unavailable", "the database is busy; retry shortly")
        response.headers["Retry-After"] = "1"
        return response

    # Runs in Starlette's ServerErrorMiddleware, outside the request middleware; the request
    # id is still bound because each request runs in its own context.
    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unhandled error")
        response = problem(
            500, "Internal error", "an unexpected error happened; it has been logged"
        )
        request_id = structlog.contextvars.get_contextvars().get("request_id")
        if request_id:
            response.headers["X-Request-ID"] = str(request_id)
        return response

    document_problems(app)


PROBLEM_SCHEMA: dict[str, Any] = {
    "title": "Problem",
    "description": "RFC 9457 problem details; ``field`` names the offending input.",
    "type": "object",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "field": {"type": "string"},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"field": {"type": "string"}, "message": {"type": "string"}},
            },
        },
        "allowed": {"type": "array", "items": {"type": "string"}},
    },
}


def document_problems(app: FastAPI) -> None:
    """Make the OpenAPI say what the API answers on refusal: problem details for any 4xx.

    FastAPI documents a 422 ``HTTPValidationError`` that this API never sends; clients
    (and the schemathesis fuzz test) must see the real shape.
    """
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = generate()
            schema.setdefault("components", {}).setdefault("schemas", {})["Problem"] = (
                PROBLEM_SCHEMA
            )
            answer = {
                "description": "Refused: RFC 9457 problem details",
                "content": {PROBLEM: {"schema": {"$ref": "#/components/schemas/Problem"}}},
            }
            for operations in schema.get("paths", {}).values():
                for operation in operations.values():
                    responses = operation.setdefault("responses", {})
                    responses.pop("422", None)
                    responses["4XX"] = answer
            for unused in ("HTTPValidationError", "ValidationError"):
                schema["components"]["schemas"].pop(unused, None)
        return app.openapi_schema or {}

    app.openapi = openapi  # type: ignore[method-assign]


def _title(status: int) -> str:
    from http import HTTPStatus

    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def install_request_middleware(app: FastAPI, settings: Settings) -> None:
    """Request ids, metrics and the body size limit.

    The limit is checked on Content-Length up front and, for bodies sent without one
    (chunked), while the body is read: an oversized body is refused with 413 before any
    handler can act on it.
    """
    import re

    limit = settings.max_request_body_bytes
    valid_request_id = re.compile(r"^[A-Za-z0-9._:/+=-]{1,128}$")

    def limit_streamed_body(app: Any) -> Any:
        async def asgi(scope: Any, receive: Any, send: Any) -> None:
            if scope["type"] != "http":
                await app(scope, receive, send)
                return
            seen = 0

            async def counted() -> Any:
                nonlocal seen
                message = await receive()
                if message["type"] == "http.request":
                    seen += len(message.get("body", b""))
                    if seen > limit:
                        # An HTTPException passes FastAPI's body parsing unchanged: a 413.
                        raise StarletteHTTPException(413, too_large_detail(seen, limit))
                return message

            await app(scope, counted, send)

        return asgi

    app.add_middleware(limit_streamed_body)

    # A route of an included router knows only its own path ("/incidents/{ref}"), not the
    # prefixes it was included under; the metrics label is the full template.
    templates: dict[int, str] = {}

    def route_template(route: Any) -> str:
        if route is None:
            return "unmatched"
        if id(route) not in templates:
            from fastapi.routing import iter_route_contexts

            for context in iter_route_contexts(app.router.routes):
                templates.setdefault(id(context.original_route), context.path or "")
            templates.setdefault(id(route), getattr(route, "path", "") or "unmatched")
        return templates[id(route)]

    def request_context(app: ASGIApp) -> ASGIApp:
        """Request id, body size limit, metrics and the access line of every HTTP request.

        Plain ASGI rather than ``@app.middleware("http")``: Starlette's BaseHTTPMiddleware
        runs the app in a task of its own and passes every response through a memory
        stream, a large share of a small request's cost (/healthz: ~1,050 → ~1,400 req/s).
        """

        async def asgi(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != "http":
                await app(scope, receive, send)
                return
            presented = _header(scope, b"x-request-id")
            request_id = presented if valid_request_id.match(presented) else uuid.uuid4().hex
            # Bound, never unbound: the catch-all error handler runs after this returns, and
            # each ASGI request runs in its own context, so nothing leaks to the next one.
            structlog.contextvars.clear_contextvars()
            structlog.contextvars.bind_contextvars(request_id=request_id)
            request_id_header = (b"x-request-id", request_id.encode("latin-1"))
            started = time.perf_counter()
            status: int | None = None

            async def send_with_request_id(message: Message) -> None:
                nonlocal status
                if message["type"] == "http.response.start":
                    status = message["status"]
                    headers = [h for h in message.get("headers", ()) if h[0] != b"x-request-id"]
                    headers.append(request_id_header)
                    message = {**message, "headers": headers}
                await send(message)

            length = _header(scope, b"content-length")
            try:
                if length.isascii() and length.isdigit() and int(length) > limit:
                    refusal = too_large(scope["path"], too_large_detail(length, limit))
                    await refusal(scope, receive, send_with_request_id)
                else:
                    await app(scope, receive, send_with_request_id)
            except Exception:
                # Answered with a 500 by the catch-all handler (unless the answer had begun);
                # counted and logged here.
                record(scope, status or 500, started)
                raise
            record(scope, status or 500, started)

        return asgi

    app.add_middleware(request_context)

    def record(scope: Scope, status: int, started: float) -> None:
        """The access line and the metrics of one request."""
        template = route_template(scope.get("route"))
        elapsed = time.perf_counter() - started
        method = scope["method"]
        HTTP_REQUESTS.labels(method, template, str(status)).inc()
        HTTP_LATENCY.labels(template).observe(elapsed)
        log.info(
            "request",
            method=method,
            route=template,
            status=status,
            duration_ms=round(elapsed * 1000, 1),
        )


def _header(scope: Scope, name: bytes) -> str:
    """The first value of a request header (``name`` in lower case, as ASGI gives them)."""
    for key, value in scope["headers"]:
        if key == name:
            return value.decode("latin-1")
    return ""


def worker_check(worker: WorkerStatus) -> str:
    """The readiness check's word on the workers: ``ok``, or since when none beat and what waits."""
    if worker.alive:
        return "ok"
    seen = worker.last_seen_at
    since = f"since {seen:%Y-%m-%d %H:%M:%S} UTC" if seen else "on record"
    waiting = f"{worker.waiting_jobs} job{'' if worker.waiting_jobs == 1 else 's'} waiting"
    return f"no worker heartbeat {since}; {waiting}"


def health_router() -> APIRouter:
    router = APIRouter(tags=["health"])

    @router.get("/healthz", response_model=dict[str, str])
    def healthz() -> dict[str, str]:
        """The process is up and serving."""
        return {"status": "ok", "version": __version__}

    ready_schema = {
        "type": "object",
        "required": ["status", "checks"],
        "properties": {
            "status": {"type": "string", "enum": ["ready", "not ready"]},
            "checks": {"type": "object", "additionalProperties": {"type": "string"}},
            "worker": WorkerStatus.model_json_schema(),
        },
    }

    @router.get(
        "/readyz",
        response_class=JSONResponse,
        responses={
            200: {
                "description": "Ready",
                "content": {"application/json": {"schema": ready_schema}},
            },
            503: {
                "description": "Not ready; ``checks`` says which part is not",
                "content": {"application/json": {"schema": ready_schema}},
            },
        },
    )
    def readyz(request: Request) -> JSONResponse:
        """Ready when the database answers, migrations are current and a worker beats."""
        runtime: Runtime = request.app.state.runtime
        checks: dict[str, str] = {}
        body: dict[str, Any] = {"status": "not ready", "checks": checks}
        try:
            with runtime.read() as session:
                session.execute(text("SELECT 1"))
                checks["database"] = "ok"
                checks["migrations"] = (
                    "ok" if migrations_current(runtime.database.engine) else "pending"
                )
                worker = worker_status(
                    session, stale_seconds=runtime.settings.worker_heartbeat_stale_seconds
                )
                checks["worker"] = worker_check(worker)
                body["worker"] = worker.model_dump(mode="json")
        except Exception as exc:  # readiness reports; it never raises
            checks.setdefault("database", f"unreachable: {type(exc).__name__}")
        ready = all(v == "ok" for v in checks.values()) and len(checks) == 3
        body["status"] = "ready" if ready else "not ready"
        return JSONResponse(body, status_code=200 if ready else 503)

    @router.get(
        "/metrics",
        response_class=Response,
        responses={
            200: {
                "description": "Prometheus text exposition format",
                "content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}},
            }
        },
    )
    def metrics() -> Response:
        return Response(exposition(), media_type=CONTENT_TYPE_LATEST)

    return router


def create_app(
    settings: Settings,
    *,
    database: Database | None = None,
    start_worker: bool | None = None,
    configure_logs: bool = True,
) -> FastAPI:
    if configure_logs:
        configure_logging(log_format=settings.log_format, level=settings.log_level)
    runtime = build_runtime(settings, database or Database(settings))
    run_worker = settings.embedded_worker if start_worker is None else start_worker

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        worker = Worker(runtime.database, runtime.jobs, runtime.bus) if run_worker else None
        if worker is not None:
            worker.start_in_thread()
        app.state.worker = worker
        try:
            yield
        finally:
            # Writes already queued are committed and answered before the process stops; on
            # a thread, so the loop stays free to deliver those answers meanwhile.
            await asyncio.to_thread(runtime.group.close)
            if worker is not None:
                worker.stop()

    app = FastAPI(
        title="firetower",
        version=__version__,
        description="Self-hosted incident management. Errors are RFC 9457 problem details.",
        openapi_url="/api/v1/openapi.json",
        docs_url="/api/v1/docs",
        redoc_url=None,
        lifespan=lifespan,
        # firetower's own telemetry is its Prometheus metrics and structured logs. FastAPI's
        # OpenTelemetry hooks, unused, still looked up three global providers per request.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.runtime = runtime
    api = APIRouter(prefix="/api/v1")
    api.include_router(incidents_router)
    api.include_router(catalog_router)
    api.include_router(apply_router)
    api.include_router(auth_router)
    api.include_router(jobs_api_router())
    api.include_router(signals_router)
    api.include_router(monitors_router)
    # Intake first: routes are matched in order, and intake is the busiest path by far.
    app.include_router(intake_router)
    app.include_router(api)
    app.include_router(health_router())
    web_pages.mount(app)
    install_error_handlers(app)
    # Middleware added first runs innermost: intake passes the request middleware, then
    # leaves the stack before the console's session cookie and the router.
    app.add_middleware(
        SessionMiddleware,
        secret_key=settings.secret(),
        session_cookie="firetower_session",
        max_age=12 * 3600,
        same_site="lax",
        https_only=settings.cookies_secure,
    )
    app.add_middleware(intake_shortcut(app))
    install_request_middleware(app, settings)
    return app


def intake_shortcut(fastapi_app: FastAPI) -> Callable[[ASGIApp], ASGIApp]:
    """Intake requests go from the request middleware straight to their endpoint.

    Intake is the busiest path by far (Events v2 sends one event per request), and about half
    of an event's server time went to passing the router, FastAPI's request handling and
    the session cookie, none of which intake uses: its endpoints take only their path and
    the raw request. They stay routes (the API description, a GET's 405 are unchanged);
    here a POST that matches one calls it directly. What it raises is answered by the
    app's own exception handlers; the request id, size limit, metrics and access line come
    from the request middleware around this, as for every request.
    """
    routes = [r for r in intake_router.routes if isinstance(r, APIRoute)]

    def handler_for(exc: Exception) -> Callable[..., Any] | None:
        for kind in type(exc).__mro__:
            if kind is Exception:  # the catch-all answers in ServerErrorMiddleware, as before
                return None
            if kind in fastapi_app.exception_handlers:
                return fastapi_app.exception_handlers[kind]
        return None

    def shortcut(app: ASGIApp) -> ASGIApp:
        async def asgi(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] == "http" and scope["method"] == "POST":
                for route in routes:
                    if (matched := route.path_regex.match(scope["path"])) is not None:
                        scope["route"] = route  # the metrics' route template
                        if (coding := refused_coding(scope["headers"])) is not None:
                            await unsupported_coding(scope["path"], coding)(scope, receive, send)
                            return
                        request = Request(scope, receive)
                        path_params = {
                            name: route.param_convertors[name].convert(value)
                            for name, value in matched.groupdict().items()
                        }
                        try:
                            response = await route.endpoint(request=request, **path_params)
                        except Exception as exc:
                            if (handler := handler_for(exc)) is None:
                                raise
                            response = await handler(request, exc)
                        await response(scope, receive, send)
                        return
            await app(scope, receive, send)

        return asgi

    return shortcut


def app_from_environment() -> FastAPI:
    """The app of one ``serve --processes N`` process, from the environment ``serve`` read
    and checked (and migrated the database for) before it started the processes."""
    app = create_app(load_settings())
    tune_garbage_collector()
    return app


YOUNG_OBJECTS_BEFORE_COLLECTING = 50_000
"""Python's default is 700: a busy intake process allocates that many objects in a few
alerts, and every collection also walks the long-lived objects promoted so far."""


def tune_garbage_collector() -> None:
    """For a server process, once its app is built: what exists now lives as long as the
    process, so the cycle collector stops walking it (``gc.freeze``), and young objects are
    collected in larger, rarer passes. Measured: a fifth less CPU per alert at intake."""
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_OBJECTS_BEFORE_COLLECTING, middle, old)


def build_runtime(settings: Settings, database: Database) -> Runtime:
    """A runtime with every domain's reactions and job handlers wired to its bus and registry."""
    runtime = Runtime(settings=settings, database=database)
    incident_reactions.register(runtime)
    signal_reactions.register(runtime)
    monitor_reactions.register(runtime)
    web_pages.register_listeners(runtime)
    return runtime


def jobs_api_router() -> APIRouter:
    router = APIRouter(prefix="/jobs", tags=["jobs"])

    @router.get("/dead", response_model=list[JobRead])
    def list_dead_jobs(session: ReadSession, actor: Admin) -> list[JobRead]:
        return [JobRead.model_validate(j) for j in dead_letters(session)]

    @router.post("/{job_id}/retry", status_code=202)
    def retry_job(
        job_id: Annotated[int, Path(ge=1, le=MAX_ID)], runtime: RuntimeDep, actor: Admin
    ) -> dict[str, str]:
        with runtime.transaction() as session:
            if not retry_dead(session, job_id):
                raise NotFound(f"no dead-lettered job {job_id}", field="job_id")
        return {"status": "queued"}

    return router
