"""The signals console through HTTP: alerts (live panel, one-click silence), groups,
silences and maintenance windows, and the admins' integrations page with dead letters."""

from __future__ import annotations

import html
import json
import re
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from firetower import clock
from firetower.auth.schemas import Role
from firetower.runtime import Runtime
from firetower.signals import service as signals_service
from firetower.signals.models import Integration, MaintenanceWindow, Silence
from tests.factories import ApiUser, Factory, row_counts
from tests.signals_support import alert_by_fingerprint, incident_count
from tests.test_web_pages import HTML, PASSWORD, Console, login


# -- helpers -----------------------------------------------------------------------------------
def sign_in(factory: Factory, client: TestClient, role: Role) -> Console:
    email = f"{role.value}-web@example.com"
    factory.user(role, email=email, password=PASSWORD)
    assert login(client, email).status_code == 303
    return Console(client)


@pytest.fixture
def admin_api(factory: Factory) -> ApiUser:
    return factory.user(Role.admin)


@pytest.fixture
def responder(factory: Factory, client: TestClient) -> Console:
    return sign_in(factory, client, Role.responder)


def make_integration(admin: ApiUser, name: str, **fields: Any) -> str:
    body = {"name": name, "kind": "alertmanager", **fields}
    answer = admin.post("/api/v1/integrations", json=body)
    assert answer.status_code == 201, answer.text
    return str(answer.json()["key"])


def send(
    client: TestClient, key: str, fingerprint: str, status: str = "firing", **labels: str
) -> Any:
    alert = {
        "status": status,
        "labels": {"alertname": "HighLatency", **labels},
        "annotations": {"summary": f"{labels.get('alertname', 'HighLatency')} on {fingerprint}"},
        "startsAt": "2026-01-01T10:00:00Z",
        "endsAt": "0001-01-01T00:00:00Z" if status == "firing" else "2026-01-01T10:05:00Z",
        "fingerprint": fingerprint,
    }
    answer = client.post(
        f"/ingest/alertmanager/{key}", json={"version": "4", "status": status, "alerts": [alert]}
    )
    assert answer.status_code == 200, answer.text
    return answer.json()


def row_of(page: str, alert_id: int) -> str:
    found = re.search(rf'<tr id="alert-{alert_id}".*?</tr>', page, re.DOTALL)
    assert found, f"no row for alert {alert_id}"
    return found.group(0)


def alert_order(page: str) -> list[int]:
    return [int(n) for n in re.findall(r'<tr id="alert-(\d+)"', page)]


def silences(runtime: Runtime) -> list[Silence]:
    with runtime.read() as session:
        return list(session.scalars(select(Silence).order_by(Silence.id)))


# -- alerts ------------------------------------------------------------------------------------
def test_the_alert_list_puts_firing_first_with_its_facts_and_marks(
    responder: Console, factory: Factory, admin_api: ApiUser, runtime: Runtime
) -> None:
    factory.service("checkout")
    key = make_integration(admin_api, "am-prod", service_name="checkout", flap_threshold=2)
    send(factory.client, key, "fp-old", alertname="DiskFull")
    send(factory.client, key, "fp-old", "resolved", alertname="DiskFull")
    send(factory.client, key, "fp-hot", alertname="HighLatency", severity="critical")
    send(factory.client, key, "fp-hot", alertname="HighLatency", severity="critical")  # a repeat
    send(factory.client, key, "fp-flap", alertname="Flappy")
    send(factory.client, key, "fp-flap", "resolved", alertname="Flappy")  # 2 changes: flapping
    send(factory.client, key, "fp-flap", alertname="Flappy")
    old, hot = alert_by_fingerprint(runtime, "fp-old"), alert_by_fingerprint(runtime, "fp-hot")
    flap = alert_by_fingerprint(runtime, "fp-flap")
    assert flap.flapping

    page = responder.get("/alerts")
    assert page.status_code == 200
    order = alert_order(page.text)
    # firing first (newest first among them), the resolved one last, though seen earlier
    assert order == [flap.id, hot.id, old.id]
    hot_row = row_of(page.text, hot.id)
    assert "HighLatency" in hot_row and "checkout" in hot_row
    assert '<td class="num">2</td>' in hot_row  # the repeat counted, not a new row
    assert 'class="sev sev-sev1"' in hot_row  # critical maps to SEV1
    assert f'href="/incidents/INC-{hot.incident_id}"' in hot_row
    assert "alert-status-firing" in hot_row
    assert "mark-flapping" in row_of(page.text, flap.id)
    assert "mark-flapping" not in hot_row
    assert "alert-status-resolved" in row_of(page.text, old.id)
    assert "1 resolved" in page.text and "2 firing" in page.text
    # the panel polls itself
    assert 'hx-get="/alerts/panel"' in page.text
    assert 'hx-trigger="every 5s' in page.text


