"""The web console through HTTP: login, every page, every form, and the live timeline stream."""

from __future__ import annotations

import html
import re
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event

from firetower import clock
from firetower.auth import service as auth_service
from firetower.auth.schemas import Role
from firetower.auth.service import Actor
from firetower.clock import FrozenClock
from firetower.incidents import service as incident_service
from firetower.incidents.lifecycle import Status, allowed_transitions
from firetower.jobs import JobContext, Worker, dead_letters, enqueue, worker_status
from firetower.runtime import Runtime
from tests.factories import SYSTEM, Factory
from tests.test_jobs import wait_for

PASSWORD = "correct horse battery staple"
HTML = {"accept": "text/html"}
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


class Console:
    """A browser-like session: cookies in the client, the CSRF token read from pages."""

    def __init__(self, client: TestClient) -> None:
        self.client = client

    def csrf(self, page: str = "/") -> str:
        answer = self.client.get(page, headers=HTML)
        assert answer.status_code == 200, answer.text
        match = CSRF.search(answer.text)
        assert match, f"no CSRF token on {page}"
        return match.group(1)

    def get(self, url: str, **kwargs: Any) -> Any:
        return self.client.get(url, headers=HTML, follow_redirects=False, **kwargs)

    def post(self, url: str, data: dict[str, Any] | None = None, **kwargs: Any) -> Any:
        form = {"csrf_token": self.csrf(), **(data or {})}
        return self.client.post(url, data=form, headers=HTML, follow_redirects=False, **kwargs)


def login(client: TestClient, email: str, password: str = PASSWORD, next_: str = "/") -> Any:
    page = client.get(f"/login?next={next_}", headers=HTML)
    token = CSRF.search(page.text)
    assert token, page.text
    return client.post(
        "/login",
        data={"email": email, "password": password, "csrf_token": token.group(1), "next": next_},
        headers=HTML,
        follow_redirects=False,
    )


@pytest.fixture
def console(factory: Factory, client: TestClient) -> Console:
    user = factory.user(Role.responder, email="ana@example.com", password=PASSWORD)
    assert login(client, user.email).status_code == 303
    return Console(client)


def incident_count(runtime: Runtime) -> int:
    with runtime.read() as session:
        return len(incident_service.list_incidents(session, limit=200).items)


def timeline_texts(runtime: Runtime, ref: str) -> list[str]:
    with runtime.read() as session:
        incident = incident_service.get_incident(session, ref)
        return [e.text for e in incident_service.timeline(session, incident)]


def status_of(runtime: Runtime, ref: str) -> str:
    with runtime.read() as session:
        return incident_service.get_incident(session, ref).status


# -- login ---------------------------------------------------------------------------------
def test_login_with_the_right_password_opens_the_console(factory, client):
    factory.user(Role.responder, email="ana@example.com", password=PASSWORD)
    answer = login(client, "ana@example.com")
    assert answer.status_code == 303
    assert answer.headers["location"] == "/"
    page = client.get("/", headers=HTML)
    assert page.status_code == 200
    assert "ana@example.com" in page.text
    assert 'action="/logout"' in page.text


def test_login_with_a_wrong_password_is_refused(factory, client):
    factory.user(Role.responder, email="ana@example.com", password=PASSWORD)
    answer = login(client, "ana@example.com", "not the password at all")
    assert answer.status_code == 401
    assert "wrong email or password" in answer.text
    assert client.get("/", headers=HTML, follow_redirects=False).status_code == 303


def test_a_page_without_a_session_redirects_to_login_and_back(factory, client):
    ref = factory.incident(title="Checkout down")
    answer = client.get(f"/incidents/{ref}", headers=HTML, follow_redirects=False)
    assert answer.status_code == 303
    assert answer.headers["location"] == f"/login?next=%2Fincidents%2F{ref}"
    factory.user(Role.responder, email="ana@example.com", password=PASSWORD)
    back = login(client, "ana@example.com", next_=f"/incidents/{ref}")
    assert back.headers["location"] == f"/incidents/{ref}"


