"""The network checks of synthetic probes: HTTP(S), TCP connect, DNS resolution.

They touch no database and hold no transaction (a job runs them in its ``prepare`` step), and
they never raise for what the network does: every failure becomes an outcome with ``ok=False``
and an ``error`` in words. Latency is measured with a monotonic clock from the start of the
attempt to the full answer (or to the failure). A probe's timeout bounds the whole HTTP or TCP
check (name lookup, connect, TLS, headers, body), not each read: HTTP and TCP checks run on a
short-lived asyncio loop under ``asyncio.timeout``; dnspython's ``lifetime`` bounds DNS checks.
"""

from __future__ import annotations

import asyncio
import errno
import json
import os
import socket
import ssl
import time
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

import dns.exception
import dns.rdatatype
import dns.resolver
import httpx
import jsonpath
import structlog
from cryptography import x509
from pydantic import ValidationError

from firetower import clock
from firetower.monitors.probe_schemas import (
    DnsSettings,
    HttpSettings,
    JsonPathCondition,
    ProbeKind,
    TcpSettings,
)
from firetower.patterns import stored_pattern
from firetower.problems import validation_message

log = structlog.get_logger(__name__)
MAX_BODY_BYTES = 1_048_576
"""The most of a response body a probe reads; conditions see only this much."""
MAX_ERROR_CHARS = 1000
HAPPY_EYEBALLS_DELAY_SECONDS = 0.25
"""RFC 8305: start the next address of a TCP probe's host this soon after the last one, so an
unreachable first address does not use up the whole timeout."""
T = TypeVar("T")


@dataclass(frozen=True)
class CheckOutcome:
    """What one run saw."""

    checked_at: datetime
    ok: bool
    latency_ms: float | None
    status_code: int | None = None
    error: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def as_payload(self) -> dict[str, Any]:
        """A JSON-safe form, to carry an outcome from a job's prepare step to its handler."""
        return {
            "checked_at": self.checked_at.isoformat(),
            "ok": self.ok,
            "latency_ms": self.latency_ms,
            "status_code": self.status_code,
            "error": self.error,
            "details": self.details,
        }

    @classmethod
    def from_payload(cls, data: dict[str, Any]) -> CheckOutcome:
        return cls(
            checked_at=datetime.fromisoformat(data["checked_at"]),
            ok=bool(data["ok"]),
            latency_ms=data.get("latency_ms"),
            status_code=data.get("status_code"),
            error=data.get("error"),
            details=dict(data.get("details") or {}),
        )


def _elapsed_ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 3)


def _words(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:MAX_ERROR_CHARS]