def test_an_alert_row_links_its_runbook_and_dashboard_and_shows_its_description(
    responder: Console, factory: Factory, admin_api: ApiUser, runtime: Runtime
) -> None:
    key = make_integration(admin_api, "graf", kind="grafana")
    alert = {
        "status": "firing",
        "labels": {"alertname": "DiskFull"},
        "annotations": {
            "summary": "Disk almost full",
            "description": "<b>92%</b> used & rising",
            "runbook_url": "https://runbooks.example.com/disk?team=a&b=1",
            "notes_url": "javascript:alert(document.cookie)",
            "wiki": "JavaScript:alert(1)",
            "page": "data:text/html,<script>alert(1)</script>",
            "relative": "/d/abc",
        },
        "dashboardURL": "http://grafana:3000/d/abc",
        "panelURL": "java\tscript:alert(1)",
        "fingerprint": "disk-1",
    }
    answer = factory.client.post(
        f"/ingest/grafana/{key}", json={"status": "firing", "alerts": [alert]}
    )
    assert answer.status_code == 200, answer.text
    row = row_of(responder.get("/alerts").text, alert_by_fingerprint(runtime, "disk-1").id)

    links = re.findall(r'<a href="([^"]*)" class="annotation-link"[^>]*>([^<]*)</a>', row)
    assert [(html.unescape(url), name) for url, name in links] == [
        ("https://runbooks.example.com/disk?team=a&b=1", "runbook_url"),
        ("http://grafana:3000/d/abc", "dashboardURL"),
    ]
    # only http(s) URLs become links, whatever their spelling
    hrefs = [html.unescape(h).lower() for h in re.findall(r'href="([^"]*)"', row)]
    assert not [h for h in hrefs if not h.startswith(("http://", "https://", "/incidents/"))]
    assert "<script>" not in row
    # the description, escaped; the summary is already the title, so not shown twice
    assert "&lt;b&gt;92%&lt;/b&gt; used &amp; rising" in row
    assert "<b>92%</b>" not in row
    assert row.count("Disk almost full") == 1


def test_the_alert_list_filters_by_status_and_integration(
    responder: Console, factory: Factory, admin_api: ApiUser, runtime: Runtime
) -> None:
    one = make_integration(admin_api, "am-one")
    two = make_integration(admin_api, "am-two")
    send(factory.client, one, "a1", alertname="OneFiring")
    send(factory.client, one, "a2", "resolved", alertname="OneResolved")
    send(factory.client, two, "b1", alertname="TwoFiring")

    firing = responder.get("/alerts?status=firing")
    assert "OneFiring" in firing.text and "TwoFiring" in firing.text
    assert "OneResolved" not in firing.text
    assert 'hx-get="/alerts/panel?status=firing"' in firing.text  # the poll keeps the filter
    only_two = responder.get("/alerts?integration=am-two")
    assert "TwoFiring" in only_two.text and "OneFiring" not in only_two.text
    both = responder.get("/alerts?integration=am-one&status=resolved")
    assert "OneResolved" in both.text and "OneFiring" not in both.text
    assert '<option value="am-one" selected>' in both.text  # the filters stay chosen
    assert '<option value="resolved" selected>' in both.text

    bad_status = responder.get("/alerts?status=burning")
    assert bad_status.status_code == 422
    assert 'data-field="status"' in bad_status.text
    unknown = responder.get("/alerts?integration=ghost")
    assert unknown.status_code == 404
    assert "no integration named &#39;ghost&#39;" in unknown.text


@pytest.mark.parametrize("sorted_at_most", [10_000, 0], ids=["sorted", "status-walk"])
def test_an_incident_page_shows_its_alerts_and_leads_to_the_list_of_them(
    responder: Console,
    factory: Factory,
    admin_api: ApiUser,
    runtime: Runtime,
    monkeypatch: pytest.MonkeyPatch,
    sorted_at_most: int,
) -> None:
    """At 3 a.m. the first question on an incident is which alerts still fire: its page
    counts them, shows the first few with their labels, and links to the alert list
    filtered to it, whose poll and silence forms keep that filter. The same either way
    SQLite may read them: the incident's alerts sorted, or a walk of each status's newest."""
    monkeypatch.setattr(signals_service, "SORTED_AT_MOST", sorted_at_most)
    for name in ("feed", "checkout"):
        factory.service(name)
    feed = make_integration(admin_api, "am-feed", service_name="feed")
    checkout = make_integration(admin_api, "am-checkout", service_name="checkout")
    send(factory.client, feed, "f1", alertname="FeedSlow", instance="feed-1", severity="critical")
    send(factory.client, feed, "f2", alertname="FeedSlow", instance="feed-2", severity="critical")
    send(factory.client, feed, "f2", "resolved", alertname="FeedSlow", instance="feed-2")
    send(factory.client, checkout, "c1", alertname="CheckoutDown", severity="critical")
    send(factory.client, feed, "f3", alertname="FeedSlow", instance="feed-3", severity="critical")
    f1, f2 = alert_by_fingerprint(runtime, "f1"), alert_by_fingerprint(runtime, "f2")
    c1, f3 = alert_by_fingerprint(runtime, "c1"), alert_by_fingerprint(runtime, "f3")
    assert f1.incident_id == f2.incident_id == f3.incident_id != c1.incident_id
    ref = f"INC-{f1.incident_id}"

    page = responder.get(f"/incidents/{ref}")
    assert page.status_code == 200
    box = re.search(r'<section class="incident-alerts">.*?</section>', page.text, re.DOTALL)
    assert box, "no alerts section on the incident page"
    assert "2 firing" in box.group(0) and "1 resolved" in box.group(0)
    shown = re.findall(r"instance=(feed-\d)", box.group(0))
    assert shown == ["feed-3", "feed-1", "feed-2"]  # firing first, each newest first
    assert "CheckoutDown" not in box.group(0)
    assert f'href="/alerts?incident={ref}"' in box.group(0)

    listed = responder.get(f"/alerts?incident={ref}&status=firing")
    assert alert_order(listed.text) == [f3.id, f1.id]
    assert f'hx-get="/alerts/panel?status=firing&amp;incident={ref}"' in listed.text
    assert '<a href="/alerts?status=firing">clear</a>' in listed.text  # keeps the status
    every = responder.get(f"/alerts/panel?incident={ref}").text
    assert alert_order(every) == [f3.id, f1.id, f2.id]
    assert alert_order(responder.get(f"/alerts?incident={ref}&status=resolved").text) == [f2.id]
    silenced = responder.post(
        f"/alerts/{f1.id}/silence",
        {"duration_minutes": "30", "status": "firing", "incident": ref},
    )
    assert silenced.status_code == 303
    assert silenced.headers["location"] == f"/alerts?status=firing&incident={ref}"

    declared = factory.incident(title="Declared by hand")
    manual = responder.get(f"/incidents/{declared}")
    assert 'class="incident-alerts"' not in manual.text  # no alerts, no empty box
    malformed = responder.get("/alerts?incident=feed")
    assert malformed.status_code == 422 and 'data-field="incident"' in malformed.text
    unknown = responder.get("/alerts?incident=INC-999")
    assert unknown.status_code == 404 and "no incident INC-999" in unknown.text