@pytest.mark.parametrize(
    "target", ["//evil.example/", "https://evil.example/", "/\\evil.example", "javascript:x"]
)
def test_login_never_redirects_off_site(factory, client, target):
    factory.user(Role.responder, email="ana@example.com", password=PASSWORD)
    answer = login(client, "ana@example.com", next_=target)
    assert answer.status_code == 303
    assert answer.headers["location"] == "/"


def test_logout_ends_the_session(console):
    answer = console.post("/logout")
    assert answer.status_code == 303
    assert console.get("/").status_code == 303


def test_a_form_without_the_csrf_token_is_refused(console, runtime):
    answer = console.client.post(
        "/incidents/new", data={"title": "Forged", "severity": "SEV2"}, headers=HTML
    )
    assert answer.status_code == 403
    assert "CSRF" in answer.text
    assert incident_count(runtime) == 0


# -- incidents -----------------------------------------------------------------------------
def test_the_list_filters_and_pages(console, factory):
    factory.service("checkout")
    for n in range(27):
        factory.incident(title=f"Routine {n}")
    factory.incident(title="Checkout on fire", services=["checkout"], severity="SEV1")
    first = console.get("/")
    assert first.status_code == 200
    assert first.text.count('href="/incidents/INC-') == 2 * 25  # ref and title link
    link = re.search(r'href="([^"]+)" class="next-page"', first.text)
    assert link
    second = console.get(html.unescape(link.group(1)))
    assert second.text.count('href="/incidents/INC-') == 2 * 3
    only = console.get("/?service=checkout&severity=SEV1")
    assert "Checkout on fire" in only.text
    assert "Routine" not in only.text
    texts = console.get("/?q=fire")
    assert "Checkout on fire" in texts.text and "Routine 1<" not in texts.text
    unknown = console.get("/?service=nope")
    assert unknown.status_code == 404
    assert "no service named" in html.unescape(unknown.text)


def test_the_declare_form_creates_an_incident(console, factory, runtime):
    factory.service("checkout", tier=2)
    form = console.get("/incidents/new")
    assert "Critical: core service down" in form.text  # the configured meaning of SEV1
    answer = console.post(
        "/incidents/new",
        {
            "title": "Checkout is slow",
            "severity": "SEV3",
            "services": ["checkout"],
            "summary": "p99 up 10x",
            "source": "manual",
            "impact_started_at": "2020-01-01T10:00",
            "revenue_at_risk": "true",
        },
    )
    assert answer.status_code == 303
    ref = answer.headers["location"].removeprefix("/incidents/")
    with runtime.read() as session:
        shown = incident_service.read(session, incident_service.get_incident(session, ref))
    assert shown.title == "Checkout is slow"
    assert shown.services == ["checkout"]
    assert shown.revenue_at_risk
    assert shown.severity == "SEV1"  # revenue at risk: the policy raised it
    assert shown.impact_started_at is not None and shown.impact_started_at.year == 2020
    page = console.get(answer.headers["location"])
    assert "Checkout is slow" in page.text


@pytest.mark.parametrize(
    ("form", "field"),
    [
        ({"title": "", "severity": "SEV2"}, "title"),
        ({"title": "x", "severity": "SEV9"}, "severity"),
        ({"title": "x", "severity": "SEV2", "services": ["ghost"]}, "services"),
        ({"title": "x", "severity": "SEV2", "impact_started_at": "yesterday"}, "impact_started_at"),
        ({"title": "x", "severity": "SEV2", "impact_started_at": "2999-01-01T00:00"}, "impact"),
    ],
)
def test_a_bad_declare_form_names_the_field_and_writes_nothing(console, runtime, form, field):
    answer = console.post("/incidents/new", form)
    assert answer.status_code in (404, 422)
    assert f'data-field="{field}' in answer.text
    assert 'name="title"' in answer.text  # the form is shown again
    assert incident_count(runtime) == 0


def transition_buttons(page: str) -> set[str]:
    return set(re.findall(r'name="to" value="([a-z]+)"', page))


