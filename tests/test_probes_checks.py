"""Probe checks against real endpoints on loopback, run through POST /probes/{name}/run."""

from __future__ import annotations

import asyncio
import time
import tracemalloc
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from firetower.auth.schemas import Role
from firetower.monitors import probe_checks
from firetower.monitors.probe_schemas import DnsSettings
from tests.factories import ApiUser, Factory
from tests.probe_servers import (
    _Server,
    closed_port,
    dns_server,
    gzip_of,
    http_target,
    tcp_listener,
    tls_context,
    trickling_http,
)


@pytest.fixture(scope="module")
def web() -> Iterator[_Server]:
    with http_target() as server:
        yield server


@pytest.fixture
def admin(factory: Factory) -> ApiUser:
    return factory.user(Role.admin)


def probe(admin: ApiUser, name: str, kind: str, settings: dict[str, Any], **fields: Any) -> None:
    body = {"name": name, "kind": kind, kind: settings, "timeout_seconds": 5, **fields}
    answer = admin.post("/api/v1/probes", json=body)
    assert answer.status_code == 201, answer.text


def run(user: ApiUser, name: str) -> dict[str, Any]:
    answer = user.post(f"/api/v1/probes/{name}/run")
    assert answer.status_code == 200, answer.text
    result: dict[str, Any] = answer.json()
    return result


def test_http_ok_with_jsonpath_and_regex_conditions(admin: ApiUser, web: _Server) -> None:
    probe(
        admin,
        "home",
        "http",
        {
            "url": f"{web.url}/ok",
            "conditions": [
                {"type": "jsonpath", "expression": "$.status", "equals": "ok"},
                {"type": "jsonpath", "expression": "$.healthy", "equals": True},
                {"type": "jsonpath", "expression": "$.items[*].id", "equals": 2},
                {"type": "jsonpath", "expression": "$.version", "exists": True},
                {"type": "jsonpath", "expression": "$.error", "exists": False},
                {"type": "regex", "pattern": r'"version":\s*3'},
            ],
        },
    )
    result = run(admin, "home")
    assert result["ok"] is True, result
    assert result["status_code"] == 200
    assert result["error"] is None
    assert result["latency_ms"] > 0
    stored = admin.get("/api/v1/probes/home").json()
    assert stored["last_ok"] is True
    assert stored["last_latency_ms"] == result["latency_ms"]


def test_http_conditions_that_fail_say_why(admin: ApiUser, web: _Server) -> None:
    probe(
        admin,
        "strict",
        "http",
        {
            "url": f"{web.url}/ok",
            "conditions": [
                {"type": "jsonpath", "expression": "$.status", "equals": "degraded"},
                {"type": "jsonpath", "expression": "$.version", "equals": True},  # 3 is not true
                {"type": "jsonpath", "expression": "$.missing", "exists": True},
                {"type": "regex", "pattern": "^maintenance"},
            ],
        },
    )
    result = run(admin, "strict")
    assert result["ok"] is False
    assert result["status_code"] == 200
    error = result["error"]
    assert 'jsonpath $.status is "ok"; expected "degraded"' in error
    assert "jsonpath $.version is 3; expected true" in error
    assert "jsonpath $.missing found nothing" in error
    assert "does not match /^maintenance/" in error

    probe(
        admin,
        "not-json",
        "http",
        {
            "url": f"{web.url}/text",
            "conditions": [{"type": "jsonpath", "expression": "$.a", "exists": True}],
        },
    )
    assert "the body is not JSON" in run(admin, "not-json")["error"]
    probe(
        admin,
        "text",
        "http",
        {"url": f"{web.url}/text", "conditions": [{"type": "regex", "pattern": r"build \d+"}]},
    )
    assert run(admin, "text")["ok"] is True


def test_jsonpath_equals_compares_as_json_at_every_depth(admin: ApiUser, web: _Server) -> None:
    """``true`` is not ``1`` inside objects and arrays either; ``1`` and ``1.0`` are one number."""
    url = f"{web.url}/flags"  # {"status": {"healthy": true, "n": 1}, "flags": [true, false]}
    cases = {
        "object-bool-as-number": ("$.status", {"healthy": 1, "n": True}, False),
        "array-bools-as-numbers": ("$.flags", [1, 0], False),
        "array-in-array": ("$", {"status": {"healthy": True, "n": 1}, "flags": [1, False]}, False),
        "object-exact": ("$.status", {"healthy": True, "n": 1.0}, True),
        "array-exact": ("$.flags", [True, False], True),
    }
    for name, (expression, equals, passes) in cases.items():
        condition = {"type": "jsonpath", "expression": expression, "equals": equals}
        probe(admin, name, "http", {"url": url, "conditions": [condition]})
        result = run(admin, name)
        assert result["ok"] is passes, (name, result)
    result = run(admin, "array-bools-as-numbers")
    assert result["error"] == "jsonpath $.flags is [true, false]; expected [1, 0]"