def test_the_polled_panel_is_a_fragment_showing_new_alerts(
    responder: Console, factory: Factory, admin_api: ApiUser
) -> None:
    key = make_integration(admin_api, "am-live")
    empty = responder.get("/alerts/panel")
    assert empty.status_code == 200
    assert empty.text.lstrip().startswith('<div id="alerts-panel"')
    assert "<html" not in empty.text
    assert "No alerts match" in empty.text
    send(factory.client, key, "new-1", alertname="JustArrived")
    fresh = responder.get("/alerts/panel?status=firing")
    assert "JustArrived" in fresh.text
    assert responder.get("/alerts/panel?status=nope").status_code == 422
    responder.post("/logout")
    assert responder.get("/alerts/panel").status_code == 303  # to the login page


def test_a_responder_silences_an_alert_in_one_click(
    responder: Console, factory: Factory, admin_api: ApiUser, runtime: Runtime
) -> None:
    factory.service("api")
    key = make_integration(admin_api, "am-api", service_name="api")
    send(factory.client, key, "lat-1", alertname="HighLatency", instance="api-1")
    alert = alert_by_fingerprint(runtime, "lat-1")
    page = responder.get("/alerts")
    row = row_of(page.text, alert.id)
    assert f'action="/alerts/{alert.id}/silence"' in row
    assert "mark-silenced" not in row

    answer = responder.post(
        f"/alerts/{alert.id}/silence",
        {"duration_minutes": "120", "comment": "known, fixing", "status": "firing"},
    )
    assert answer.status_code == 303
    assert answer.headers["location"] == "/alerts?status=firing"  # back to the same filter
    (silence,) = silences(runtime)
    assert sorted((m["label"], m["op"], m["value"]) for m in silence.matchers) == [
        ("alertname", "=", "HighLatency"),
        ("instance", "=", "api-1"),
    ]
    assert silence.comment == "known, fixing"
    assert silence.created_by == "responder-web@example.com"
    assert round((silence.ends_at - silence.starts_at).total_seconds()) == 7200

    after = responder.get(answer.headers["location"])
    assert f"Alert {alert.id} silenced (silence {silence.id})" in after.text
    row = row_of(after.text, alert.id)
    assert "mark-silenced" in row
    assert f'action="/alerts/{alert.id}/silence"' not in row  # nothing left to silence

    # The silence mutes it: a new firing of the same labels opens nothing.
    incidents_before = incident_count(runtime)
    send(factory.client, key, "lat-2", alertname="HighLatency", instance="api-1")
    assert incident_count(runtime) == incidents_before


@pytest.mark.parametrize(
    ("form", "status", "field"),
    [
        ({"duration_minutes": ""}, 422, "duration_minutes"),
        ({"duration_minutes": "soon"}, 422, "duration_minutes"),
        ({"duration_minutes": "0"}, 422, "duration_minutes"),
        ({"duration_minutes": "²"}, 422, "duration_minutes"),
        ({"duration_minutes": "99999999"}, 422, "duration_minutes"),
        ({"duration_minutes": "60", "comment": "bad\x00byte"}, 422, "comment"),
    ],
)
def test_a_bad_silence_form_shows_why_and_writes_nothing(
    responder: Console,
    factory: Factory,
    admin_api: ApiUser,
    runtime: Runtime,
    form: dict[str, str],
    status: int,
    field: str,
) -> None:
    key = make_integration(admin_api, "am-x")
    send(factory.client, key, "x-1")
    alert = alert_by_fingerprint(runtime, "x-1")
    before = row_counts(runtime)
    answer = responder.post(f"/alerts/{alert.id}/silence", form)
    assert answer.status_code == status
    assert f'data-field="{field}"' in answer.text
    assert f'id="alert-{alert.id}"' in answer.text  # the list is shown again
    assert row_counts(runtime) == before


def test_silencing_an_unknown_alert_is_refused(responder: Console, runtime: Runtime) -> None:
    before = row_counts(runtime)
    answer = responder.post("/alerts/9999/silence", {"duration_minutes": "60"})
    assert answer.status_code == 404
    assert "no alert 9999" in answer.text
    assert row_counts(runtime) == before


def test_a_viewer_sees_alerts_but_cannot_silence(
    factory: Factory, client: TestClient, admin_api: ApiUser, runtime: Runtime
) -> None:
    key = make_integration(admin_api, "am-v")
    send(factory.client, key, "v-1", alertname="Visible")
    alert = alert_by_fingerprint(runtime, "v-1")
    viewer = sign_in(factory, client, Role.viewer)
    page = viewer.get("/alerts")
    assert page.status_code == 200
    assert "Visible" in page.text
    assert "silence-form" not in page.text
    assert viewer.get("/alerts/groups").status_code == 200
    assert viewer.get("/silences").status_code == 200
    refused = viewer.post(f"/alerts/{alert.id}/silence", {"duration_minutes": "60"})
    assert refused.status_code == 403
    assert silences(runtime) == []


def test_a_silence_form_without_csrf_is_refused(
    responder: Console, factory: Factory, admin_api: ApiUser, runtime: Runtime
) -> None:
    key = make_integration(admin_api, "am-c")
    send(factory.client, key, "c-1")
    alert = alert_by_fingerprint(runtime, "c-1")
    answer = responder.client.post(
        f"/alerts/{alert.id}/silence", data={"duration_minutes": "60"}, headers=HTML
    )
    assert answer.status_code == 403
    assert silences(runtime) == []