def test_transition_buttons_are_exactly_the_allowed_ones(console, factory, runtime):
    ref = factory.incident(title="Queue backlog")
    page = console.get(f"/incidents/{ref}")
    assert transition_buttons(page.text) == {s.value for s in allowed_transitions(Status.triage)}
    answer = console.post(f"/incidents/{ref}/transition", {"to": "mitigated"})
    assert answer.status_code == 303
    page = console.get(f"/incidents/{ref}")
    assert transition_buttons(page.text) == {s.value for s in allowed_transitions(Status.mitigated)}
    assert status_of(runtime, ref) == "mitigated"


def test_a_refused_transition_shows_why_and_changes_nothing(console, factory, runtime):
    ref = factory.incident(title="Queue backlog")
    before = timeline_texts(runtime, ref)
    answer = console.post(f"/incidents/{ref}/transition", {"to": "closed"})
    assert answer.status_code == 409
    assert "cannot go from triage to closed" in answer.text
    assert status_of(runtime, ref) == "triage"
    assert timeline_texts(runtime, ref) == before


def test_severity_is_changed_from_the_incident_page(console, factory, runtime):
    ref = factory.incident(title="Slow search", severity="SEV3")
    assert 'action="/incidents/' + ref + '/severity"' in console.get(f"/incidents/{ref}").text
    assert console.post(f"/incidents/{ref}/severity", {"severity": "SEV2"}).status_code == 303
    with runtime.read() as session:
        incident = incident_service.get_incident(session, ref)
        assert incident.severity == "SEV2"
        entries = incident_service.timeline(session, incident)
    assert (entries[-1].kind, entries[-1].after) == ("severity_changed", {"severity": "SEV2"})
    before = timeline_texts(runtime, ref)
    refused = console.post(f"/incidents/{ref}/severity", {"severity": "SEV9"})
    assert refused.status_code == 422
    assert "unknown severity" in refused.text
    assert timeline_texts(runtime, ref) == before


def test_merging_needs_a_target(console, factory, runtime):
    survivor = factory.incident(title="Survivor")
    ref = factory.incident(title="Duplicate")
    refused = console.post(f"/incidents/{ref}/transition", {"to": "merged"})
    assert refused.status_code == 422
    assert "merged_into" in refused.text
    merged = console.post(
        f"/incidents/{ref}/transition", {"to": "merged", "merged_into": survivor.lower()}
    )
    assert merged.status_code == 303
    assert status_of(runtime, ref) == "merged"
    assert f'href="/incidents/{survivor}"' in console.get(f"/incidents/{ref}").text


CHANGE_FORMS = re.compile(
    r'<form[^>]*action="/incidents/INC-\d+/(transition|acknowledge|severity|notes|roles|tasks)'
)


def test_a_merged_incident_shows_no_change_forms_and_points_to_its_survivor(
    console, factory, runtime
):
    """A merged incident refuses changes from people, so its page offers none: every form
    would only answer with a 409 page. A banner sends people to the survivor instead."""
    factory.user(Role.responder, email="bo@example.com")
    survivor = factory.incident(title="Checkout is down")
    ref = factory.incident(title="Payments 502")
    assert console.post(f"/incidents/{ref}/tasks", {"title": "Rotate keys"}).status_code == 303
    before = console.get(f"/incidents/{ref}").text
    assert set(CHANGE_FORMS.findall(before)) == {
        "transition", "acknowledge", "severity", "notes", "roles", "tasks"
    }  # fmt: skip
    merged = console.post(f"/incidents/{ref}/transition", {"to": "merged", "merged_into": survivor})
    assert merged.status_code == 303
    page = console.get(f"/incidents/{ref}")
    assert page.status_code == 200
    assert CHANGE_FORMS.findall(page.text) == []
    banner = re.search(r'<p class="flash merged-banner"[^>]*>(.*?)</p>', page.text, re.DOTALL)
    assert banner, page.text
    text = " ".join(re.sub(r"<[^>]+>", "", banner.group(1)).split())
    assert text == (
        f"{ref} was merged into {survivor} Checkout is down: "
        "work there. Nothing can be changed here any more."
    )
    assert f'href="/incidents/{survivor}"' in banner.group(1)
    assert "Rotate keys" in page.text  # what it held is still shown, read only
    # A form posted from a page loaded before the merge gets the same page, with the refusal.
    stale = console.post(f"/incidents/{ref}/notes", {"text": "late"})
    assert stale.status_code == 409
    assert "make changes there instead" in stale.text
    assert CHANGE_FORMS.findall(stale.text) == []
    assert 'class="flash merged-banner"' in stale.text
    # The survivor keeps every form.
    survivor_page = console.get(f"/incidents/{survivor}").text
    assert "merged-banner" not in survivor_page
    assert {"severity", "notes", "roles", "tasks"} <= set(CHANGE_FORMS.findall(survivor_page))


