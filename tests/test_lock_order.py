"""Two transactions on PostgreSQL that lock the same rows must never wait for each other crosswise.

Each test runs two operations in threads of their own, each in its own transaction, and
holds one of them just before a chosen statement (``Step.stop_before``) until the other is
waiting for a lock or done: the interleaving is the same every run, nothing is timed. A lock
order broken somewhere shows as PostgreSQL's "deadlock detected" in one of them.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, event, select, text
from sqlalchemy.orm import Session
from starlette.requests import Request

from firetower import clock
from firetower.auth.schemas import Role
from firetower.clock import FrozenClock
from firetower.errors import Conflict
from firetower.incidents import routes as incident_routes
from firetower.incidents import service as incidents
from firetower.incidents.lifecycle import Severity, Status
from firetower.incidents.models import Incident, TimelineEvent
from firetower.incidents.schemas import IncidentCreate, IncidentUpdate, TransitionRequest
from firetower.jobs import Job, JobContext
from firetower.runtime import Runtime
from firetower.settings import Settings
from firetower.signals import service as signals
from firetower.signals.models import Alert, AttachTally, Integration, MaintenanceWindow, RoutingRule
from firetower.signals.reactions import attached_note
from firetower.signals.schemas import (
    AlertmanagerPayload,
    IntegrationCreate,
    MaintenanceWindowCreate,
    RoutingRuleCreate,
)
from firetower.web import incident_pages
from tests.factories import Factory
from tests.signals_support import firing_alert, send_batch

WAIT_SECONDS = 30
"""How long a step may take to reach its stop, or to start waiting: a bound against a hang,
never a measure (a healthy run takes milliseconds)."""

LOCKS_INCIDENT = re.compile(r"FROM incidents\b.*FOR UPDATE", re.DOTALL)
MOVES_ALERTS = re.compile(r"^UPDATE alerts SET incident_id", re.DOTALL)
WRITES_TIMELINE = re.compile(r"^INSERT INTO timeline_events", re.DOTALL)
INSERTS_ALERTS = re.compile(r"^INSERT INTO alerts\b", re.DOTALL)


@dataclass(eq=False)
class Step:
    """One operation run in a thread of its own and its own transaction
    (``runtime.transaction``), optionally held just before its first statement matching
    ``stop_before`` until ``go`` is called."""

    name: str
    work: Callable[[Session], None]
    stop_before: re.Pattern[str] | None = None
    stop_at_match: int = 1
    """Which statement matching ``stop_before`` it stops before (the first by default)."""
    matched: int = 0
    error: BaseException | None = None
    pid: int | None = None
    """The PostgreSQL backend that runs its latest statement (the one that may wait)."""
    stopped: threading.Event = field(default_factory=threading.Event)
    released: threading.Event = field(default_factory=threading.Event)
    done: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None

    def go(self) -> None:
        self.released.set()


class Interleaving:
    """Runs ``Step``s on one runtime, holding each at its stop, and tells when one waits."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.engine: Engine = runtime.database.engine
        self.steps: dict[int, Step] = {}

    def before_statement(self, conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        step = self.steps.get(threading.get_ident())
        if step is None:
            return
        step.pid = cursor.connection.info.backend_pid  # the connection of its latest statement
        stop = step.stop_before
        if stop is not None and not step.stopped.is_set() and stop.search(statement):
            step.matched += 1
            if step.matched == step.stop_at_match:
                step.stopped.set()
                assert step.released.wait(WAIT_SECONDS), f"{step.name} was never released"

    def start(self, step: Step) -> Step:
        started = threading.Event()

        def run() -> None:
            self.steps[threading.get_ident()] = step
            started.set()
            try:
                with self.runtime.transaction() as session:
                    step.work(session)
            except BaseException as exc:  # kept for the test to show
                step.error = exc
            finally:
                step.done.set()

        step.thread = threading.Thread(target=run, name=step.name)
        step.thread.start()
        assert started.wait(WAIT_SECONDS)
        return step

    def reaches_stop(self, step: Step) -> None:
        """Wait until ``step`` is held at its stop (it holds the locks it took before it)."""
        assert step.stopped.wait(WAIT_SECONDS) or step.done.is_set(), f"{step.name} is stuck"
        assert step.error is None, f"{step.name} failed before its stop: {step.error!r}"
        assert step.stopped.is_set(), f"{step.name} finished without reaching its stop"

    def waits_or_ends(self, step: Step) -> None:
        """Wait until ``step`` waits for a lock another transaction holds, or has ended."""
        with self.engine.connect() as watcher:
            for _ in range(WAIT_SECONDS * 100):
                if step.done.is_set():
                    return
                if step.pid is not None:
                    blocked = watcher.scalar(
                        text("SELECT cardinality(pg_blocking_pids(:pid)) > 0"), {"pid": step.pid}
                    )
                    watcher.rollback()
                    if blocked:
                        return
                if step.done.wait(0.01):
                    return
        raise AssertionError(f"{step.name} neither waits for a lock nor ends")

    def finish(self, *steps: Step) -> None:
        for step in steps:
            step.go()
        for step in steps:
            assert step.thread is not None
            step.thread.join(WAIT_SECONDS)
            assert not step.thread.is_alive(), f"{step.name} is stuck"
        errors = {step.name: repr(step.error) for step in steps if step.error is not None}
        assert not errors, errors


@contextmanager
def interleaving(runtime: Runtime) -> Iterator[Interleaving]:
    plan = Interleaving(runtime)
    event.listen(plan.engine, "before_cursor_execute", plan.before_statement)
    try:
        yield plan
    finally:
        for step in plan.steps.values():
            step.go()  # a failed assertion must not leave a thread held
        event.remove(plan.engine, "before_cursor_execute", plan.before_statement)


def _postgres_only(settings: Settings) -> None:
    if settings.is_sqlite:
        pytest.skip("PostgreSQL only: SQLite serializes writers, so nothing waits crosswise")


def _batch(*alerts: dict[str, Any]) -> list[signals.Signal]:
    payload = AlertmanagerPayload.model_validate(
        {"version": "4", "status": alerts[0]["status"], "alerts": list(alerts)}
    )
    return signals.alertmanager_signals(payload)


def _resolved(fingerprint: str, **labels: str) -> dict[str, Any]:
    return {**firing_alert(fingerprint, **labels), "status": "resolved"}


def _ingest(
    runtime: Runtime, integration: str, *alerts: dict[str, Any]
) -> Callable[[Session], None]:
    """Intake of one Alertmanager batch, as its route runs it in a group's transaction."""

    def work(session: Session) -> None:
        intake = signals.Intake(
            signals.get_integration(session, integration), runtime.settings.severity_policy
        )
        signals.ingest_alertmanager(session, intake, _batch(*alerts))

    return work


def _integration(factory: Factory, name: str = "prom") -> str:
    admin = factory.user(Role.admin)
    answer = admin.post("/api/v1/integrations", json={"name": name, "kind": "alertmanager"})
    assert answer.status_code == 201, answer.text
    return str(answer.json()["key"])


def _incident(runtime: Runtime, ref: str) -> Incident:
    with runtime.read() as session:
        return incidents.get_incident(session, ref)


def _alert(runtime: Runtime, fingerprint: str) -> Alert:
    with runtime.read() as session:
        found = session.scalar(select(Alert).where(Alert.fingerprint == fingerprint))
        assert found is not None
        return found


def _notes(runtime: Runtime, ref: str) -> list[str]:
    with runtime.read() as session:
        return list(
            session.scalars(
                select(TimelineEvent.text)
                .join(Incident, Incident.id == TimelineEvent.incident_id)
                .where(Incident.id == incidents.parse_ref(ref), TimelineEvent.kind == "note")
                .order_by(TimelineEvent.id)
            )
        )


def _assert_one_story(runtime: Runtime, ref: str) -> None:
    """Each status change on the timeline starts from the status the one before it left:
    a change decided on a status read before another transaction's commit would not."""
    with runtime.read() as session:
        changes = session.scalars(
            select(TimelineEvent)
            .where(
                TimelineEvent.incident_id == incidents.parse_ref(ref),
                TimelineEvent.kind == "status_changed",
            )
            .order_by(TimelineEvent.id)
        ).all()
        story = [(change.before["status"], change.after["status"]) for change in changes]
    status = Status.triage.value
    for before, after in story:
        assert before == status, story
        status = after


# -- merging an incident while one of its alerts comes in ---------------------------------------
@pytest.mark.parametrize("first", ["merge", "intake"])
def test_merging_while_an_alert_of_the_merged_incident_resolves_never_deadlocks(
    settings: Settings, factory: Factory, runtime: Runtime, first: str
) -> None:
    """A merge locks the merged incident and then moves its alerts (``follow_incident_end``);
    intake locks an alert and then its incident (the note that its alerts cleared). Either
    one may get there first: the other must wait for it, not deadlock with it. Whichever
    PostgreSQL ended, intake would run again, but a person's merge would simply fail."""
    _postgres_only(settings)
    key = _integration(factory)
    factory.service("search")
    merged = factory.incident(title="Search is down", services=["search"])
    send_batch(factory, key, firing_alert("a1", service="search"))
    survivor = factory.incident(title="Search cluster degraded")
    responder = factory.user(Role.responder)

    def merge(session: Session) -> None:
        incident = incidents.get_incident(session, merged)
        incidents.transition(
            session, responder.actor, incident, Status.merged, merged_into=survivor
        )

    intake = _ingest(runtime, "prom", _resolved("a1", service="search"))
    with interleaving(runtime) as plan:
        if first == "merge":
            # The merge holds the incidents and is about to move the alerts; intake comes.
            merging = plan.start(Step("merge", merge, stop_before=MOVES_ALERTS))
            plan.reaches_stop(merging)
            resolving = plan.start(Step("intake", intake))
            plan.waits_or_ends(resolving)
        else:
            # Intake holds the alert and is about to lock its incident; the merge comes.
            resolving = plan.start(Step("intake", intake, stop_before=LOCKS_INCIDENT))
            plan.reaches_stop(resolving)
            merging = plan.start(Step("merge", merge))
            plan.waits_or_ends(merging)
        plan.finish(merging, resolving)

    assert _incident(runtime, merged).status == Status.merged
    alert = _alert(runtime, "a1")
    assert (alert.incident_id, alert.status) == (incidents.parse_ref(survivor), "resolved")
    assert f"1 alert moved from {merged}" in _notes(runtime, survivor)


# -- merging an incident while intake routes a new alert to it ----------------------------------
def test_an_alert_routed_while_its_incident_is_merged_follows_it_to_the_survivor(
    settings: Settings, factory: Factory, runtime: Runtime
) -> None:
    """Intake reads a service's active incident under the service's lock, then writes the
    alert that joins it. A person merging that incident in between must wait for the alert
    (a merge share-locks the incident's services, as any ending does), so that the alert
    joins first and the merge moves it to the survivor. Without the wait the alert joins an
    incident already merged, where its repeats and its resolve are out of the survivor's
    sight."""
    _postgres_only(settings)
    key = _integration(factory)
    factory.service("search")
    [ref] = send_batch(factory, key, firing_alert("a1", service="search"))["opened"]
    survivor = factory.incident(title="Search cluster degraded")
    responder = factory.user(Role.responder)

    def merge(session: Session) -> None:
        incident = incidents.get_incident(session, ref)
        incidents.transition(
            session, responder.actor, incident, Status.merged, merged_into=survivor
        )

    intake = _ingest(runtime, "prom", firing_alert("a2", service="search"))
    with interleaving(runtime) as plan:
        # Intake holds the service, has found the incident active, and is about to write.
        routing = plan.start(Step("intake", intake, stop_before=INSERTS_ALERTS))
        plan.reaches_stop(routing)
        merging = plan.start(Step("merge", merge))
        plan.waits_or_ends(merging)
        plan.finish(routing, merging)

    assert _incident(runtime, ref).status == Status.merged
    assert _alert(runtime, "a2").incident_id == incidents.parse_ref(survivor)
    assert f"2 alerts moved from {ref}" in _notes(runtime, survivor)


# -- declaring an incident by hand while intake routes to its service ---------------------------
@pytest.mark.parametrize("action", ["open", "attach"])
def test_an_alert_routed_while_a_person_declares_on_its_service_joins_the_declared_incident(
    settings: Settings, factory: Factory, runtime: Runtime, action: str
) -> None:
    """Intake reads a service's active incident under the service's lock, then opens one or
    attaches to it. A person declaring an incident on that service at that moment locks it
    as intake does: intake waits for the declaration and then finds the declared incident
    active, and joins it. A declaration that locked nothing (the foreign key of its service
    takes only ``KEY SHARE``, which intake's lock lets through) let intake read "none
    active" beside it: an ``open`` rule opened a second incident for the service, an
    ``attach`` rule left the alert on none."""
    _postgres_only(settings)
    _integration(factory)
    factory.service("search")
    admin = factory.user(Role.admin)
    rule = {"name": "search", "action": action}
    assert admin.post("/api/v1/routing-rules", json=rule).status_code == 201
    responder = factory.user(Role.responder)

    def declare(session: Session) -> None:
        incidents.declare(
            session,
            responder.actor,
            IncidentCreate(title="Search is slow", services=["search"]),
            settings.severity_policy,
        )

    intake = _ingest(runtime, "prom", firing_alert("a1", service="search"))
    with interleaving(runtime) as plan:
        # The person's incident is written, not committed; its timeline comes next.
        declaring = plan.start(Step("declare", declare, stop_before=WRITES_TIMELINE))
        plan.reaches_stop(declaring)
        routing = plan.start(Step("intake", intake))
        plan.waits_or_ends(routing)
        plan.finish(declaring, routing)

    with runtime.read() as session:
        refs = [i.ref for i in session.scalars(select(Incident).order_by(Incident.id))]
    assert len(refs) == 1, refs
    assert _alert(runtime, "a1").incident_id == incidents.parse_ref(refs[0])


LOCKS_SERVICES = re.compile(r"FROM services\b.*FOR NO KEY UPDATE", re.DOTALL)


@pytest.mark.parametrize("entry", ["api", "console"])
def test_a_declaration_postgresql_ends_as_a_deadlock_with_an_intake_group_runs_once_more(
    settings: Settings, factory: Factory, runtime: Runtime, entry: str
) -> None:
    """A declaration locks its services in name order, in one statement. A group of intake
    requests keeps that order within each request, not across them: its first request
    routes to ``search-b`` and keeps that lock, its second is about to lock ``search-a``.
    A declaration on both holds ``search-a`` and waits for ``search-b``: crosswise, and
    PostgreSQL ends the declaration, which waited first. The person declaring was answered
    503 ("the database is busy"); the declaration runs once more, once the group has
    committed, and the incident is declared."""
    _postgres_only(settings)
    _integration(factory)
    factory.service("search-a")
    factory.service("search-b")
    responder = factory.user(Role.responder)

    def declare(session: Session) -> None:  # the entry point opens its own transactions
        if entry == "api":
            data = IncidentCreate(title="Search is slow", services=["search-a", "search-b"])
            incident_routes.declare_incident(data, runtime, responder.actor)
        else:
            web_request = Request({"type": "http", "app": factory.client.app, "headers": []})
            answer = incident_pages.declare(
                web_request,
                responder.actor,
                title="Search is slow",
                severity="SEV3",
                services=["search-a", "search-b"],
            )
            assert answer.status_code == 303, answer.body

    def group(session: Session) -> None:
        for service in ("search-b", "search-a"):
            intake = signals.Intake(
                signals.get_integration(session, "prom"), settings.severity_policy
            )
            alert = firing_alert(f"{service}-1", service=service)
            signals.ingest_alertmanager(session, intake, _batch(alert))

    with interleaving(runtime) as plan:
        # The group's first request holds search-b; its second is about to lock search-a.
        routing = plan.start(Step("intake", group, stop_before=LOCKS_SERVICES, stop_at_match=2))
        plan.reaches_stop(routing)
        declaring = plan.start(Step("declare", declare))
        plan.waits_or_ends(declaring)
        plan.finish(routing, declaring)

    with runtime.read() as session:
        titles = list(session.scalars(select(Incident.title).order_by(Incident.id)))
    assert titles.count("Search is slow") == 1, titles


# -- naming a service in a record while intake routes to it -------------------------------------
NAMING_SEARCH: dict[str, Callable[[Session, Any], None]] = {
    "maintenance window": lambda session, actor: signals.create_maintenance_window(
        session,
        actor,
        MaintenanceWindowCreate(service_name="search", ends_at=clock.now() + timedelta(hours=1)),
    ),
    "routing rule": lambda session, actor: signals.create_routing_rule(
        session, actor, RoutingRuleCreate(name="search-team", service="search")
    ),
    "integration": lambda session, actor: signals.create_integration(
        session,
        actor,
        IntegrationCreate(name="search-prom", kind="alertmanager", service_name="search"),
    ),
}


@pytest.mark.parametrize("record", sorted(NAMING_SEARCH))
def test_a_record_naming_a_service_never_waits_for_intake_routing_to_it(
    settings: Settings, factory: Factory, runtime: Runtime, record: str
) -> None:
    """Intake locks the services it routes to until it commits, and a record that names a
    service (``catalog.hold_services``) holds the service's row against its delete. Intake
    took the row ``FOR UPDATE``, which also shuts out that hold: a maintenance window made
    during an alert storm waited for the storm's requests one after another. Intake's lock
    (``FOR NO KEY UPDATE``) still keeps out another intake, a merge and the delete, and
    lets the record through."""
    _postgres_only(settings)
    key = _integration(factory)
    factory.service("search")
    [ref] = send_batch(factory, key, firing_alert("a1", service="search"))["opened"]
    admin = factory.user(Role.admin)

    def name_search(session: Session) -> None:
        NAMING_SEARCH[record](session, admin.actor)

    intake = _ingest(runtime, "prom", firing_alert("a2", service="search"))
    with interleaving(runtime) as plan:
        # Intake holds the service, has found the incident active, and is about to write.
        routing = plan.start(Step("intake", intake, stop_before=INSERTS_ALERTS))
        plan.reaches_stop(routing)
        naming = plan.start(Step(record, name_search))
        plan.waits_or_ends(naming)
        assert naming.done.is_set(), f"the {record} waits for intake"
        plan.finish(routing, naming)

    assert _alert(runtime, "a2").incident_id == incidents.parse_ref(ref)
    with runtime.read() as session:
        named = [
            *session.scalars(select(MaintenanceWindow.id)),
            *session.scalars(select(RoutingRule.id).where(RoutingRule.service_name == "search")),
            *session.scalars(select(Integration.id).where(Integration.service_name == "search")),
        ]
    assert len(named) == 1, named


# -- resolving on clear while a person changes the incident -------------------------------------
CHANGES: dict[str, Callable[[Session, Any, Incident, Settings], None]] = {
    "note": lambda session, actor, incident, settings: incidents.add_note(
        session, actor, incident, "Rolling back the deploy"
    ),
    "severity": lambda session, actor, incident, settings: incidents.update(
        session, actor, incident, IncidentUpdate(severity=Severity.SEV1), settings.severity_policy
    ),
    "resolve": lambda session, actor, incident, settings: incidents.transition(
        session, actor, incident, Status.resolved
    ),
    "services": lambda session, actor, incident, settings: incidents.update(
        session,
        actor,
        incident,
        IncidentUpdate(services=["search", "payments"]),
        settings.severity_policy,
    ),
}


@pytest.mark.parametrize("first", ["person", "intake"])
@pytest.mark.parametrize("change", sorted(CHANGES))
def test_resolving_on_clear_while_a_person_changes_the_incident_never_fails(
    settings: Settings, factory: Factory, runtime: Runtime, change: str, first: str
) -> None:
    """Intake locks the alert that clears, the services of its incident, then the incident
    to resolve it; a person locks the incident, then whatever the change needs (the catalog's
    services it names). The same request also opens an incident for another service's alert,
    whose service it locks. Whichever gets there first, the other waits, and then decides
    on what the first committed: nobody sees a deadlock, nor a refusal to resolve what a
    person resolved a moment before."""
    _postgres_only(settings)
    key = _integration(factory)
    factory.service("search")
    factory.service("payments")
    rule = {"name": "all", "on_clear": "resolve"}
    assert factory.user(Role.admin).post("/api/v1/routing-rules", json=rule).status_code == 201
    [ref] = send_batch(factory, key, firing_alert("a1", service="search"))["opened"]
    responder = factory.user(Role.responder)

    def person(session: Session) -> None:
        CHANGES[change](session, responder.actor, incidents.get_incident(session, ref), settings)

    intake = _ingest(
        runtime, "prom", _resolved("a1", service="search"), firing_alert("b1", service="payments")
    )
    with interleaving(runtime) as plan:
        if first == "person":
            # The person holds the incident and is about to write the change.
            changing = plan.start(Step("person", person, stop_before=WRITES_TIMELINE))
            plan.reaches_stop(changing)
            resolving = plan.start(Step("intake", intake))
            plan.waits_or_ends(resolving)
        else:
            # Intake holds the alert and the services and is about to lock the incident.
            resolving = plan.start(Step("intake", intake, stop_before=LOCKS_INCIDENT))
            plan.reaches_stop(resolving)
            changing = plan.start(Step("person", person))
            plan.waits_or_ends(changing)
        plan.finish(changing, resolving)

    incident = _incident(runtime, ref)
    assert _alert(runtime, "a1").status == "resolved"
    _assert_one_story(runtime, ref)
    if change == "note":
        assert "Rolling back the deploy" in _notes(runtime, ref)
    elif change == "severity":
        assert incident.severity == Severity.SEV1
    elif change == "resolve":
        assert incident.status == Status.resolved
    else:
        with runtime.read() as session:
            named = incidents.get_incident(session, ref).services
            assert sorted(s.name for s in named) == ["payments", "search"]


# -- summing up a minute of attachments while intake adds to it ---------------------------------
def test_summing_up_a_minute_of_attachments_while_intake_adds_to_it_never_deadlocks(
    settings: Settings, factory: Factory, runtime: Runtime
) -> None:
    """The minute's job (``attached_note``) takes the minute's tallies and notes them on the
    incident; intake attaches an alert to that incident (its foreign key share-locks the
    incident) and then adds to the same tally, as a request of that minute that commits late
    does. The job must lock the incident before the tallies, as intake does."""
    _postgres_only(settings)
    key = _integration(factory)
    factory.service("search")
    with FrozenClock(datetime(2026, 11, 29, 10, 0, 30, tzinfo=UTC)):
        [ref] = send_batch(factory, key, firing_alert("a1", service="search"))["opened"]
        send_batch(factory, key, firing_alert("a2", service="search"))  # a note, the job
        send_batch(factory, key, firing_alert("a3", service="search"))  # the minute's tally
        with runtime.read() as session:
            job = session.scalars(select(Job).where(Job.kind == signals.ATTACHED_KIND)).one()
            job_id, payload, idempotency_key = job.id, job.payload, job.idempotency_key

        def sum_up(session: Session) -> None:
            context = JobContext(session, job_id, signals.ATTACHED_KIND, 1, idempotency_key)
            attached_note(context, payload)

        with interleaving(runtime) as plan:
            # The job is about to lock the incident: the tallies it read are its to delete.
            summing = plan.start(Step("job", sum_up, stop_before=LOCKS_INCIDENT))
            plan.reaches_stop(summing)
            adding = plan.start(
                Step("intake", _ingest(runtime, "prom", firing_alert("a4", service="search")))
            )
            plan.waits_or_ends(adding)
            plan.finish(summing, adding)

    notes = [n for n in _notes(runtime, ref) if "more alert" in n]
    assert len(notes) == 1 and "HighErrorRate" in notes[0], notes
    with runtime.read() as session:
        left = session.scalars(select(AttachTally.alerts)).all()
    # Each attachment is noted by the job or left in a tally for the next one, never lost.
    assert int(notes[0].split()[0]) + sum(left) == 2, (notes, left)


# -- merging an incident while a group of intake requests routes to it and resolves it ---------
LOCKS_ALERTS = re.compile(r"FROM alerts\b.*FOR UPDATE", re.DOTALL)


@pytest.mark.parametrize("entry", ["api", "console"])
def test_a_merge_postgresql_ends_as_a_deadlock_with_an_intake_group_runs_once_more(
    settings: Settings, factory: Factory, runtime: Runtime, entry: str
) -> None:
    """Concurrent intake requests commit together (group commit): the group's first request
    routes an alert to the incident's service, whose lock it keeps, and its second locks an
    alert of the incident to resolve it, later than the services (each request keeps the
    lock order; the group does not). A merge of that incident holds its alerts and waits
    for the service: crosswise, and PostgreSQL ends the merge, which waited first. The
    person merging was answered 503 ("the database is busy"); the merge runs once more,
    once the group has committed, and goes through."""
    _postgres_only(settings)
    key = _integration(factory)
    factory.service("search")
    [ref] = send_batch(factory, key, firing_alert("a1", service="search"))["opened"]
    survivor = factory.incident(title="Search cluster degraded")
    responder = factory.user(Role.responder)

    def merge(session: Session) -> None:  # the entry point opens its own transactions
        if entry == "api":
            request = TransitionRequest(to=Status.merged, merged_into=survivor)
            incident_routes.transition_incident(ref, request, runtime, responder.actor)
        else:
            web_request = Request({"type": "http", "app": factory.client.app, "headers": []})
            answer = incident_pages.transition(
                web_request, ref, responder.actor, to="merged", merged_into=survivor
            )
            assert answer.status_code == 303, answer.body

    def group(session: Session) -> None:
        for alerts in ([firing_alert("b1", service="search")], [_resolved("a1", service="search")]):
            intake = signals.Intake(
                signals.get_integration(session, "prom"), settings.severity_policy
            )
            signals.ingest_alertmanager(session, intake, _batch(*alerts))

    with interleaving(runtime) as plan:
        # The group's first request holds the service; its second is about to lock a1.
        routing = plan.start(Step("intake", group, stop_before=LOCKS_ALERTS, stop_at_match=2))
        plan.reaches_stop(routing)
        merging = plan.start(Step("merge", merge))
        plan.waits_or_ends(merging)
        plan.finish(routing, merging)

    assert _incident(runtime, ref).status == Status.merged
    for fingerprint in ("a1", "b1"):
        assert _alert(runtime, fingerprint).incident_id == incidents.parse_ref(survivor)


# -- two people merging two incidents into each other ------------------------------------------
def test_merging_two_incidents_into_each_other_at_once_refuses_one(
    settings: Settings, factory: Factory, runtime: Runtime
) -> None:
    """Two people merge INC-1 into INC-2 and INC-2 into INC-1 at the same moment. Each locks
    the incident it merges, then the survivor: crosswise, unless both lock the two in one
    order. One merge happens; the other is refused as a merge into an incident that is not
    open any more, not ended by PostgreSQL as a deadlock."""
    _postgres_only(settings)
    first_ref = factory.incident(title="Search is down")
    second_ref = factory.incident(title="Search cluster degraded")
    one, other = factory.user(Role.responder), factory.user(Role.responder)

    def merge(actor: Any, ref: str, into: str) -> Callable[[Session], None]:
        def work(session: Session) -> None:
            incident = incidents.get_incident(session, ref)
            incidents.transition(session, actor, incident, Status.merged, merged_into=into)

        return work

    with interleaving(runtime) as plan:
        # The first merge holds one incident and is about to lock the other.
        merging = plan.start(
            Step(
                "first",
                merge(one.actor, first_ref, second_ref),
                stop_before=LOCKS_INCIDENT,
                stop_at_match=2,
            )
        )
        plan.reaches_stop(merging)
        crossing = plan.start(Step("second", merge(other.actor, second_ref, first_ref)))
        plan.waits_or_ends(crossing)
        merging.go()
        for step in (merging, crossing):
            assert step.thread is not None
            step.thread.join(WAIT_SECONDS)
            assert not step.thread.is_alive(), f"{step.name} is stuck"

    errors = [step.error for step in (merging, crossing) if step.error is not None]
    assert len(errors) == 1 and isinstance(errors[0], Conflict), errors
    statuses = sorted(_incident(runtime, ref).status for ref in (first_ref, second_ref))
    assert statuses == [Status.merged, Status.triage]
