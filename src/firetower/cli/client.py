"""The CLI's HTTP client for a firetower server: FIRETOWER_URL, FIRETOWER_TOKEN, one-line errors.

Client commands never touch the database: they speak the REST API, so the same commands
work on the server machine and on a laptop far from it. Every failure (transport, 401,
problem details) becomes an :class:`ApiError` whose message fits on one line.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any
from urllib.parse import quote

import httpx

from firetower import __version__
from firetower.cli.output import fail

DEFAULT_URL = "http://127.0.0.1:8000"
TIMEOUT_SECONDS = 30.0


class ApiError(Exception):
    """A request that did not get the answer it wanted; the message is for people."""

    def __init__(
        self, message: str, *, status_code: int | None = None, field: str | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.field = field
        """The input the server refused, when its problem answer names one."""


def _one_line(text: str) -> str:
    return " ".join(text.split())


def problem_field(response: httpx.Response) -> str | None:
    """The ``field`` a problem answer names, if any."""
    try:
        body = response.json()
    except ValueError:
        return None
    field = body.get("field") if isinstance(body, dict) else None
    return field if isinstance(field, str) else None


def problem_message(response: httpx.Response) -> str:
    """The server's own words for a refusal: a problem's ``detail``, else its status line."""
    body: Any = None
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        detail = body.get("detail")
        if isinstance(detail, str) and detail:
            return _one_line(detail)
        title = body.get("title")
        if isinstance(title, str) and title:
            return _one_line(title)
    return f"the server answered {response.status_code} {response.reason_phrase}".strip()


class Client:
    """A thin wrapper over ``httpx.Client`` that turns every failure into an ApiError."""

    def __init__(
        self,
        base_url: str,
        token: str | None,
        *,
        timeout_seconds: float = TIMEOUT_SECONDS,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token or None
        headers = {"User-Agent": f"firetower-cli/{__version__}", "Accept": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        self.timeout_seconds = timeout_seconds
        self._http = httpx.Client(
            base_url=self.base_url, headers=headers, timeout=timeout_seconds, transport=transport
        )

    def close(self) -> None:
        self._http.close()

    def send(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
    ) -> httpx.Response:
        """Send one request; only transport failures raise here, any status comes back."""
        try:
            return self._http.request(method, path, json=json, params=params)
        except httpx.TimeoutException:
            raise ApiError(
                f"firetower at {self.base_url} did not answer within {self.timeout_seconds:g}s"
            ) from None
        except httpx.HTTPError as exc:
            reason = _one_line(str(exc)) or type(exc).__name__
            raise ApiError(f"cannot reach firetower at {self.base_url}: {reason}") from None

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
    ) -> Any:
        """Send one request and return its JSON body; any non-2xx answer raises ApiError."""
        response = self.send(method, path, json=json, params=params)
        if response.status_code == 401:
            raise ApiError(
                f"FIRETOWER_TOKEN is missing or invalid ({problem_message(response)})",
                status_code=401,
            )
        if response.is_error:
            raise ApiError(
                problem_message(response),
                status_code=response.status_code,
                field=problem_field(response),
            )
        if response.status_code == 204 or not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            raise ApiError(
                f"firetower at {self.base_url} answered {method} {path} with something "
                "other than JSON; is FIRETOWER_URL the firetower server?"
            ) from None

    def get(self, path: str, *, params: Mapping[str, Any] | None = None) -> Any:
        return self.request("GET", path, params=params)

    def post(self, path: str, json: Any = None) -> Any:
        return self.request("POST", path, json=json)

    def patch(self, path: str, json: Any) -> Any:
        return self.request("PATCH", path, json=json)

    def put(self, path: str, json: Any) -> Any:
        return self.request("PUT", path, json=json)


def base_url_from_env(environ: Mapping[str, str] | None = None) -> str:
    env = os.environ if environ is None else environ
    url = (env.get("FIRETOWER_URL") or DEFAULT_URL).strip()
    if not url.startswith(("http://", "https://")):
        raise ApiError(f"FIRETOWER_URL must start with http:// or https:// (got {url!r})")
    return url.rstrip("/")


@contextmanager
def connect() -> Iterator[Client]:
    """A client for FIRETOWER_URL with FIRETOWER_TOKEN; an ApiError inside ends the command."""
    try:
        client = Client(base_url_from_env(), os.environ.get("FIRETOWER_TOKEN", "").strip())
    except ApiError as exc:
        fail(exc.message)
    try:
        yield client
    except ApiError as exc:
        fail(exc.message)
    finally:
        client.close()


def normalize_ref(ref: str) -> str:
    """Accept ``INC-7``, ``inc-7`` and a bare ``7``."""
    ref = ref.strip()
    if ref.isdigit():
        return f"INC-{ref}"
    if ref[:4].lower() == "inc-":
        return "INC-" + ref[4:]
    return ref


def segment(value: str) -> str:
    """One path segment, escaped so a value can never reach another route."""
    return quote(value, safe="")