def holder(page: str, role: str) -> str:
    match = re.search(rf'data-role="{role}">([^<]*)<', page)
    return match.group(1).strip() if match else ""


def test_command_is_handed_over(console, factory, runtime):
    factory.user(Role.responder, email="bo@example.com")
    ref = factory.incident(title="DNS")
    assert (
        console.post(
            f"/incidents/{ref}/roles", {"role": "commander", "user": "ana@example.com"}
        ).status_code
        == 303
    )
    assert (
        console.post(
            f"/incidents/{ref}/roles", {"role": "commander", "user": "bo@example.com"}
        ).status_code
        == 303
    )
    page = console.get(f"/incidents/{ref}").text
    assert holder(page, "commander") == "bo@example.com"
    assert "commander handed over to bo@example.com" in page
    refused = console.post(f"/incidents/{ref}/roles", {"role": "commander", "user": "no@x.io"})
    assert refused.status_code == 404
    assert holder(refused.text, "commander") == "bo@example.com"


def test_tasks_are_added_assigned_and_ticked(console, factory, runtime):
    factory.user(Role.responder, email="bo@example.com")
    ref = factory.incident(title="Disk full")
    assert console.post(f"/incidents/{ref}/tasks", {"title": "Rotate logs"}).status_code == 303
    page = console.get(f"/incidents/{ref}").text
    task_id = re.search(r'id="task-(\d+)"', page).group(1)
    assert "Rotate logs" in page and "task-open" in page
    url = f"/incidents/{ref}/tasks/{task_id}"
    assert console.post(url, {"assignee": "bo@example.com"}).status_code == 303
    assert console.post(url, {"status": "done"}).status_code == 303
    with runtime.read() as session:
        task = incident_service.read(session, incident_service.get_incident(session, ref)).tasks[0]
    assert (task.status, task.assignee) == ("done", "bo@example.com")
    assert "task-done" in console.get(f"/incidents/{ref}").text
    empty = console.post(f"/incidents/{ref}/tasks", {"title": "  "})
    assert empty.status_code == 422
    assert len(timeline_texts(runtime, ref)) == 4  # declared, added, assigned, done


def _deactivate(runtime: Runtime, email: str) -> None:
    with runtime.transaction() as session:
        user = auth_service.get_user_by_email(session, email)
        auth_service.set_active(session, SYSTEM, user, False)


def test_a_deactivated_participant_is_marked(console, factory, runtime):
    """As role holders and task assignees are, from the incident's own read."""
    bo = factory.user(Role.responder, email="bo@example.com")
    ref = factory.incident(title="Queue stuck")
    assert bo.post(f"/api/v1/incidents/{ref}/join").status_code == 200
    page = console.get(f"/incidents/{ref}").text
    assert "<li>bo@example.com</li>" in page and "(deactivated)" not in page
    _deactivate(runtime, "bo@example.com")
    page = console.get(f"/incidents/{ref}").text
    listed = re.search(r'<ul class="participants">(.*?)</ul>', page, re.DOTALL)
    assert listed, "no participants list"
    assert re.findall(r"<li>(.*?)</li>", listed.group(1)) == [
        'bo@example.com <span class="deactivated">(deactivated)</span>'
    ]


