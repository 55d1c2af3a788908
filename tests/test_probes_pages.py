"""Console pages of probes: the list with history bars, one probe with its latency chart, and
running a probe from the page."""

from __future__ import annotations

import html
import json
import re
from datetime import UTC, datetime, timedelta

from fastapi.testclient import TestClient

from firetower.auth.schemas import Role
from firetower.clock import FrozenClock
from firetower.web.probe_pages import Point, latency_chart
from tests.factories import Factory, login
from tests.probe_servers import http_target
from tests.test_probes_retention import maintain, record

PASSWORD = "correct horse battery staple"


def _csrf(page: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert match, page
    return match.group(1)


def test_list_and_detail_pages_and_run_now(factory: Factory, client: TestClient) -> None:
    admin = factory.user(Role.admin)
    factory.service("web")
    responder = factory.user(Role.responder, password=PASSWORD)
    with http_target() as web:
        admin.post(
            "/api/v1/probes",
            json={
                "name": "home",
                "kind": "http",
                "service": "web",
                "failure_threshold": 1,
                "http": {"url": f"{web.url}/toggle"},
            },
        )
        for status in (200, 200, 500):
            web.toggle_status = status
            admin.post("/api/v1/probes/home/run")
        assert login(client, responder.email, PASSWORD).status_code == 303

        listing = client.get("/probes")
        assert listing.status_code == 200
        row = re.search(r'<tr id="probe-home" data-state="(\w+)">(.*?)</tr>', listing.text, re.S)
        assert row, listing.text
        assert row.group(1) == "down"
        cells = re.findall(r'class="cell (ok|fail|none)"', row.group(2))
        assert cells == ["none"] * 27 + ["ok", "ok", "fail"]
        assert "status 500; expected 2xx" in row.group(2)
        assert f"GET {web.url}/toggle" in row.group(2)

        page = client.get("/probes/home?range=1h")
        assert page.status_code == 200
        assert '<svg class="latency-chart"' in page.text
        assert page.text.count('class="failure"') == 1
        assert re.search(r'<path class="series series-latency" d="M[\d.]+,[\d.]+ L', page.text)
        quarter = client.get("/probes/home?range=90d")  # this hour, not rolled up yet
        assert quarter.status_code == 200
        assert quarter.text.count('class="failure"') == 1

        web.toggle_status = 200
        ran = client.post(
            "/probes/home/run", data={"csrf_token": _csrf(page.text)}, follow_redirects=False
        )
        assert ran.status_code == 303 and ran.headers["location"] == "/probes/home"
        after = client.get("/probes/home")
        assert "home passed in" in after.text and "it is up." in after.text
        assert admin.get("/api/v1/probes/home").json()["state"] == "up"

        # Without the CSRF token nothing runs.
        refused = client.post("/probes/home/run", data={}, follow_redirects=False)
        assert refused.status_code == 403
        assert len(admin.get("/api/v1/probes/home/results").json()) == 4
    assert client.get("/probes/absent").status_code == 404


def test_viewers_see_probes_but_cannot_run_them(factory: Factory, client: TestClient) -> None:
    admin = factory.user(Role.admin)
    admin.post(
        "/api/v1/probes",
        json={"name": "db", "kind": "tcp", "tcp": {"host": "127.0.0.1", "port": 9}},
    )
    viewer = factory.user(Role.viewer, password=PASSWORD)
    login(client, viewer.email, PASSWORD)
    page = client.get("/probes")
    assert page.status_code == 200 and "probe-db" in page.text
    assert "Run now" not in page.text
    refused = client.post(
        "/probes/db/run", data={"csrf_token": _csrf(page.text)}, follow_redirects=False
    )
    assert refused.status_code == 403
    assert admin.get("/api/v1/probes/db/results").json() == []


def test_run_now_of_a_paused_probe_says_it_is_paused(factory: Factory, client: TestClient) -> None:
    admin = factory.user(Role.admin)
    admin.post(
        "/api/v1/probes",
        json={
            "name": "db",
            "kind": "tcp",
            "enabled": False,
            "tcp": {"host": "127.0.0.1", "port": 9},
        },
    )
    responder = factory.user(Role.responder, password=PASSWORD)
    login(client, responder.email, PASSWORD)
    page = client.get("/probes/db")
    ran = client.post(
        "/probes/db/run", data={"csrf_token": _csrf(page.text)}, follow_redirects=False
    )
    assert ran.status_code == 303
    after = html.unescape(client.get("/probes/db").text)
    assert "; it is paused, so its runs move no state (it stays unknown)." in after


def test_the_chart_maps_time_and_latency_and_marks_failures() -> None:
    start = datetime(2026, 3, 1, tzinfo=UTC)
    end = start + timedelta(hours=1)
    points = [
        Point(start, 100.0, True, "a"),
        Point(start + timedelta(minutes=30), 200.0, False, "b"),
        Point(end, None, False, "c"),
    ]
    chart = latency_chart({"latency": points}, start, end)
    assert chart.series[0].path == "M56.0,120.0 L402.0,48.0"  # y top is 250 ms (nice ceiling)
    assert [m.x for m in chart.failures] == [402.0, 748.0]
    assert [t.label for t in chart.y_ticks] == ["0 ms", "62.5 ms", "125 ms", "187.5 ms", "250 ms"]
    assert chart.x_ticks[0].label == "00:00" and chart.x_ticks[-1].label == "01:00"


def test_the_list_page_with_no_probes(factory: Factory, client: TestClient) -> None:
    viewer = factory.user(Role.viewer, password=PASSWORD)
    login(client, viewer.email, PASSWORD)
    with FrozenClock(datetime(2026, 3, 1, tzinfo=UTC)):
        assert "No probes yet." in client.get("/probes").text


def _xs(page: str) -> list[float]:
    path = re.search(r'<path class="series series-latency" d="([^"]+)"', page)
    assert path, page
    return [float(x) for x in re.findall(r"[ML]([\d.]+),", path.group(1))]


def test_a_new_probe_chart_spans_its_life_by_default(factory: Factory, client: TestClient) -> None:
    """Without a range, a probe younger than 24 hours is charted from its creation, not
    squeezed into the last pixels of a day; the offered ranges still chart what they say."""
    admin = factory.user(Role.admin)
    viewer = factory.user(Role.viewer, password=PASSWORD)
    login(client, viewer.email, PASSWORD)
    with http_target() as web, FrozenClock(datetime.now(UTC)) as clock:
        created = admin.post(
            "/api/v1/probes",
            json={"name": "fresh", "kind": "http", "http": {"url": f"{web.url}/ok"}},
        )
        assert created.status_code == 201, created.text
        for _ in range(3):
            clock.advance(minutes=10)
            assert admin.post("/api/v1/probes/fresh/run").status_code == 200

        fitted = client.get("/probes/fresh")
        assert fitted.status_code == 200
        xs = _xs(fitted.text)
        assert len(xs) == 3
        assert xs[0] < 300 and xs[-1] == 748.0, xs  # 10, 20, 30 of 30 minutes: 287, 517, 748
        assert "since the probe was created" in fitted.text
        assert not re.search(r'range=\w+" aria-current', fitted.text)

        day = client.get("/probes/fresh?range=24h")
        assert min(_xs(day.text)) > 730  # the last 30 minutes of a day
        assert re.search(r'range=24h" aria-current="true"', day.text)
        hour = client.get("/probes/fresh?range=1h")
        assert _xs(hour.text)[0] == 517.3  # 40 of the hour's 60 minutes

        clock.advance(days=2)
        later = client.get("/probes/fresh")
        assert "since the probe was created" not in later.text
        assert re.search(r'range=24h" aria-current="true"', later.text)
        assert "No results in this range yet." in later.text


def test_the_hourly_charts_show_the_hours_not_rolled_up_yet(
    factory: Factory, client: TestClient
) -> None:
    """The 7 and 90 day charts read hourly roll-ups, written at minute 7 for the hours that
    ended: the last one or two hours, the current one included, come from the raw results,
    or an outage going on now would be missing from them."""
    admin = factory.user(Role.admin)
    viewer = factory.user(Role.viewer, password=PASSWORD)
    login(client, viewer.email, PASSWORD)
    start = datetime(2026, 3, 1, tzinfo=UTC)
    with FrozenClock(start) as clock:
        created = admin.post(
            "/api/v1/probes",
            json={"name": "api", "kind": "tcp", "tcp": {"host": "127.0.0.1", "port": 9}},
        )
        assert created.status_code == 201, created.text
        record(factory, start + timedelta(minutes=10), 20.0)
        record(factory, start + timedelta(minutes=40), 30.0)
        clock.advance(hours=1, minutes=20)
        maintain(factory)  # rolls up hour 00:00 only
        for minute in (85, 110, 125):  # 01:25, 01:50, 02:05: failing
            record(factory, start + timedelta(minutes=minute), 900.0, ok=False)
        clock.advance(minutes=50)  # 02:10

        for chosen in ("7d", "90d"):
            page = client.get(f"/probes/api?range={chosen}")
            assert page.status_code == 200
            p95 = re.search(r'<path class="series series-p95" d="([^"]+)"', page.text)
            assert p95, page.text
            assert len(re.findall(r"[ML]", p95.group(1))) == 3, p95.group(1)  # 00, 01, 02
            assert page.text.count('class="failure"') == 2  # hours 01:00 and 02:00
            assert "03-01 02:00: 1 of 1 failed" in page.text


def test_the_definition_shows_characters_as_they_are(factory: Factory, client: TestClient) -> None:
    admin = factory.user(Role.admin, password=PASSWORD)
    body = {"url": "http://127.0.0.1:9/", "method": "POST", "body": "it's <café> & co"}
    created = admin.post("/api/v1/probes", json={"name": "quoted", "kind": "http", "http": body})
    assert created.status_code == 201, created.text
    login(client, admin.email, PASSWORD)
    page = client.get("/probes/quoted").text
    definition = re.search(r"<h2>Definition</h2>\s*<pre>(.*?)</pre>", page, re.S)
    assert definition, page
    assert "it&#39;s &lt;café&gt; &amp; co" in definition.group(1)  # escaped once, as HTML
    assert "\\u" not in definition.group(1)
    assert json.loads(html.unescape(definition.group(1)))["body"] == "it's <café> & co"