def test_a_responder_acknowledges_then_resolves_an_alert_from_its_row(
    responder: Console, factory: Factory, admin_api: ApiUser, runtime: Runtime
) -> None:
    factory.service("api")
    key = make_integration(admin_api, "am-api", service_name="api")
    send(factory.client, key, "hand-1", alertname="HighLatency")
    alert = alert_by_fingerprint(runtime, "hand-1")
    row = row_of(responder.get("/alerts").text, alert.id)
    assert f'action="/alerts/{alert.id}/acknowledge"' in row
    assert f'action="/alerts/{alert.id}/resolve"' in row

    acked = responder.post(f"/alerts/{alert.id}/acknowledge", {"status": "acknowledged"})
    assert acked.status_code == 303
    assert acked.headers["location"] == "/alerts?status=acknowledged"  # back to the filter
    after = responder.get(acked.headers["location"])
    assert f"Alert {alert.id} acknowledged." in after.text
    row = row_of(after.text, alert.id)
    assert "alert-status-acknowledged" in row and "by responder-web@example.com" in row
    assert f'action="/alerts/{alert.id}/acknowledge"' not in row  # done already
    assert f'action="/alerts/{alert.id}/resolve"' in row

    resolved = responder.post(f"/alerts/{alert.id}/resolve")
    assert resolved.status_code == 303
    row = row_of(responder.get("/alerts").text, alert.id)
    assert "alert-status-resolved" in row and "by responder-web@example.com" in row
    assert "status-form" not in row  # nothing left to do by hand
    stored = alert_by_fingerprint(runtime, "hand-1")
    assert (stored.status, stored.status_by) == ("resolved", "responder-web@example.com")

    again = responder.post(f"/alerts/{alert.id}/resolve")  # a stale page's second click
    assert again.status_code == 303
    assert f"Alert {alert.id} was already resolved." in responder.get("/alerts").text


def test_a_refused_status_change_shows_why_on_the_list_and_writes_nothing(
    responder: Console, factory: Factory, admin_api: ApiUser, runtime: Runtime
) -> None:
    key = make_integration(admin_api, "am-r")
    send(factory.client, key, "r-1")
    send(factory.client, key, "r-1", "resolved")
    alert = alert_by_fingerprint(runtime, "r-1")
    before = row_counts(runtime)
    answer = responder.post(f"/alerts/{alert.id}/acknowledge")
    assert answer.status_code == 409
    assert f"alert {alert.id} is resolved" in answer.text
    assert f'id="alert-{alert.id}"' in answer.text  # the list is shown again
    unknown = responder.post("/alerts/9999/resolve")
    assert unknown.status_code == 404 and "no alert 9999" in unknown.text
    assert row_counts(runtime) == before
    assert alert_by_fingerprint(runtime, "r-1").status_by is None


def test_viewers_and_forms_without_csrf_cannot_set_an_alert_s_status(
    factory: Factory, client: TestClient, admin_api: ApiUser, runtime: Runtime
) -> None:
    key = make_integration(admin_api, "am-v")
    send(factory.client, key, "v-1")
    alert = alert_by_fingerprint(runtime, "v-1")
    viewer = sign_in(factory, client, Role.viewer)
    assert "status-form" not in viewer.get("/alerts").text
    for action in ("acknowledge", "resolve"):
        assert viewer.post(f"/alerts/{alert.id}/{action}").status_code == 403
    responder = sign_in(factory, client, Role.responder)
    no_token = responder.client.post(f"/alerts/{alert.id}/resolve", headers=HTML)
    assert no_token.status_code == 403
    assert alert_by_fingerprint(runtime, "v-1").status == "firing"


# -- groups ------------------------------------------------------------------------------------
def test_alert_groups_sum_up_by_group_key(
    responder: Console, factory: Factory, admin_api: ApiUser
) -> None:
    factory.service("web")
    key = make_integration(admin_api, "am-g", service_name="web", group_by=["alertname"])
    send(factory.client, key, "g1", alertname="Errors", instance="a")
    send(factory.client, key, "g2", alertname="Errors", instance="b")
    send(factory.client, key, "g3", "resolved", alertname="Errors", instance="c")
    send(factory.client, key, "g4", alertname="Saturation")
    page = responder.get("/alerts/groups")
    assert page.status_code == 200
    rows = re.findall(r'<tr class="alert-group.*?</tr>', page.text, re.DOTALL)
    assert len(rows) == 2
    errors = next(r for r in rows if "alertname=Errors" in r)
    assert re.findall(r'<td class="num[^"]*">(\d+)</td>', errors) == ["2", "1"]
    assert 'href="/incidents/INC-' in errors
    link = html.unescape(re.search(r'href="(/alerts\?[^"]+)"', errors).group(1))
    assert link == "/alerts?integration=am-g&group=alertname%3DErrors"
    grouped = responder.get(link)
    assert len(alert_order(grouped.text)) == 3
    assert "Saturation" not in grouped.text
    assert responder.get("/alerts/groups?integration=ghost").status_code == 404


def test_a_group_whose_labels_hold_separators_links_to_its_own_alerts(
    responder: Console, factory: Factory, admin_api: ApiUser
) -> None:
    key = make_integration(admin_api, "am-s", group_by=["alertname", "team"])
    send(factory.client, key, "joined", alertname="Errors,team=db")
    send(factory.client, key, "apart", alertname="Errors", team="db")
    page = responder.get("/alerts/groups")
    rows = re.findall(r'<tr class="alert-group.*?</tr>', page.text, re.DOTALL)
    assert len(rows) == 2
    for row in rows:
        link = html.unescape(re.search(r'href="(/alerts\?[^"]+)"', row).group(1))
        listed = responder.get(link)
        assert listed.status_code == 200
        assert len(alert_order(listed.text)) == 1, link
    assert "alertname=Errors\\,team\\=db" in html.unescape(page.text)