@pytest.mark.parametrize(
    ("part", "waiting"),
    [("headers", "(waiting for the status and headers)"), ("body", "(reading the body, ")],
)
def test_a_trickling_answer_times_out_within_the_probe_timeout(
    admin: ApiUser, part: str, waiting: str
) -> None:
    """A server that sends a little every half second never stalls a single read, yet the
    whole answer would take 15 s; the probe's timeout (1 s) bounds the whole check."""
    with trickling_http(part, every_seconds=0.5, pieces=30) as url:
        probe(
            admin, f"trickle-{part}", "http", {"url": url}, timeout_seconds=1, interval_seconds=10
        )
        started = time.perf_counter()
        result = run(admin, f"trickle-{part}")
        elapsed = time.perf_counter() - started
    assert result["ok"] is False
    assert result["error"].startswith(f"timed out after 1s {waiting}"), result["error"]
    assert elapsed < 5, elapsed  # a per-read timeout would let it run 15 s


def test_http_status_codes(admin: ApiUser, web: _Server) -> None:
    probe(admin, "unavailable", "http", {"url": f"{web.url}/status/503"})
    result = run(admin, "unavailable")
    assert (result["ok"], result["status_code"]) == (False, 503)
    assert result["error"] == "status 503; expected 2xx"

    probe(admin, "maintenance", "http", {"url": f"{web.url}/status/503", "expected_status": [503]})
    assert run(admin, "maintenance")["ok"] is True

    probe(admin, "redirect", "http", {"url": f"{web.url}/status/302"})
    result = run(admin, "redirect")
    assert (result["ok"], result["status_code"]) == (False, 302)


def test_http_method_headers_and_body_are_sent(admin: ApiUser, web: _Server) -> None:
    probe(
        admin,
        "echo",
        "http",
        {
            "url": f"{web.url}/echo",
            "method": "POST",
            "headers": {"X-Probe": "firetower", "Authorization": "Bearer s3cret"},
            "body": '{"ping": 1}',
            "conditions": [
                {"type": "jsonpath", "expression": "$.method", "equals": "POST"},
                {"type": "jsonpath", "expression": "$.headers['x-probe']", "equals": "firetower"},
                {"type": "jsonpath", "expression": "$.body", "equals": '{"ping": 1}'},
            ],
        },
    )
    assert run(admin, "echo")["ok"] is True


def test_latency_threshold_and_timeout(admin: ApiUser, web: _Server) -> None:
    probe(
        admin,
        "slowish",
        "http",
        {"url": f"{web.url}/slow?ms=300", "latency_threshold_ms": 100},
    )
    result = run(admin, "slowish")
    assert result["ok"] is False
    assert result["latency_ms"] >= 300
    assert "the threshold is 100 ms" in result["error"]

    probe(
        admin,
        "hanging",
        "http",
        {"url": f"{web.url}/slow?ms=3000"},
        timeout_seconds=1,
        interval_seconds=10,
    )
    result = run(admin, "hanging")
    assert result["ok"] is False
    assert result["error"].startswith("timed out after 1s")
    assert 900 <= result["latency_ms"] < 3000


def test_tls_certificate_expiring_soon_fails_even_unverified(admin: ApiUser) -> None:
    soon = datetime.now(UTC) + timedelta(days=3)
    with http_target(tls_context(not_after=soon)) as server:
        probe(
            admin,
            "cert-soon",
            "http",
            {"url": f"{server.url}/ok", "verify_tls": False, "tls_expiry_days": 14},
        )
        result = run(admin, "cert-soon")
        # The default (verified) probe fails on the test CA, which no system trusts.
        probe(admin, "cert-verified", "http", {"url": f"{server.url}/ok"})
        verified = run(admin, "cert-verified")
    assert result["ok"] is False
    assert result["status_code"] == 200
    assert "the TLS certificate expires in 2.9 days" in result["error"] or (
        "the TLS certificate expires in 3.0 days" in result["error"]
    )
    assert "the limit is 14 days" in result["error"]
    assert 2.9 < result["details"]["certificate_days_left"] <= 3.0
    assert verified["ok"] is False
    assert "CERTIFICATE_VERIFY_FAILED" in verified["error"]