def test_work_held_by_a_deactivated_user_is_marked_not_moved(console, factory, client, runtime):
    """Their roles and tasks stay theirs (nothing reassigns silently), marked on the page so
    responders see they need a new holder; an active holder is not marked."""
    for email in ("bo@example.com", "cy@example.com"):
        factory.user(Role.responder, email=email)
    ref = factory.incident(title="Queue stuck")
    for role, user in (("commander", "bo@example.com"), ("scribe", "ana@example.com")):
        answer = console.post(f"/incidents/{ref}/roles", {"role": role, "user": user})
        assert answer.status_code == 303
    for title, assignee in (("Drain queue", "cy@example.com"), ("Page vendor", "ana@example.com")):
        answer = console.post(f"/incidents/{ref}/tasks", {"title": title, "assignee": assignee})
        assert answer.status_code == 303
    assert "(deactivated)" not in console.get(f"/incidents/{ref}").text
    _deactivate(runtime, "bo@example.com")
    _deactivate(runtime, "cy@example.com")

    page = console.get(f"/incidents/{ref}").text
    assert holder(page, "commander") == "bo@example.com"
    assert re.search(r'data-role="commander">bo@example.com <span class="deactivated"', page)
    assert holder(page, "scribe") == "ana@example.com"
    assert not re.search(r'data-role="scribe">[^<]*<span class="deactivated"', page)
    drain = re.search(r'<li class="task task-open" id="task-(\d+)">.*?</li>', page, re.DOTALL)
    assert drain and "Drain queue" in drain.group(0)
    # The assignee picker shows the real assignee, not "unassigned".
    assert '<option value="cy@example.com" selected>cy@example.com (deactivated)</option>' in (
        drain.group(0)
    )
    # The role, the task, and bo among the participants (holding a role made him one).
    assert page.count("(deactivated)") == 3
    # Sending the form as shown (the deactivated assignee) changes nothing and is no error.
    url = f"/incidents/{ref}/tasks/{drain.group(1)}"
    entries = len(timeline_texts(runtime, ref))
    assert console.post(url, {"assignee": "cy@example.com"}).status_code == 303
    assert len(timeline_texts(runtime, ref)) == entries

    # A viewer, who gets no forms, sees the marks too.
    viewer_client = TestClient(client.app)
    factory.user(Role.viewer, email="vi@example.com", password=PASSWORD)
    login(viewer_client, "vi@example.com")
    seen = Console(viewer_client).get(f"/incidents/{ref}").text
    assert re.search(r'cy@example.com</span> <span class="deactivated">', seen)
    assert seen.count("(deactivated)") == 3

    # Handing the work over clears the marks.
    assert (
        console.post(
            f"/incidents/{ref}/roles", {"role": "commander", "user": "ana@example.com"}
        ).status_code
        == 303
    )
    assert console.post(url, {"assignee": "ana@example.com"}).status_code == 303
    # Handed over, the work's marks go; bo took part all the same, so the participants
    # list still names him, marked.
    handed = console.get(f"/incidents/{ref}").text
    assert handed.count("(deactivated)") == 1
    assert 'bo@example.com <span class="deactivated">(deactivated)</span></li>' in handed


def test_a_note_lands_on_the_timeline_pinned(console, factory, runtime):
    ref = factory.incident(title="Latency")
    answer = console.post(
        f"/incidents/{ref}/notes", {"text": "Rolled back <b>v42</b>", "pinned": "true"}
    )
    assert answer.status_code == 303
    page = console.get(f"/incidents/{ref}").text
    assert "Rolled back &lt;b&gt;v42&lt;/b&gt;" in page  # escaped, never markup
    assert "entry kind-note pinned" in page
    assert console.post(f"/incidents/{ref}/notes", {"text": "   "}).status_code == 422