def test_the_group_of_alerts_without_group_labels_links_to_those_alerts_only(
    responder: Console, factory: Factory, admin_api: ApiUser
) -> None:
    """Alerts lacking every group-by label share the group "" (shown "(all)"); its link must
    list them, not every alert of the integration, and the live panel must keep to them."""
    key = make_integration(admin_api, "am-t", group_by=["team"])
    send(factory.client, key, "owned", alertname="Errors", team="db")
    send(factory.client, key, "stray", alertname="Errors")
    page = responder.get("/alerts/groups")
    rows = re.findall(r'<tr class="alert-group.*?</tr>', page.text, re.DOTALL)
    row = next(r for r in rows if "(all)" in r)
    assert re.findall(r'<td class="num[^"]*">(\d+)</td>', row) == ["1", "0"]
    link = html.unescape(re.search(r'href="(/alerts\?[^"]+)"', row).group(1))
    listed = responder.get(link)
    assert listed.status_code == 200
    stray = alert_by_fingerprint(factory.runtime, "stray")
    assert alert_order(listed.text) == [stray.id]
    panel = html.unescape(re.search(r'hx-get="([^"]+)"', listed.text).group(1))
    assert alert_order(responder.get(panel).text) == [stray.id]
    assert '<input type="hidden" name="group" value="">' in listed.text  # kept by a silence
    assert len(alert_order(responder.get("/alerts?integration=am-t").text)) == 2


def test_the_counts_above_a_group_count_that_group(
    responder: Console, factory: Factory, admin_api: ApiUser
) -> None:
    """The firing/acknowledged/resolved counts sum up the list under them: filtered to one
    group, they count that group, not the whole integration."""
    key = make_integration(admin_api, "am-c", group_by=["alertname"])
    send(factory.client, key, "e1", alertname="Errors")
    send(factory.client, key, "e2", "resolved", alertname="Errors")
    for fingerprint in ("s1", "s2", "s3"):
        send(factory.client, key, fingerprint, alertname="Saturation")

    def counts(url: str) -> list[str]:
        return re.findall(r'class="count count-\w+">(\d+ \w+)</span>', responder.get(url).text)

    group = "/alerts?integration=am-c&group=alertname%3DErrors"
    assert counts(group) == ["1 firing", "0 acknowledged", "1 resolved"]
    assert counts("/alerts?integration=am-c") == ["4 firing", "0 acknowledged", "1 resolved"]


def test_a_resolved_alert_is_not_marked_silenced_or_in_maintenance(
    responder: Console, factory: Factory, admin_api: ApiUser, runtime: Runtime
) -> None:
    """Silences and windows mute firing alerts; the marks say why an unresolved alert pages
    nobody, so a resolved one under a matching silence or window shows neither."""
    factory.service("web")
    key = make_integration(admin_api, "am-r", service_name="web")
    send(factory.client, key, "over", "resolved", alertname="Gone", service="web")
    send(factory.client, key, "live", alertname="Gone", instance="b")
    ends = (clock.now() + timedelta(hours=1)).isoformat()
    silence = {"matchers": [{"label": "alertname", "op": "=", "value": "Gone"}], "ends_at": ends}
    assert admin_api.post("/api/v1/silences", json=silence).status_code == 201
    window = {"service_name": "web", "ends_at": ends}
    assert admin_api.post("/api/v1/maintenance-windows", json=window).status_code == 201
    page = responder.get("/alerts").text
    over = row_of(page, alert_by_fingerprint(runtime, "over").id)
    assert "mark-silenced" not in over and "mark-maintenance" not in over
    assert "muted" not in over.split(">", 1)[0]
    live = row_of(page, alert_by_fingerprint(runtime, "live").id)
    assert "mark-silenced" in live and "mark-maintenance" in live


# -- silences and maintenance windows ----------------------------------------------------------
def test_silences_are_created_with_matchers_listed_and_expired(
    responder: Console, runtime: Runtime
) -> None:
    answer = responder.post(
        "/silences",
        {
            "matchers": 'alertname=HighLatency\nservice=~"api|web"\nseverity!=info\nenv!~dev.*\n',
            "duration_minutes": "60",
            "comment": "deploy <v2>",
        },
    )
    assert answer.status_code == 303, answer.text
    (silence,) = silences(runtime)
    assert [(m["label"], m["op"], m["value"]) for m in silence.matchers] == [
        ("alertname", "=", "HighLatency"),
        ("service", "=~", "api|web"),
        ("severity", "!=", "info"),
        ("env", "!~", "dev.*"),
    ]
    assert silence.starts_at <= clock.now() < silence.ends_at
    page = responder.get("/silences")
    assert "Silence 1 created." in page.text
    row = re.search(r'<tr id="silence-1".*?</tr>', page.text, re.DOTALL).group(0)
    assert "active" in row
    assert "<code>service=~&#34;api|web&#34;</code>" in row
    assert "deploy &lt;v2&gt;" in row  # escaped, never markup

    assert responder.post("/silences/1/expire").status_code == 303
    assert silences(runtime)[0].expired_at is not None
    assert 'id="silence-1"' not in responder.get("/silences").text  # only active by default
    shown = responder.get("/silences?all=true").text
    assert re.search(r'<tr id="silence-1" class="silence silence-expired"', shown)
    assert responder.post("/silences/42/expire").status_code == 404


def test_a_silence_with_an_end_date_and_a_later_start_is_pending(
    responder: Console, runtime: Runtime
) -> None:
    later = clock.now().replace(tzinfo=None, second=0, microsecond=0) + timedelta(days=30)
    answer = responder.post(
        "/silences",
        {
            "matchers": "team=payments",
            "starts_at": later.isoformat(timespec="minutes"),
            "ends_at": (later + timedelta(hours=3)).isoformat(timespec="minutes"),
        },
    )
    assert answer.status_code == 303, answer.text
    shown = responder.get("/silences").text  # scheduled: listed by default
    assert 'class="silence silence-pending"' in shown
    assert "<code>team=&#34;payments&#34;</code>" in shown