def test_tls_certificate_far_from_expiry_passes(admin: ApiUser) -> None:
    later = datetime.now(UTC) + timedelta(days=200)
    with http_target(tls_context(not_after=later)) as server:
        probe(admin, "cert-fine", "http", {"url": f"{server.url}/ok", "verify_tls": False})
        result = run(admin, "cert-fine")
        probe(
            admin,
            "cert-unchecked",
            "http",
            {"url": f"{server.url}/ok", "verify_tls": False, "tls_expiry_days": 365},
        )
        strict = run(admin, "cert-unchecked")
    assert result["ok"] is True, result
    assert 199 < result["details"]["certificate_days_left"] <= 200
    expires = datetime.fromisoformat(result["details"]["certificate_expires_at"])
    assert abs(expires - later) < timedelta(seconds=2)
    assert strict["ok"] is False
    assert "the limit is 365 days" in strict["error"]


def test_tls_certificates_of_redirects_are_checked(admin: ApiUser, web: _Server) -> None:
    """An https URL redirected to plain http left no certificate on the last answer, so the
    expiry rule was skipped while the https one expired; an https hop before another https
    answer was not checked either. The certificate expiring first is held to the rule."""
    soon = datetime.now(UTC) + timedelta(days=3)
    later = datetime.now(UTC) + timedelta(days=200)
    with (
        http_target(tls_context(not_after=soon)) as expiring,
        http_target(tls_context(not_after=later)) as fine,
    ):
        origin = expiring.url  # https://127.0.0.1:PORT
        hops = {
            "to-http": f"{expiring.url}/redirect?to={web.url}/ok",
            "to-https": f"{expiring.url}/redirect?to={fine.url}/ok",
        }
        for name, url in hops.items():
            settings = {"url": url, "verify_tls": False, "follow_redirects": True}
            probe(admin, name, "http", settings)
        results = {name: run(admin, name) for name in hops}
        from_fine = f"{fine.url}/redirect?to={web.url}/ok"
        probe(admin, "fine-to-http", "http", {**settings, "url": from_fine})
        passing = run(admin, "fine-to-http")
    for name, result in results.items():
        assert (result["ok"], result["status_code"]) == (False, 200), (name, result)
        assert f"the TLS certificate of {origin} expires in " in result["error"], result
        assert "the limit is 14 days" in result["error"]
        assert 2.9 < result["details"]["certificate_days_left"] <= 3.0
        assert result["details"]["certificate_of"] == origin
    assert passing["ok"] is True, passing
    assert 199 < passing["details"]["certificate_days_left"] <= 200
    assert passing["details"]["certificate_of"] == fine.url


def test_tcp_connect_and_closed_port(admin: ApiUser) -> None:
    port = closed_port()
    with tcp_listener() as open_port:
        probe(admin, "db", "tcp", {"host": "127.0.0.1", "port": open_port})
        assert run(admin, "db")["ok"] is True
    probe(admin, "nothing", "tcp", {"host": "127.0.0.1", "port": port})
    result = run(admin, "nothing")
    assert result["ok"] is False
    assert result["error"] == f"cannot connect to 127.0.0.1:{port}: Connection refused"
    probe(admin, "nothing-http", "http", {"url": f"http://127.0.0.1:{port}/"})
    result = run(admin, "nothing-http")
    assert result["error"] == f"cannot connect to 127.0.0.1:{port}: Connection refused"


def test_dns_resolution(admin: ApiUser) -> None:
    with dns_server({"app.test": ["10.1.2.3", "10.1.2.4"]}) as port:
        at = {"nameserver": "127.0.0.1", "nameserver_port": port}
        probe(admin, "dns-app", "dns", {"name": "app.test", **at, "expected": ["10.1.2.3"]})
        probe(admin, "dns-any", "dns", {"name": "app.test.", **at})
        probe(admin, "dns-wrong", "dns", {"name": "app.test", **at, "expected": ["10.9.9.9"]})
        probe(admin, "dns-missing", "dns", {"name": "nowhere.test", **at})
        found = run(admin, "dns-app")
        anything = run(admin, "dns-any")
        wrong = run(admin, "dns-wrong")
        missing = run(admin, "dns-missing")
    assert found["ok"] is True, found
    assert sorted(found["details"]["answers"]) == ["10.1.2.3", "10.1.2.4"]
    assert anything["ok"] is True
    assert wrong["ok"] is False
    assert wrong["error"] == "app.test A lacks 10.9.9.9; got 10.1.2.3, 10.1.2.4" or (
        wrong["error"] == "app.test A lacks 10.9.9.9; got 10.1.2.4, 10.1.2.3"
    )
    assert missing["ok"] is False
    assert missing["error"] == f"nowhere.test does not exist at 127.0.0.1:{port}"