def test_a_viewer_sees_the_incident_but_no_forms(factory, client, runtime):
    factory.user(Role.viewer, email="vi@example.com", password=PASSWORD)
    ref = factory.incident(title="Read only")
    login(client, "vi@example.com")
    viewer = Console(client)
    page = viewer.get(f"/incidents/{ref}")
    assert page.status_code == 200
    assert transition_buttons(page.text) == set()
    assert viewer.post(f"/incidents/{ref}/notes", {"text": "hi"}).status_code == 403
    assert timeline_texts(runtime, ref) == [timeline_texts(runtime, ref)[0]]


def test_an_unknown_incident_is_a_404_page(console):
    answer = console.get("/incidents/INC-999")
    assert answer.status_code == 404
    assert "no incident INC-999" in answer.text
    assert 'href="/alerts"' in answer.text, "the navigation is missing from the error page"
    assert "ana@example.com" in answer.text


def test_an_error_page_for_nobody_logged_in_has_no_navigation(client: TestClient):
    answer = client.get("/login?next=%2F", headers=HTML)  # a session cookie, nobody in it
    assert answer.status_code == 200
    refused = client.post("/logout", data={"csrf_token": "wrong"}, headers=HTML)
    assert refused.status_code == 403
    assert "CSRF" in refused.text
    assert 'href="/alerts"' not in refused.text


# -- the worker banner ---------------------------------------------------------------------
WORKER_BANNER = re.compile(r'<div class="[^"]*\bworker-down\b[^"]*" role="alert">(.*?)</div>', re.S)
EVERY_PAGE = ("/", "/incidents/new", "/catalog", "/alerts", "/probes", "/slos")


def worker_banner(page: str) -> str | None:
    """The banner's text as a reader sees it (tags dropped, spaces folded), or None."""
    found = WORKER_BANNER.search(page)
    if found is None:
        return None
    return " ".join(html.unescape(re.sub(r"<[^>]+>", "", found.group(1))).split())


def test_every_page_says_when_no_worker_was_ever_seen(console, runtime):
    with runtime.transaction() as session:
        enqueue(session, "web-test.page", {"n": 1})
        enqueue(session, "web-test.page", {"n": 2})
        enqueue(session, "web-test.page", {"n": 3}, run_at=clock.now() + timedelta(hours=1))
    for path in EVERY_PAGE:
        banner = worker_banner(console.get(path).text)
        assert banner == (
            "No worker is running: pages, notifications, probes and SLO checks are not running. "
            "No worker heartbeat is on record. "
            "2 jobs are waiting. "
            "Start firetower worker, or firetower serve without --no-worker."
        ), path
    error_page = console.get("/incidents/INC-999")
    assert error_page.status_code == 404
    assert worker_banner(error_page.text) is not None, "the error page shows it too"


def test_the_banner_says_when_a_worker_was_last_seen(console, runtime):
    stale_seconds = runtime.settings.worker_heartbeat_stale_seconds
    with FrozenClock(datetime(2030, 1, 7, 12, 0, 5, tzinfo=UTC)) as frozen:
        Worker(runtime.database, runtime.jobs, runtime.bus).heartbeat()
        with runtime.transaction() as session:
            enqueue(session, "web-test.page", {"n": 1})
        frozen.advance(seconds=stale_seconds + 1)
        for path in EVERY_PAGE:
            banner = worker_banner(console.get(path).text)
            assert banner is not None, path
            assert "No worker has run since 2030-01-07 12:00:05 UTC." in banner, path
            assert "1 job is waiting." in banner, path
        assert '<time datetime="2030-01-07T12:00:05+00:00">' in console.get("/").text


def alive(runtime: Runtime) -> bool:
    with runtime.read() as session:
        stale_seconds = runtime.settings.worker_heartbeat_stale_seconds
        return worker_status(session, stale_seconds=stale_seconds).alive


def test_the_banner_says_since_when_after_a_worker_stopped_cleanly(console, runtime):
    """A deliberate stop keeps the time: the banner shows at once (a stopped worker is not
    alive, however recent its last beat) and says since when no worker has run."""
    worker = Worker(runtime.database, runtime.jobs, runtime.bus)
    with FrozenClock(datetime(2030, 1, 7, 12, 0, 5, tzinfo=UTC)) as frozen:
        worker.start_in_thread()
        try:
            wait_for(lambda: alive(runtime), "the worker's heartbeat")
            frozen.advance(seconds=3)
        finally:
            worker.stop()
        banner = worker_banner(console.get("/").text)
    assert banner is not None
    assert "No worker has run since 2030-01-07 12:00:08 UTC." in banner