@pytest.mark.parametrize(
    ("form", "field", "message"),
    [
        ({"matchers": ""}, "matchers", "give at least one"),
        ({"matchers": "alertname"}, "matchers", "is not label=value"),
        ({"matchers": "alertname=~(unclosed"}, "matchers", "not a valid regular expression"),
        ({"matchers": "a=b", "ends_at": "2001-01-01T00:00"}, "ends_at", "in the future"),
        (
            {"matchers": "a=b", "starts_at": "2999-01-02T00:00", "ends_at": "2999-01-01T00:00"},
            "ends_at",
            "after starts_at",
        ),
        ({"matchers": "a=b", "ends_at": "next week"}, "ends_at", "not a date and time"),
        ({"matchers": "a=b", "duration_minutes": "0"}, "duration_minutes", "choose a duration"),
        ({"matchers": "a=b", "duration_minutes": "²"}, "duration_minutes", "choose a duration"),
        (
            {"matchers": "a=b", "starts_at": "9999-12-31T23:30", "duration_minutes": "60"},
            "starts_at",
            "too far in the future",
        ),
        ({"matchers": "a=b", "duration_minutes": "60", "comment": "x" * 2001}, "comment", ""),
    ],
)
def test_a_bad_silence_is_refused_with_its_reason(
    responder: Console, runtime: Runtime, form: dict[str, str], field: str, message: str
) -> None:
    form = {"duration_minutes": "60", **form}
    before = row_counts(runtime)
    answer = responder.post("/silences", form)
    assert answer.status_code == 422
    assert f'data-field="{field}"' in answer.text
    assert message in html.unescape(answer.text)
    assert '<details class="form-box" open>' in answer.text  # the form is open again
    assert row_counts(runtime) == before


def test_a_viewer_sees_silences_but_cannot_change_them(
    factory: Factory, client: TestClient, runtime: Runtime
) -> None:
    responder = sign_in(factory, client, Role.responder)
    assert (
        responder.post("/silences", {"matchers": "a=b", "duration_minutes": "60"}).status_code
        == 303
    )
    responder.post("/logout")
    viewer = sign_in(factory, client, Role.viewer)
    page = viewer.get("/silences")
    assert 'id="silence-1"' in page.text
    assert 'action="/silences"' not in page.text and "Expire" not in page.text
    assert (
        viewer.post("/silences", {"matchers": "c=d", "duration_minutes": "60"}).status_code == 403
    )
    assert viewer.post("/silences/1/expire").status_code == 403
    assert viewer.post("/maintenance-windows", {"service_name": "x"}).status_code == 403
    assert len(silences(runtime)) == 1 and silences(runtime)[0].expired_at is None


def test_maintenance_windows_are_planned_listed_and_deleted(
    responder: Console, factory: Factory, runtime: Runtime
) -> None:
    factory.service("billing")
    before = row_counts(runtime)
    unknown = responder.post(
        "/maintenance-windows", {"service_name": "ghost", "duration_minutes": "60"}
    )
    assert unknown.status_code == 422
    assert "no service named &#39;ghost&#39;" in unknown.text
    blank = responder.post("/maintenance-windows", {"service_name": "", "duration_minutes": "60"})
    assert blank.status_code == 422 and 'data-field="service_name"' in blank.text
    assert row_counts(runtime) == before

    made = responder.post(
        "/maintenance-windows",
        {"service_name": "billing", "duration_minutes": "240", "comment": "db upgrade"},
    )
    assert made.status_code == 303
    page = responder.get("/silences")
    assert "Maintenance window 1 for billing planned." in page.text
    row = re.search(r'<tr id="window-1">.*?</tr>', page.text, re.DOTALL).group(0)
    assert "billing" in row and "active" in row and "db upgrade" in row
    assert responder.post("/maintenance-windows/1/delete").status_code == 303
    with runtime.read() as session:
        assert session.scalars(select(MaintenanceWindow)).all() == []
    assert responder.post("/maintenance-windows/1/delete").status_code == 404


def test_an_alert_of_a_service_in_maintenance_is_marked(
    responder: Console, factory: Factory, admin_api: ApiUser, runtime: Runtime
) -> None:
    factory.service("search")
    key = make_integration(admin_api, "am-s", service_name="search")
    send(factory.client, key, "s-1", alertname="SlowSearch")
    alert = alert_by_fingerprint(runtime, "s-1")
    responder.post("/maintenance-windows", {"service_name": "search", "duration_minutes": "60"})
    row = row_of(responder.get("/alerts").text, alert.id)
    assert "mark-maintenance" in row
    assert "silence-form" not in row