def test_dns_server_that_does_not_answer_times_out(admin: ApiUser) -> None:
    import socket

    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind(("127.0.0.1", 0))
    try:
        port = silent.getsockname()[1]
        probe(
            admin,
            "dns-silent",
            "dns",
            {"name": "app.test", "nameserver": "127.0.0.1", "nameserver_port": port},
            timeout_seconds=1,
            interval_seconds=10,
        )
        result = run(admin, "dns-silent")
    finally:
        silent.close()
    assert result["ok"] is False
    assert result["error"] == f"no DNS answer within 1s at 127.0.0.1:{port}"


@pytest.mark.parametrize(
    ("content", "why"),
    [
        (None, "{path} cannot be read"),
        ("search example.org\noptions ndots:2\n", "{path} names no nameserver"),
    ],
)
def test_a_dns_check_without_a_nameserver_to_ask_fails_saying_so(
    tmp_path: Any, content: str | None, why: str
) -> None:
    """A probe without a nameserver asks the server's resolver configuration; where that is
    missing or names none, dnspython raised while the resolver was made, and the run was
    "the check itself failed: no nameservers", logged as a bug with its traceback."""
    path = tmp_path / "resolv.conf"
    if content is not None:
        path.write_text(content)
    settings = DnsSettings(name="app.test")
    outcome = probe_checks.check_dns(settings, 1, resolv_conf=str(path))
    assert outcome.ok is False
    assert (
        outcome.error
        == f"no nameserver to ask: {why.format(path=path)}; set the probe's nameserver"
    )
    assert outcome.latency_ms is None  # nothing was asked


def test_a_stored_dns_name_now_refused_fails_runs_naming_the_field(
    admin: ApiUser, factory: Factory
) -> None:
    """A probe stored before names were checked (``bad..name``): each run says which field of
    the definition is wrong, instead of dnspython's bare "A DNS label is empty."."""
    from firetower.monitors import probes

    with dns_server({"app.test": ["10.1.2.3"]}) as port:
        at = {"nameserver": "127.0.0.1", "nameserver_port": port}
        probe(admin, "dns-old", "dns", {"name": "app.test", **at})
        with factory.runtime.transaction() as session:
            stored = probes.get_probe(session, "dns-old")
            stored.settings = {**stored.settings, "name": "bad..name"}
        result = run(admin, "dns-old")
    assert result["ok"] is False
    assert result["error"] == (
        "the stored definition is invalid: dns.name: 'bad..name' is not a valid DNS name: "
        "it has an empty label (a leading dot or two dots in a row)"
    )


def test_a_check_cut_off_by_its_timeout_lets_what_it_started_end() -> None:
    """Work the deadline cuts off may have started more (happy eyeballs' other connects):
    each is cancelled and runs its cleanup before the check's loop closes."""
    cleaned_up: list[str] = []

    async def side_task() -> None:
        try:
            await asyncio.sleep(30)
        finally:
            cleaned_up.append("side task")

    async def work() -> None:
        asyncio.get_running_loop().create_task(side_task())
        await asyncio.sleep(30)

    with pytest.raises(TimeoutError):
        probe_checks._within(0.05, work)
    assert cleaned_up == ["side task"]


def test_a_compressed_body_is_decoded_no_further_than_the_limit(web: _Server) -> None:
    """At most MAX_BODY_BYTES of a body are read, decompressed bytes included: a small
    gzip answer that inflates to 200 MB (a log, a bomb) must not be inflated whole, nor a
    network read's worth of it at a time (64 KiB of zeros inflate to 64 MB)."""
    web.gzip_body = gzip_of(b'{"status": "ok"}')
    settings: dict[str, Any] = {
        "url": f"{web.url}/gzip",
        "conditions": [{"type": "jsonpath", "expression": "$.status", "equals": "ok"}],
    }
    small = probe_checks.run_check("http", settings, 10)
    assert (small.ok, small.error, small.details) == (True, None, {})

    web.gzip_body = gzip_of(b"\0" * 1_048_576, times=200)
    tracemalloc.start()
    try:
        big = probe_checks.run_check("http", {"url": f"{web.url}/gzip"}, 10)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert (big.ok, big.details) == (True, {"body_truncated": True})
    assert peak < 8 * probe_checks.MAX_BODY_BYTES, f"{peak / 1e6:.0f} MB"