def test_no_banner_while_a_worker_beats_nor_for_nobody_signed_in(console, runtime, client):
    stale_seconds = runtime.settings.worker_heartbeat_stale_seconds
    with FrozenClock(clock.now()) as frozen:
        Worker(runtime.database, runtime.jobs, runtime.bus).heartbeat()
        frozen.advance(seconds=stale_seconds)
        for path in EVERY_PAGE:
            page = console.get(path)
            assert page.status_code == 200, path
            assert worker_banner(page.text) is None, path
        assert worker_banner(console.get("/incidents/INC-999").text) is None
    console.post("/logout")
    assert worker_banner(client.get("/login", headers=HTML).text) is None


def test_only_pages_in_the_layout_ask_whether_a_worker_is_alive(console, runtime):
    """The alert panel a page polls every few seconds is a fragment without the banner: it
    must not pay for the banner's query."""
    statements: list[str] = []

    def seen(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    event.listen(runtime.database.engine, "before_cursor_execute", seen)
    try:
        assert console.get("/alerts/panel").status_code == 200
        polled = [s for s in statements if "worker_heartbeats" in s]
        statements.clear()
        assert console.get("/alerts").status_code == 200
        page = [s for s in statements if "worker_heartbeats" in s]
    finally:
        event.remove(runtime.database.engine, "before_cursor_execute", seen)
    assert polled == []
    assert len(page) == 1, "one query on the heartbeat table for the banner"


# -- the live timeline ---------------------------------------------------------------------
def read_until(response: Any, marker: bytes, limit_bytes: int = 64_000) -> bytes:
    """Read the stream until ``marker`` shows up (or the byte budget is spent)."""
    seen = b""
    try:
        for chunk in response.iter_bytes():
            seen += chunk
            if marker in seen or len(seen) > limit_bytes:
                break
    except Exception:  # the test closed the stream after waiting long enough
        pass
    return seen


def read_in_background(response: Any, marker: bytes) -> tuple[threading.Thread, list[bytes]]:
    out: list[bytes] = []
    thread = threading.Thread(target=lambda: out.append(read_until(response, marker)))
    thread.start()
    return thread, out


def test_the_stream_sends_an_entry_appended_after_connecting(console, factory, runtime):
    ref = factory.incident(title="Live")
    page = console.get(f"/incidents/{ref}").text
    stream_url = html.unescape(re.search(r'data-stream="([^"]+)"', page).group(1))
    author = factory.users["ana@example.com"].actor
    with console.client.stream("GET", stream_url) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        reader, out = read_in_background(response, b"Fire &lt;fighting&gt;")
        with runtime.transaction() as session:
            incident = incident_service.get_incident(session, ref)
            entry = incident_service.add_note(session, author, incident, "Fire <fighting>")
            entry_id = entry.id
        reader.join(timeout=30)
        if reader.is_alive():
            response.close()  # unblocks the reader; the assertion below then fails
            reader.join(timeout=5)
    received = b"".join(out).decode()
    assert f"id: {entry_id}" in received
    assert "event: entry" in received
    assert "Fire &lt;fighting&gt;" in received
    assert "Declared" not in received  # entries the page already had are not sent again


def test_the_stream_resumes_after_last_event_id(console, factory, runtime):
    ref = factory.incident(title="Resume")
    author: Actor = factory.users["ana@example.com"].actor
    ids = []
    for text in ("first", "second", "third"):
        with runtime.transaction() as session:
            incident = incident_service.get_incident(session, ref)
            ids.append(incident_service.add_note(session, author, incident, text).id)
    headers = {"Last-Event-ID": str(ids[0])}
    with console.client.stream(
        "GET", f"/incidents/{ref}/timeline/stream?after=0", headers=headers
    ) as response:
        reader, out = read_in_background(response, b"third")
        reader.join(timeout=30)
        if reader.is_alive():
            response.close()
            reader.join(timeout=5)
    received = b"".join(out).decode()
    assert f"id: {ids[1]}" in received and f"id: {ids[2]}" in received
    assert "first" not in received


def test_the_stream_of_a_deactivated_user_ends_at_once(console, factory, runtime):
    """A live timeline outlasts the request that opened it: deactivating its user must stop
    it too, not only their next request."""
    admin = factory.user(Role.admin)
    ref = factory.incident(title="Live")
    ana_id = factory.users["ana@example.com"].actor.user_id
    with console.client.stream("GET", f"/incidents/{ref}/timeline/stream?after=0") as response:
        assert response.status_code == 200
        reader, out = read_in_background(response, b"after deactivation")
        deactivated = admin.patch(f"/api/v1/users/{ana_id}", json={"active": False})
        assert deactivated.status_code == 200, deactivated.text
        with runtime.transaction() as session:
            incident = incident_service.get_incident(session, ref)
            incident_service.add_note(session, admin.actor, incident, "after deactivation")
        reader.join(timeout=30)
        ended = not reader.is_alive()
        if not ended:
            response.close()  # unblocks the reader; the assertion below then fails
            reader.join(timeout=5)
    received = b"".join(out).decode()
    assert "after deactivation" not in received
    assert ended, "the stream went on after its user was deactivated"
    assert console.client.get(f"/incidents/{ref}/timeline/stream").status_code == 401


def test_the_stream_refuses_an_absurd_position(console, factory):
    ref = factory.incident(title="Bounds")
    answer = console.get(f"/incidents/{ref}/timeline/stream?after={2**70}")
    assert answer.status_code == 422
    assert answer.json()["field"] == "after"


def test_the_stream_needs_a_login_and_a_real_incident(console, client):
    assert console.get("/incidents/INC-404/timeline/stream").status_code == 404
    console.post("/logout")
    assert client.get("/incidents/INC-1/timeline/stream").status_code == 401


# -- catalog and jobs ----------------------------------------------------------------------
def test_the_catalog_draws_the_dependency_graph(console, factory):
    factory.service("db", tier=1, estimated_users=100, runbook_url="https://runbooks/db")
    factory.service("api", depends_on=["db"], owner="team-api@example.com")
    factory.service("web", depends_on=["api"], estimated_users=12000)
    factory.incident(title="DB slow", services=["db"])
    page = console.get("/catalog").text
    assert '<svg class="dependency-graph"' in page
    for name in ("db", "api", "web"):
        assert f'data-service="{name}"' in page
    assert 'data-from="web" data-to="api"' in page
    assert 'data-from="api" data-to="db"' in page
    assert re.search(r'class="node tier-1 impacted" data-service="db"', page)
    assert 'href="https://runbooks/db"' in page
    assert "12,000" in page


def test_the_jobs_page_is_for_admins(console, factory, runtime, client):
    @runtime.jobs.handler("web-test.always-fails")
    def always_fails(context: JobContext, payload: dict[str, Any]) -> None:
        raise RuntimeError("the receiver said no")

    with runtime.transaction() as session:
        enqueue(session, "web-test.always-fails", {"n": 1}, max_attempts=1)
    Worker(runtime.database, runtime.jobs, runtime.bus).run_once()
    with runtime.read() as session:
        (dead,) = dead_letters(session)

    assert console.get("/jobs").status_code == 403
    assert 'href="/jobs"' not in console.get("/").text
    console.post("/logout")
    factory.user(Role.admin, email="root@example.com", password=PASSWORD)
    login(client, "root@example.com")
    admin = Console(client)
    page = admin.get("/jobs")
    assert page.status_code == 200
    assert "the receiver said no" in page.text
    assert admin.post(f"/jobs/{dead.id}/retry").status_code == 303
    with runtime.read() as session:
        assert dead_letters(session) == []
    assert admin.post(f"/jobs/{dead.id}/retry").status_code == 404