def test_alerts_that_open_nothing_say_why(
    responder: Console, factory: Factory, admin_api: ApiUser, runtime: Runtime
) -> None:
    """At 3 a.m. a firing alert without an incident must say why: inhibited, notify only
    (and that nothing was delivered), dropped, or waiting for an incident to join."""

    def rule(name: str, value: str, action: str) -> None:
        matchers = [{"label": "kind", "op": "=", "value": value}]
        answer = admin_api.post(
            "/api/v1/routing-rules", json={"name": name, "matchers": matchers, "action": action}
        )
        assert answer.status_code == 201, answer.text

    factory.service("infra")
    key = make_integration(admin_api, "am-why", service_name="infra")
    rule("tell-only", "fyi", "notify")
    rule("noise", "noise", "drop")
    rule("join-only", "join", "attach")
    inhibit = {
        "name": "node-down",
        "source_matchers": [{"label": "alertname", "op": "=", "value": "NodeDown"}],
        "target_matchers": [{"label": "alertname", "op": "=", "value": "HighLatency"}],
        "equal": ["node"],
    }
    assert admin_api.post("/api/v1/inhibit-rules", json=inhibit).status_code == 201
    send(factory.client, key, "w-fyi", kind="fyi")
    send(factory.client, key, "w-noise", kind="noise")
    send(factory.client, key, "w-join", kind="join")  # no open incident of infra to join yet
    send(factory.client, key, "w-down", alertname="NodeDown", node="n1")  # opens an incident
    send(factory.client, key, "w-slow", node="n1")  # HighLatency on n1: inhibited

    page = responder.get("/alerts").text
    marks = {
        fingerprint: row_of(page, alert_by_fingerprint(runtime, fingerprint).id)
        for fingerprint in ("w-fyi", "w-noise", "w-join", "w-down", "w-slow")
    }
    assert "mark-notify" in marks["w-fyi"] and "not delivered" in marks["w-fyi"]
    assert "dropped by noise" in marks["w-noise"]
    assert "mark-waiting" in marks["w-join"]
    down = alert_by_fingerprint(runtime, "w-down")
    assert "mark-inhibited" in marks["w-slow"]
    assert f"Muted by alert {down.id} (inhibition rule node-down)" in marks["w-slow"]
    assert "mark mark-" not in marks["w-down"]  # it opened its incident: nothing to explain
    assert down.incident_id is not None


def test_an_alert_with_no_known_service_says_so_and_routes_once_it_has_one(
    responder: Console, factory: Factory, admin_api: ApiUser, runtime: Runtime
) -> None:
    """A critical alert whose service label is a typo, from an integration that names no
    service, opened nothing and showed no reason: it paged nobody, silently. It is marked,
    and once a routing rule gives it a service its next repeat opens the incident."""
    factory.service("payments")
    key = make_integration(admin_api, "am-loose")  # no service of its own
    send(factory.client, key, "typo", alertname="DiskFull", service="paymnets")
    alert = alert_by_fingerprint(runtime, "typo")
    assert alert.incident_id is None and alert.service_name is None
    row = row_of(responder.get("/alerts").text, alert.id)
    assert "mark-no-service" in row and "no service · opens nothing" in row
    assert "its service label names paymnets, which the catalog does not know" in row

    rule = {
        "name": "disk-to-payments",
        "matchers": [{"label": "alertname", "op": "=", "value": "DiskFull"}],
        "service": "payments",
    }
    assert admin_api.post("/api/v1/routing-rules", json=rule).status_code == 201
    send(factory.client, key, "typo", alertname="DiskFull", service="paymnets")  # a repeat
    routed = alert_by_fingerprint(runtime, "typo")
    assert routed.service_name == "payments" and routed.incident_id is not None
    assert "mark-no-service" not in row_of(responder.get("/alerts").text, alert.id)


# -- integrations (admins) ---------------------------------------------------------------------
def test_integrations_are_for_admins(responder: Console, runtime: Runtime) -> None:
    assert responder.get("/integrations").status_code == 403
    assert 'href="/integrations"' not in responder.get("/alerts").text
    before = row_counts(runtime)
    refused = responder.post("/integrations", {"name": "sneaky", "kind": "alertmanager"})
    assert refused.status_code == 403
    assert row_counts(runtime) == before


@pytest.fixture
def admin(factory: Factory, client: TestClient) -> Console:
    return sign_in(factory, client, Role.admin)


def shown_key(page: str) -> str:
    found = re.search(r'<code class="key" id="new-key">([0-9a-f]{32})</code>', page)
    assert found, "no key on the page"
    return found.group(1)


def ingest_status(client: TestClient, key: str) -> int:
    body = {
        "version": "4",
        "status": "firing",
        "alerts": [{"status": "firing", "labels": {"a": "b"}}],
    }
    return int(client.post(f"/ingest/alertmanager/{key}", json=body).status_code)


def test_an_admin_creates_rotates_and_revokes_an_integration(
    admin: Console, factory: Factory, runtime: Runtime
) -> None:
    factory.service("checkout")
    assert 'href="/integrations"' in admin.get("/alerts").text
    created = admin.post(
        "/integrations",
        {
            "name": "prom-prod",
            "kind": "alertmanager",
            "service_name": "checkout",
            "group_by": "alertname, cluster",
            "flap_threshold": "4",
            "flap_window_seconds": "300",
        },
    )
    assert created.status_code == 201, created.text
    assert created.headers["cache-control"] == "no-store"  # no cache keeps the key
    key = shown_key(created.text)
    assert f"/ingest/alertmanager/{key}" in created.text
    assert ingest_status(factory.client, key) == 200
    with runtime.read() as session:
        made = session.scalar(select(Integration).where(Integration.name == "prom-prod"))
        assert made is not None
        assert (made.service_name, made.group_by) == ("checkout", ["alertname", "cluster"])
        assert (made.flap_threshold, made.flap_window_seconds) == (4, 300)
    listed = admin.get("/integrations")
    assert 'id="integration-prom-prod"' in listed.text
    assert key[:8] + "…" in listed.text
    assert key not in listed.text  # shown once, never again

    rotated = admin.post("/integrations/prom-prod/rotate")
    assert rotated.status_code == 200
    assert rotated.headers["cache-control"] == "no-store"
    new_key = shown_key(rotated.text)
    assert new_key != key
    assert ingest_status(factory.client, key) == 401
    assert ingest_status(factory.client, new_key) == 200

    revoked = admin.post("/integrations/prom-prod/revoke")
    assert revoked.status_code == 303
    page = admin.get("/integrations")
    assert "Integration prom-prod revoked" in page.text
    assert "revoked-mark" in page.text
    assert ingest_status(factory.client, new_key) == 401
    assert admin.post("/integrations/prom-prod/rotate").status_code == 409
    assert admin.post("/integrations/ghost/revoke").status_code == 404