def _within(timeout_seconds: float, work: Callable[[], Awaitable[T]]) -> T:
    """Run ``work`` on a new event loop; past ``timeout_seconds`` it is cancelled and
    TimeoutError raised. For threads without a running loop (a job's prepare step, a sync
    route). Not ``asyncio.run``: closing its loop waits for the loop's executor, where a name
    lookup the deadline abandoned may hang on; ``loop.close`` leaves that thread to finish."""

    async def bounded() -> T:
        async with asyncio.timeout(timeout_seconds):
            return await work()

    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(bounded())
    finally:
        try:
            # What the work left running (the other addresses' connects of happy eyeballs,
            # a client's background tasks) is cancelled and let end, as asyncio.run does:
            # closed with the loop, it would end unfinished, its sockets left to the GC.
            left = asyncio.all_tasks(loop)
            for task in left:
                task.cancel()
            if left:  # gather() of nothing asks this thread for a loop, and it has none
                loop.run_until_complete(asyncio.gather(*left, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            loop.close()


def run_check(kind: str, settings: dict[str, Any], timeout_seconds: float) -> CheckOutcome:
    """Run one check of a probe of ``kind`` with its stored ``settings``.

    An unexpected exception (a bug, or a library surprised by what a server sent) is logged
    and becomes a failed run, so one odd endpoint never breaks the worker or the API.
    """
    checked_at = clock.now()
    try:
        return _dispatch(kind, settings, timeout_seconds)
    except ValidationError as exc:
        # Stored before a rule was tightened (e.g. a DNS name with an empty label): say which
        # field to fix rather than log a traceback at every run.
        first = exc.errors()[0]
        where = ".".join(str(part) for part in (kind, *first["loc"]))
        error = f"the stored definition is invalid: {where}: {validation_message(first)}"
        return CheckOutcome(checked_at, False, None, error=error[:MAX_ERROR_CHARS])
    except Exception as exc:
        log.exception("probe check raised", kind=kind)
        return CheckOutcome(
            checked_at, False, None, error=f"the check itself failed: {_words(exc)}"
        )


def _dispatch(kind: str, settings: dict[str, Any], timeout_seconds: float) -> CheckOutcome:
    if kind == ProbeKind.http:
        return check_http(HttpSettings.model_validate(settings), timeout_seconds)
    if kind == ProbeKind.tcp:
        return check_tcp(TcpSettings.model_validate(settings), timeout_seconds)
    if kind == ProbeKind.dns:
        return check_dns(DnsSettings.model_validate(settings), timeout_seconds)
    raise ValueError(f"unknown probe kind {kind!r}")


# -- HTTP ------------------------------------------------------------------------------------
def certificate_expiry(ssl_object: ssl.SSLObject | ssl.SSLSocket | None) -> datetime | None:
    """When the peer's certificate expires, read from its DER form.

    ``getpeercert(binary_form=True)`` hands over the certificate even when verification is
    off (the dict form would be empty then), so the expiry rule holds for unverified probes.
    """
    if ssl_object is None:
        return None
    der = ssl_object.getpeercert(True)
    if not der:
        return None
    return x509.load_der_x509_certificate(der).not_valid_after_utc


def _status_passes(settings: HttpSettings, status: int) -> bool:
    if settings.expected_status:
        return status in settings.expected_status
    return 200 <= status < 300


def _json_equal(a: Any, b: Any) -> bool:
    """JSON equality at every depth: ``true`` is not ``1`` (Python says it is, also inside
    lists and dicts), while ``1`` is ``1.0`` (JSON has one kind of number)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_json_equal(a[key], b[key]) for key in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(map(_json_equal, a, b))
    return bool(a == b)


def _condition_error(condition: Any, body: bytes) -> str | None:
    """Why a body condition fails, or None when it passes."""
    if isinstance(condition, JsonPathCondition):
        try:
            document = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            return f"jsonpath {condition.expression}: the body is not JSON"
        try:
            found = jsonpath.findall(condition.expression, document)
        except jsonpath.JSONPathError as exc:
            return f"jsonpath {condition.expression}: {_words(exc)}"
        if condition.exists is not None:
            if condition.exists and not found:
                return f"jsonpath {condition.expression} found nothing"
            if not condition.exists and found:
                return f"jsonpath {condition.expression} found {len(found)} value(s); expected none"
            return None
        if not found:
            return f"jsonpath {condition.expression} found nothing; expected {condition.equals!r}"
        if not any(_json_equal(value, condition.equals) for value in found):
            shown = json.dumps(found[0], default=str)[:200]
            return (
                f"jsonpath {condition.expression} is {shown}; expected "
                f"{json.dumps(condition.equals, default=str)[:200]}"
            )
        return None
    pattern = stored_pattern(condition.pattern)
    if pattern is None:
        return f"/{condition.pattern}/ is not a valid RE2 pattern: edit the probe"
    if not pattern.found_in(body):
        return f"the body does not match /{condition.pattern}/"
    return None


INFLATED = {"gzip": zlib.MAX_WBITS | 16, "x-gzip": zlib.MAX_WBITS | 16, "deflate": zlib.MAX_WBITS}
"""Content codings a probe decodes itself (zlib window bits of each), and asks for."""


def _inflater(content_encoding: str) -> Callable[[bytes, int], bytes]:
    """``inflate(chunk, at_most)``: the next decoded bytes of a body, never more than
    ``at_most`` (httpx would inflate each network read whole: 64 KiB of zeros are 64 MB).
    A body in one coding of ``INFLATED`` is decoded; any other is read as it came, as httpx
    reads a coding it does not know."""
    codings = [c.strip().lower() for c in content_encoding.split(",")]
    codings = [c for c in codings if c and c != "identity"]
    if len(codings) != 1 or codings[0] not in INFLATED:
        return lambda chunk, at_most: chunk[:at_most]
    decoder = zlib.decompressobj(INFLATED[codings[0]])
    started = False

    def inflate(chunk: bytes, at_most: int) -> bytes:
        nonlocal decoder, started
        if not started and codings[0] == "deflate":
            started = True
            try:  # "deflate" is meant to be zlib-wrapped; some servers send it raw
                return decoder.decompress(chunk, at_most)
            except zlib.error:
                decoder = zlib.decompressobj(-zlib.MAX_WBITS)
        return decoder.decompress(chunk, at_most)

    return inflate


def _origin(url: httpx.URL) -> str:
    """``https://host:port`` of a URL: no credentials, path or query (tokens live there)."""
    host = f"[{url.host}]" if ":" in url.host else url.host
    return f"{url.scheme}://{host}:{url.port or 443}"


def check_http(settings: HttpSettings, timeout_seconds: float) -> CheckOutcome:
    """One HTTP(S) request: status, latency, body conditions and certificate expiry.

    The expiry rule reads the certificate of every https answer, redirects followed
    included, and holds the one that expires first to it: an https URL redirected to
    plain http (or to another https host) still has its own certificate checked."""
    checked_at = clock.now()
    details: dict[str, Any] = {}
    status: int | None = None
    redirects = 0
    certificates: list[tuple[datetime, str]] = []
    """(expiry, origin) of each https answer, in the order they came."""
    body = bytearray()

    async def note_certificate(response: httpx.Response) -> None:
        # Called for each answer, a redirect too, while its connection is still open.
        stream = response.extensions.get("network_stream")
        ssl_object = stream.get_extra_info("ssl_object") if stream is not None else None
        expiry = certificate_expiry(ssl_object)
        if expiry is not None:
            certificates.append((expiry, _origin(response.request.url)))

    async def answer() -> None:
        # httpx's timeout applies to each read (a header line or body chunk that trickles in
        # resets it); _within bounds the whole answer.
        nonlocal status, redirects
        async with (
            httpx.AsyncClient(
                verify=settings.verify_tls,
                timeout=timeout_seconds,
                follow_redirects=settings.follow_redirects,
                trust_env=False,
                headers={"Accept-Encoding": "gzip, deflate"},  # the probe's headers may differ
                event_hooks={"response": [note_certificate]},
            ) as client,
            client.stream(
                settings.method,
                settings.url,
                headers=settings.headers,
                content=settings.body.encode() if settings.body else None,
            ) as response,
        ):
            status = response.status_code
            redirects = len(response.history)
            inflate = _inflater(response.headers.get("content-encoding", ""))
            async for chunk in response.aiter_raw():
                body.extend(inflate(chunk, MAX_BODY_BYTES + 1 - len(body)))
                if len(body) > MAX_BODY_BYTES:
                    del body[MAX_BODY_BYTES:]
                    details["body_truncated"] = True
                    break

    started = time.perf_counter()
    try:
        _within(timeout_seconds, answer)
    except (TimeoutError, httpx.TimeoutException):
        waiting = (
            "waiting for the status and headers"
            if status is None
            else f"reading the body, {len(body)} bytes in"
        )
        return CheckOutcome(
            checked_at,
            False,
            _elapsed_ms(started),
            status,
            f"timed out after {timeout_seconds:g}s ({waiting})",
        )
    except httpx.ConnectError as exc:
        return CheckOutcome(checked_at, False, _elapsed_ms(started), status, _connect_error(exc))
    except zlib.error as exc:
        error = f"the body does not decompress as its Content-Encoding says: {_words(exc)}"
        return CheckOutcome(checked_at, False, _elapsed_ms(started), status, error)
    except (httpx.HTTPError, ssl.SSLError, OSError, ValueError) as exc:
        return CheckOutcome(checked_at, False, _elapsed_ms(started), status, _words(exc))
    latency_ms = _elapsed_ms(started)
    assert status is not None
    problems: list[str] = []
    if certificates:
        expires, origin = min(certificates)
        days_left = (expires - checked_at).total_seconds() / 86_400
        details["certificate_expires_at"] = expires.astimezone(UTC).isoformat()
        details["certificate_days_left"] = round(days_left, 2)
        if redirects:  # say whose: the answer checked may not be the one it came from
            details["certificate_of"] = origin
        if settings.tls_expiry_days is not None and days_left < settings.tls_expiry_days:
            of = f" of {origin}" if redirects else ""
            problems.append(
                f"the TLS certificate{of} expires in {max(days_left, 0):.1f} days "
                f"(at {expires.astimezone(UTC):%Y-%m-%d %H:%M} UTC); "
                f"the limit is {settings.tls_expiry_days} days"
            )
    if not _status_passes(settings, status):
        wanted = ", ".join(map(str, settings.expected_status)) or "2xx"
        problems.append(f"status {status}; expected {wanted}")
    if settings.latency_threshold_ms is not None and latency_ms > settings.latency_threshold_ms:
        problems.append(
            f"took {latency_ms:.0f} ms; the threshold is {settings.latency_threshold_ms} ms"
        )
    for condition in settings.conditions:
        problem = _condition_error(condition, bytes(body))
        if problem:
            problems.append(problem)
    return CheckOutcome(
        checked_at,
        not problems,
        latency_ms,
        status,
        "; ".join(problems)[:MAX_ERROR_CHARS] or None,
        details,
    )


def _connect_error(exc: httpx.ConnectError) -> str:
    """What the system said for each address tried; anyio sums them up as "All connection
    attempts failed" and keeps them as the cause. TLS failures keep their own words."""
    reasons: list[str] = []
    cause: BaseException | None = exc
    while cause is not None and not reasons:
        if isinstance(cause, ssl.SSLError):
            break
        if isinstance(cause, BaseExceptionGroup):
            reasons = [_os_reason(e) for e in cause.exceptions if isinstance(e, OSError)]
        elif isinstance(cause, OSError) and cause.errno is not None:
            reasons = [_os_reason(cause)]
        cause = cause.__cause__ or cause.__context__
    if not reasons:
        return _words(exc)
    url = exc.request.url
    host = f"[{url.host}]" if ":" in url.host else url.host
    port = url.port or (443 if url.scheme == "https" else 80)
    return f"cannot connect to {host}:{port}: {'; '.join(dict.fromkeys(reasons))}"


# -- TCP -------------------------------------------------------------------------------------
def check_tcp(settings: TcpSettings, timeout_seconds: float) -> CheckOutcome:
    """A TCP connection opens within the timeout (and is closed again at once).

    The timeout covers the name lookup and every address tried (``socket.create_connection``
    would give each address the whole timeout, and the lookup none)."""
    checked_at = clock.now()

    async def connect() -> None:
        _, writer = await asyncio.open_connection(
            settings.host, settings.port, happy_eyeballs_delay=HAPPY_EYEBALLS_DELAY_SECONDS
        )
        writer.close()
        await writer.wait_closed()

    started = time.perf_counter()
    try:
        _within(timeout_seconds, connect)
    except TimeoutError:
        return CheckOutcome(
            checked_at, False, _elapsed_ms(started), error=f"timed out after {timeout_seconds:g}s"
        )
    except OSError as exc:
        return CheckOutcome(
            checked_at,
            False,
            _elapsed_ms(started),
            error=f"cannot connect to {settings.host}:{settings.port}: {_os_reason(exc)}",
        )
    return CheckOutcome(checked_at, True, _elapsed_ms(started))


def _os_reason(exc: OSError) -> str:
    """The system's words for a failed lookup or connect (asyncio wraps them in its own)."""
    if isinstance(exc, socket.gaierror) and exc.strerror:
        return exc.strerror
    if exc.errno is not None and exc.errno in errno.errorcode:
        return os.strerror(exc.errno)
    return _words(exc)


# -- DNS -------------------------------------------------------------------------------------
def _normal(text: str) -> str:
    return text.strip().rstrip(".").lower()


RESOLV_CONF = "/etc/resolv.conf"
"""The server's own resolver configuration, which a probe without a nameserver asks."""


def check_dns(
    settings: DnsSettings, timeout_seconds: float, *, resolv_conf: str = RESOLV_CONF
) -> CheckOutcome:
    """The name resolves to records of the type (and includes every expected value)."""
    checked_at = clock.now()
    if settings.nameserver:
        resolver = dns.resolver.Resolver(configure=False)
        resolver.nameservers = [settings.nameserver]
        resolver.port = settings.nameserver_port
    else:
        try:
            resolver = dns.resolver.Resolver(filename=resolv_conf)
        except dns.resolver.NoResolverConfiguration as exc:
            # A set-up to fix, not a failure of the check itself (nor a bug to log).
            text = _words(exc)
            why = (
                f"{resolv_conf} cannot be read"
                if text.startswith("cannot open")
                else f"{resolv_conf} names no nameserver"
                if text == "no nameservers"
                else f"{resolv_conf}: {text}"
            )
            error = f"no nameserver to ask: {why}; set the probe's nameserver"
            return CheckOutcome(checked_at, False, None, error=error)
    resolver.cache = None
    started = time.perf_counter()
    where = f" at {settings.nameserver}:{settings.nameserver_port}" if settings.nameserver else ""
    try:
        answer = resolver.resolve(
            settings.name,
            dns.rdatatype.from_text(settings.record_type.value),
            lifetime=timeout_seconds,
            search=False,
        )
    except dns.resolver.NXDOMAIN:
        return CheckOutcome(
            checked_at, False, _elapsed_ms(started), error=f"{settings.name} does not exist{where}"
        )
    except dns.resolver.NoAnswer:
        return CheckOutcome(
            checked_at,
            False,
            _elapsed_ms(started),
            error=f"{settings.name} has no {settings.record_type.value} record{where}",
        )
    except dns.exception.Timeout:
        return CheckOutcome(
            checked_at,
            False,
            _elapsed_ms(started),
            error=f"no DNS answer within {timeout_seconds:g}s{where}",
        )
    except (dns.exception.DNSException, OSError, ValueError) as exc:
        return CheckOutcome(checked_at, False, _elapsed_ms(started), error=_words(exc) + where)
    latency_ms = _elapsed_ms(started)
    values = [rdata.to_text() for rdata in answer]
    details: dict[str, Any] = {"answers": values[:50]}
    have = {_normal(v.strip('"')) for v in values} | {_normal(v) for v in values}
    missing = [v for v in settings.expected if _normal(v) not in have]
    if missing:
        return CheckOutcome(
            checked_at,
            False,
            latency_ms,
            error=f"{settings.name} {settings.record_type.value} lacks "
            + ", ".join(missing)
            + f"; got {', '.join(values) or 'nothing'}",
            details=details,
        )
    return CheckOutcome(checked_at, True, latency_ms, details=details)
