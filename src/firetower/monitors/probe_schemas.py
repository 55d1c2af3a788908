"""Input and output shapes of synthetic probes.

A probe definition names its kind and carries that kind's settings in a section of the same
name (``http``, ``tcp`` or ``dns``), so an error names the field the way the document spells
it (``http.url``, ``tcp.port``). Everything is checked here, before anything is stored: URLs,
JSONPath expressions, regexes, ports, record types.

Numbers in input are strict: ``true``, ``60.0`` or ``"60"`` is refused, not read as 1 or 60
(a port of 1 or a threshold of one run is a real setting nobody meant).
"""

from __future__ import annotations

import ipaddress
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

import dns.exception
import dns.name
import httpx
import jsonpath
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from firetower.incidents.lifecycle import Severity
from firetower.patterns import check_pattern
from firetower.text import NO_NUL, with_article

NAME = r"^[a-z0-9][a-z0-9._-]{0,99}$"
HEADER_NAME = r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,100}$"
HOST = r"^[A-Za-z0-9.:_-]{1,253}$"
"""A host name, an IPv4 address or a bare IPv6 address (no brackets, no port)."""
MIN_INTERVAL_SECONDS = 10
MAX_INTERVAL_SECONDS = 86_400
MAX_TIMEOUT_SECONDS = 30
"""Well inside the job lease (60 s by default) that a run must finish within."""
MAX_BODY_CHARS = 65_536
HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


class ProbeKind(StrEnum):
    http = "http"
    tcp = "tcp"
    dns = "dns"


class RecordType(StrEnum):
    A = "A"
    AAAA = "AAAA"
    CNAME = "CNAME"
    MX = "MX"
    NS = "NS"
    TXT = "TXT"
    SRV = "SRV"
    PTR = "PTR"
    CAA = "CAA"
    SOA = "SOA"


class JsonPathCondition(BaseModel):
    """The body is JSON and ``expression`` finds a value (``exists``) or one equal to ``equals``.

    (Not called ``path``: problem details would drop that word from the field they name.)
    """

    model_config = ConfigDict(extra="forbid")
    type: Literal["jsonpath"]
    expression: str = Field(min_length=1, max_length=1000, pattern=NO_NUL)
    equals: Any = Field(
        default=None, description="Pass when any value the path finds equals this (JSON)."
    )
    exists: bool | None = Field(
        default=None,
        strict=True,
        description="true: pass when the path finds something; false: when it finds nothing.",
    )

    @field_validator("expression")
    @classmethod
    def _compiles(cls, value: str) -> str:
        try:
            jsonpath.compile(value)
        except jsonpath.JSONPathError as exc:
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise ValueError(f"not a valid JSONPath expression: {first}") from None
        return value

    @model_validator(mode="after")
    def _one_test(self) -> JsonPathCondition:
        has_equals = "equals" in self.model_fields_set
        if has_equals == (self.exists is not None):
            raise ValueError("a jsonpath condition takes exactly one of equals or exists")
        return self


class RegexCondition(BaseModel):
    """The body matches ``pattern`` (RE2 syntax, read as UTF-8) somewhere."""

    model_config = ConfigDict(extra="forbid")
    type: Literal["regex"]
    pattern: str = Field(min_length=1, max_length=1000, pattern=NO_NUL)

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, value: str) -> str:
        return check_pattern(value)


Condition = Annotated[JsonPathCondition | RegexCondition, Field(discriminator="type")]


def field_error(
    model: str, loc: tuple[str | int, ...], message: str, value: Any
) -> ValidationError:
    """An error that names ``loc`` (e.g. ``http.latency_threshold_ms``) when a rule spanning
    fields is broken; a plain ValueError from a model validator would name only the model.
    Pydantic prefixes ``loc`` with where the model sits, as for any field error."""
    error = PydanticCustomError("value_error", message)  # no context: braces stay as they are
    return ValidationError.from_exception_data(
        model, [InitErrorDetails(type=error, loc=loc, input=value)]
    )


def _check_url(value: str) -> str:
    if any(c.isspace() or ord(c) < 32 for c in value):
        raise ValueError("a URL must not contain spaces or control characters")
    try:
        url = httpx.URL(value)
    except (httpx.InvalidURL, ValueError, TypeError) as exc:
        raise ValueError(f"not a valid URL: {exc}") from None
    if url.scheme not in ("http", "https"):
        raise ValueError("the URL must start with http:// or https://")
    if not url.host:
        raise ValueError("the URL has no host")
    if url.port is not None and not 1 <= url.port <= 65535:
        raise ValueError(f"not a valid URL: port {url.port} is out of range 1-65535")
    return value


class HttpSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: str = Field(min_length=1, max_length=2000)
    method: Literal["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"] = "GET"
    headers: dict[Annotated[str, Field(pattern=HEADER_NAME)], str] = Field(
        default_factory=dict, max_length=50
    )
    body: str = Field(default="", max_length=MAX_BODY_CHARS, pattern=NO_NUL)
    expected_status: list[Annotated[int, Field(ge=100, le=599, strict=True)]] = Field(
        default_factory=list,
        max_length=50,
        description="Status codes that pass; empty means any 2xx.",
    )
    follow_redirects: bool = Field(default=False, strict=True)
    latency_threshold_ms: int | None = Field(
        default=None,
        ge=1,
        le=MAX_TIMEOUT_SECONDS * 1000,
        strict=True,
        description="Slower answers fail.",
    )
    conditions: list[Condition] = Field(default_factory=list, max_length=20)
    verify_tls: bool = Field(
        default=True,
        strict=True,
        description="Check the certificate chain and host name (https).",
    )
    tls_expiry_days: int | None = Field(
        default=14,
        ge=0,
        le=3650,
        strict=True,
        description="https: fail when the certificate expires within this many days "
        "(checked even when verify_tls is false); null turns the check off.",
    )

    _url = field_validator("url")(_check_url)

    @field_validator("headers")
    @classmethod
    def _header_values(cls, value: dict[str, str]) -> dict[str, str]:
        for name, text in value.items():
            if len(text) > 8000 or any(c in text for c in "\r\n\x00"):
                raise ValueError(f"header {name}: a value has at most 8000 characters, one line")
            if not text.isascii():  # httpx encodes header values as ASCII
                raise ValueError(f"header {name}: a value is ASCII text (percent-encode the rest)")
            if text != text.strip(" \t"):  # h11 refuses to send such a value
                raise ValueError(
                    f"header {name}: a value does not start or end with a space or tab"
                )
        return value


class TcpSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    host: str = Field(pattern=HOST)
    port: int = Field(ge=1, le=65535, strict=True)

    @field_validator("host")
    @classmethod
    def _host(cls, value: str) -> str:
        """An IP address, or a name the system resolver can look up (no empty label, none
        over 63 bytes): what it would refuse at every run is refused here."""
        if ":" in value:  # only an IPv6 address has one; "db:5432" is a port in the host
            try:
                ipaddress.IPv6Address(value)
            except ValueError:
                _, _, last = value.rpartition(":")
                hint = "; give the port in tcp.port" if last.isdigit() else ""
                raise ValueError(f"{value!r} is not a host name or IP address{hint}") from None
            return value
        return _check_dns_name(value)


def _check_dns_name(value: str) -> str:
    """dnspython's own parsing, so a name it would refuse at every run is refused here."""
    try:
        dns.name.from_text(value)
    except dns.name.EmptyLabel:
        raise ValueError(
            f"{value!r} is not a valid DNS name: it has an empty label "
            "(a leading dot or two dots in a row)"
        ) from None
    except dns.name.LabelTooLong:
        longest = max(value.split("."), key=len)
        raise ValueError(
            f"{value!r} is not a valid DNS name: the label {longest!r} is longer than 63 bytes"
        ) from None
    except dns.name.NameTooLong:
        raise ValueError(
            f"{value!r} is not a valid DNS name: it is longer than 255 bytes"
        ) from None
    except dns.exception.DNSException as exc:
        raise ValueError(f"{value!r} is not a valid DNS name: {exc}") from None
    return value


class DnsSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=253, pattern=r"^[A-Za-z0-9._*-]+\.?$")
    record_type: RecordType = RecordType.A
    nameserver: str | None = Field(default=None, description="An IP address.")
    nameserver_port: int = Field(default=53, ge=1, le=65535, strict=True)
    expected: list[Annotated[str, Field(min_length=1, max_length=500, pattern=NO_NUL)]] = Field(
        default_factory=list,
        max_length=50,
        description="Each value must be among the answers (compared as text, case-blind).",
    )

    _name = field_validator("name")(_check_dns_name)

    @field_validator("nameserver")
    @classmethod
    def _address(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                ipaddress.ip_address(value)
            except ValueError:
                raise ValueError(
                    f"the nameserver must be an IP address, not {value[:60]!r}"
                ) from None
        return value


class ProbeCreate(BaseModel):
    """A probe definition; also the body of PUT (a full replacement)."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=NAME, max_length=100)
    kind: ProbeKind
    service: str | None = Field(
        default=None, min_length=1, max_length=100, pattern=NO_NUL, description="A catalog service."
    )
    severity: Severity = Field(
        default=Severity.SEV2, description="The severity of the signal when the probe goes down."
    )
    interval_seconds: int = Field(
        default=60, ge=MIN_INTERVAL_SECONDS, le=MAX_INTERVAL_SECONDS, strict=True
    )
    timeout_seconds: int = Field(default=10, ge=1, le=MAX_TIMEOUT_SECONDS, strict=True)
    failure_threshold: int = Field(
        default=2,
        ge=1,
        le=100,
        strict=True,
        description="Failed runs in a row before the probe is down.",
    )
    success_threshold: int = Field(
        default=1,
        ge=1,
        le=100,
        strict=True,
        description="Passed runs in a row before it is up again.",
    )
    enabled: bool = Field(default=True, strict=True)
    http: HttpSettings | None = None
    tcp: TcpSettings | None = None
    dns: DnsSettings | None = None

    @model_validator(mode="after")
    def _settings_of_kind(self) -> ProbeCreate:
        model = type(self).__name__
        for kind in ProbeKind:
            settings = getattr(self, kind.value)
            if kind == self.kind and settings is None:
                raise field_error(
                    model,
                    (kind.value,),
                    f"{with_article(kind.value)} probe needs its settings under {kind.value!r}",
                    None,
                )
            if kind != self.kind and settings is not None:
                raise field_error(
                    model,
                    (kind.value,),
                    f"{with_article(self.kind.value)} probe takes no {kind.value!r} settings",
                    settings.model_dump(mode="json"),
                )
        if self.timeout_seconds > self.interval_seconds:
            raise field_error(
                model,
                ("timeout_seconds",),
                "timeout_seconds must not exceed interval_seconds",
                self.timeout_seconds,
            )
        if self.http is not None and self.http.method == "HEAD" and self.http.conditions:
            # A HEAD answer has no body, so every condition on it would fail every run.
            raise field_error(
                type(self).__name__,
                ("http", "conditions"),
                "a HEAD request gets no body to check; use GET for conditions on the body",
                [condition.model_dump(mode="json") for condition in self.http.conditions],
            )
        if (
            self.http is not None
            and self.http.latency_threshold_ms is not None
            and self.http.latency_threshold_ms > self.timeout_seconds * 1000
        ):
            raise field_error(
                type(self).__name__,
                ("http", "latency_threshold_ms"),
                f"latency_threshold_ms ({self.http.latency_threshold_ms}) must not exceed "
                f"timeout_seconds ({self.timeout_seconds} s = {self.timeout_seconds * 1000} ms)",
                self.http.latency_threshold_ms,
            )
        return self

    def kind_settings(self) -> dict[str, Any]:
        section = getattr(self, self.kind.value)
        assert section is not None
        data: dict[str, Any] = section.model_dump(mode="json")
        if isinstance(section, HttpSettings):
            # A jsonpath condition keeps only the test it was given: ``equals: null`` is a
            # test of its own, distinct from no ``equals`` at all.
            data["conditions"] = [
                {k: v for k, v in dumped.items() if k in given.model_fields_set or k == "type"}
                for given, dumped in zip(section.conditions, data["conditions"], strict=True)
            ]
        return data


class ProbePatch(BaseModel):
    """Pause or resume a probe without restating it."""

    model_config = ConfigDict(extra="forbid")
    enabled: bool


class ProbeRead(BaseModel):
    name: str
    kind: ProbeKind
    service: str | None
    severity: Severity
    interval_seconds: int
    timeout_seconds: int
    failure_threshold: int
    success_threshold: int
    enabled: bool
    http: dict[str, Any] | None = None
    tcp: dict[str, Any] | None = None
    dns: dict[str, Any] | None = None
    state: Literal["unknown", "up", "down"]
    state_changed_at: datetime | None
    consecutive_failures: int
    consecutive_successes: int
    last_checked_at: datetime | None
    last_ok: bool | None
    last_latency_ms: float | None
    last_error: str | None
    next_run_at: datetime
    created_at: datetime
    updated_at: datetime


class ProbeResultRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    checked_at: datetime
    ok: bool
    latency_ms: float | None
    status_code: int | None
    error: str | None
    details: dict[str, Any]


class ProbeRunRead(ProbeResultRead):
    """A run made on request, and the probe's state after it."""

    enabled: bool
    """False: the probe is paused, and this run (stored) moved no state or count."""
    state: Literal["unknown", "up", "down"]
    state_changed: bool
    consecutive_failures: int
    """Failed runs in a row, this one included; ``failure_threshold`` of them make it down."""
    failure_threshold: int
    consecutive_successes: int
    """Passed runs in a row, this one included; ``success_threshold`` of them make it up."""
    success_threshold: int


class ProbeRollupRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    hour_start: datetime
    count: int
    failures: int
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    latency_max_ms: float | None
    ok_latency_histogram: list[int]


class ProbeApplySummary(BaseModel):
    """What ``apply_probes`` did, by probe name."""

    created: list[str] = Field(default_factory=list)
    updated: list[str] = Field(default_factory=list)
    unchanged: list[str] = Field(default_factory=list)
    deleted: list[str] = Field(default_factory=list)