def test_rotating_a_key_asks_first_as_revoking_does(admin: Console, factory: Factory) -> None:
    """Rotate sat beside Revoke with no question asked, though it breaks the sender as
    surely: its key is refused at once, and the new one is on that page only."""
    created = admin.post("/integrations", {"name": "prom-prod", "kind": "alertmanager"})
    assert created.status_code == 201, created.text
    page = admin.get("/integrations").text
    for action, question in (
        ("rotate", "Rotate the key of prom-prod? Its current key stops working at once"),
        ("revoke", "Revoke prom-prod? Its key stops working at once."),
    ):
        form = re.search(
            rf'<form method="post" action="/integrations/prom-prod/{action}"[^>]*>', page
        )
        assert form, action
        assert f"confirm('{question}" in form.group(0), form.group(0)


def test_a_generic_integration_takes_its_mapping_from_the_form(
    admin: Console, factory: Factory, runtime: Runtime
) -> None:
    created = admin.post(
        "/integrations",
        {"name": "hooks", "kind": "generic", "map_title": "event.name", "map_status": "state"},
    )
    assert created.status_code == 201, created.text
    key = shown_key(created.text)
    assert f"/ingest/generic/{key}" in created.text
    answer = factory.client.post(
        f"/ingest/generic/{key}", json={"event": {"name": "Queue stuck"}, "state": "open"}
    )
    assert answer.status_code == 200, answer.text
    assert "Queue stuck" in admin.get("/alerts").text


@pytest.mark.parametrize(
    ("form", "status", "field"),
    [
        ({"name": "Bad Name", "kind": "alertmanager"}, 422, "name"),
        ({"name": "ok", "kind": "carrier-pigeon"}, 422, "kind"),
        ({"name": "ok", "kind": "generic"}, 422, "mapping"),  # a generic one needs one
        ({"name": "ok", "kind": "alertmanager", "map_title": "x"}, 422, "mapping"),
        ({"name": "ok", "kind": "generic", "map_title": "a[["}, 422, "mapping.title"),
        ({"name": "ok", "kind": "alertmanager", "service_name": "ghost"}, 422, "service_name"),
        ({"name": "ok", "kind": "alertmanager", "group_by": "a, a"}, 422, "group_by"),
        ({"name": "ok", "kind": "alertmanager", "flap_threshold": "1"}, 422, "flap_threshold"),
        ({"name": "taken", "kind": "alertmanager"}, 409, "name"),
    ],
)
def test_a_bad_integration_form_is_refused_and_changes_nothing(
    admin: Console, runtime: Runtime, form: dict[str, str], status: int, field: str
) -> None:
    assert admin.post("/integrations", {"name": "taken", "kind": "pagerduty"}).status_code == 201
    before = row_counts(runtime)
    answer = admin.post("/integrations", form)
    assert answer.status_code == status, answer.text
    assert f'data-field="{field}"' in answer.text
    assert 'id="new-key"' not in answer.text
    assert row_counts(runtime) == before


def test_dead_letters_show_the_reason_and_a_bounded_preview(
    admin: Console, factory: Factory
) -> None:
    key = shown_key(admin.post("/integrations", {"name": "am", "kind": "alertmanager"}).text)
    broken = b"{not json <script>" + b"x" * 5000
    answer = factory.client.post(
        f"/ingest/alertmanager/{key}", content=broken, headers={"content-type": "application/json"}
    )
    assert answer.status_code == 400
    large = factory.client.post(
        f"/ingest/alertmanager/{key}",
        content=b"{" + b"y" * 99_999,
        headers={"content-type": "application/json"},
    )
    assert large.status_code == 400
    invalid = factory.client.post(f"/ingest/alertmanager/{key}", json={"status": "melting"})
    assert invalid.status_code == 422
    page = admin.get("/integrations").text
    rows = re.findall(r'<tr id="dead-letter-\d+">.*?</tr>', page, re.DOTALL)
    assert len(rows) == 3
    newest, largest, oldest = rows
    assert "status" in newest and "melting" in newest
    assert "the body is not valid JSON" in oldest
    assert "5,018 bytes</summary>" in oldest
    assert "100,000 bytes (the first 65,536 kept)</summary>" in largest
    preview = re.search(r'<pre class="body-preview">(.*?)</pre>', oldest, re.DOTALL).group(1)
    assert preview.startswith("{not json &lt;script&gt;")  # shown as text
    assert preview.count("x") < 2100 and preview.endswith("…")


def test_a_dead_letter_whose_routing_key_was_hidden_is_not_shown_cut(
    admin: Console, factory: Factory
) -> None:
    """A PagerDuty body is kept with its routing key replaced by ``[routing key]``, shorter
    than the key: the size kept was below the size received, which the page read as a body
    cut to its start ("(the first 88 kept)") and the API as ``truncated``."""
    key = shown_key(admin.post("/integrations", {"name": "pd", "kind": "pagerduty"}).text)
    event = {"routing_key": key, "event_action": "trigger", "payload": {"summary": "x"}}
    sent = json.dumps(event).encode()
    answer = factory.client.post(
        "/v2/enqueue", content=sent, headers={"content-type": "application/json"}
    )
    assert answer.status_code == 400, answer.text
    page = admin.get("/integrations").text
    [row] = re.findall(r'<tr id="dead-letter-\d+">.*?</tr>', page, re.DOTALL)
    assert f"{len(sent):,} bytes</summary>" in row
    assert "[routing key]" in html.unescape(row) and key not in row
    [listed] = factory.user(Role.admin).get("/api/v1/rejected-payloads").json()
    assert (listed["received_bytes"], listed["truncated"]) == (len(sent), False)
    assert listed["body"] == sent.decode().replace(key, "[routing key]")
