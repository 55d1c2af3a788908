"""A storm keeps an incident's timeline readable: attach notes are coalesced per minute, and a
batch's known alerts are read together (the intake path the benchmarks drive)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

from alembic import command
from sqlalchemy import select

from firetower.auth.schemas import Role
from firetower.clock import FrozenClock
from firetower.incidents.models import Incident
from firetower.jobs import Job, Worker
from firetower.migrate import alembic_config, upgrade
from firetower.runtime import Runtime
from firetower.signals.models import Alert, AttachTally
from firetower.signals.service import ATTACHED_KIND
from tests.factories import ApiUser, Factory
from tests.signals_support import sql_run
from tests.test_signals_intake import _am_alert, _am_batch, _integration, _notes

T0 = datetime(2026, 11, 28, 12, 0, 10, tzinfo=UTC)


def _storm_setup(factory: Factory, runtime: Runtime) -> tuple[ApiUser, str, Worker]:
    """An admin, the Alertmanager intake URL of an integration of service ``db``, a worker."""
    admin = factory.user(Role.admin)
    factory.service("db")
    key = _integration(admin, "prom", "alertmanager", "db")
    return admin, f"/ingest/alertmanager/{key}", Worker(runtime.database, runtime.jobs, runtime.bus)


def test_a_storm_adds_two_attach_notes_a_minute_not_one_per_request(
    factory: Factory, runtime: Runtime
) -> None:
    admin, url, worker = _storm_setup(factory, runtime)

    def send(first: int, count: int) -> None:
        batch = _am_batch(*(_am_alert(f"s{n}") for n in range(first, first + count)))
        assert admin.client.post(url, json=batch).status_code == 200

    with FrozenClock(T0) as frozen:
        send(0, 10)  # the first alert opens the incident, nine join it: noted at once
        with runtime.read() as session:
            incident_id = session.scalars(select(Incident.id)).one()
        assert [n.text[:27] for n in _notes(runtime, incident_id)] == [
            "9 alerts from prom attached"
        ]
        for request in range(1, 5):  # forty more alerts in the same minute: no note yet
            frozen.advance(seconds=5)
            send(request * 10, 10)
        assert len(_notes(runtime, incident_id)) == 1
        worker.run_once()
        assert len(_notes(runtime, incident_id)) == 1, "the summing-up waits for the minute's end"

        frozen.advance(seconds=30)  # 12:01:00: the minute is over
        worker.run_once()
        notes = _notes(runtime, incident_id)
        assert len(notes) == 2
        assert notes[1].text.startswith("40 more alerts attached between 12:00 and 12:01 UTC")
        assert "Errors above 5% (s49)" in notes[1].text

        frozen.advance(seconds=10)  # a new minute: its first request is noted at once again
        send(50, 3)
        assert _notes(runtime, incident_id)[-1].text.startswith("3 alerts from prom attached")
        frozen.advance(minutes=1)
        worker.run_once()
        assert len(_notes(runtime, incident_id)) == 3, "nothing more joined: no second note"

    with runtime.read() as session:
        joined = session.scalars(select(Alert.incident_id)).all()
    assert len(joined) == 53 and set(joined) == {incident_id}


def test_a_repeat_updates_only_the_columns_it_changes(factory: Factory, runtime: Runtime) -> None:
    """An UPDATE of every column made SQLite rewrite every index of the row and check its
    foreign keys: a storm's repeats, which change a count and a time, took twice as long.
    Whatever changes is still written, and nothing else."""
    admin = factory.user(Role.admin)
    factory.service("db")
    key = _integration(admin, "prom", "alertmanager", "db")
    url = f"/ingest/alertmanager/{key}"

    def assigned(statement: str) -> set[str]:
        # SQLite's UPDATE takes one row's values; PostgreSQL's a JSON array of records.
        listed = re.fullmatch(
            r"UPDATE alerts SET (.*?) (FROM jsonb_to_recordset\(.*\) AS changed\(.*\) )?"
            r"WHERE (id = \?|alerts\.id = changed\.id)",
            statement.strip(),
        )
        assert listed is not None, statement
        return {part.split(" = ")[0] for part in listed.group(1).split(", ")}

    def send(*alerts: dict[str, Any]) -> list[str]:
        with sql_run(runtime.database.engine) as ran:
            assert admin.client.post(url, json=_am_batch(*alerts)).status_code == 200
        return [statement for statement, _ in ran if statement.lstrip().startswith("UPDATE alerts")]

    with FrozenClock(T0) as frozen:
        send(*(_am_alert(f"r{n}") for n in range(3)))
        frozen.advance(seconds=5)
        [repeat] = send(*(_am_alert(f"r{n}") for n in range(3)))  # one statement, three rows
        assert assigned(repeat) == {"count", "last_seen_at"}

        frozen.advance(seconds=5)
        changed = _am_alert("r0", "resolved")
        changed["annotations"] = {"summary": "Errors back under 5%"}
        [resolving] = send(changed)
        assert {"status", "ends_at", "annotations", "title", "state_changes"} <= assigned(resolving)
        assert not {"incident_id", "integration_id", "fingerprint", "group_key"} & assigned(
            resolving
        )
    with runtime.read() as session:
        alerts = {a.fingerprint: a for a in session.scalars(select(Alert))}
    assert (alerts["r0"].status, alerts["r0"].count, alerts["r0"].title) == (
        "resolved",
        3,
        "Errors back under 5%",
    )
    assert alerts["r0"].ends_at == datetime(2026, 11, 28, 10, 5, tzinfo=UTC)
    assert alerts["r0"].last_seen_at == T0 + timedelta(seconds=10)
    assert [(alerts[f].count, alerts[f].status) for f in ("r1", "r2")] == [(2, "firing")] * 2
    assert (alerts["r1"].attached_at, alerts["r1"].last_seen_at) == (T0, T0 + timedelta(seconds=5))


def test_a_batch_with_a_fingerprint_twice_keeps_one_alert_counted_twice(
    factory: Factory, runtime: Runtime
) -> None:
    admin = factory.user(Role.admin)
    factory.service("db")
    key = _integration(admin, "prom", "alertmanager", "db")
    url = f"/ingest/alertmanager/{key}"
    batch = _am_batch(_am_alert("dup"), _am_alert("other"), _am_alert("dup", "resolved"))
    assert admin.client.post(url, json=batch).status_code == 200
    with runtime.read() as session:
        alerts = {a.fingerprint: a for a in session.scalars(select(Alert))}
    assert set(alerts) == {"dup", "other"}
    assert (alerts["dup"].count, alerts["dup"].status) == (2, "resolved")
    assert alerts["other"].incident_id is not None
    assert alerts["dup"].last_seen_at - alerts["dup"].first_seen_at < timedelta(seconds=5)


def test_a_batch_routed_across_a_minute_boundary_is_noted_in_the_minute_it_joined(
    factory: Factory, runtime: Runtime
) -> None:
    """The note job's minute and the alerts' attached_at come from one time: otherwise a batch
    that starts at 12:00:59.9 and finishes at 12:01 is noted for 12:01 but summed up (again)
    by the job of 12:00."""
    from firetower.signals import service as signals
    from firetower.signals.schemas import AlertmanagerPayload

    admin = factory.user(Role.admin)
    factory.service("db")
    key = _integration(admin, "prom", "alertmanager", "db")
    opening = datetime(2026, 11, 28, 12, 0, 0, tzinfo=UTC)
    with FrozenClock(opening) as frozen:
        url = f"/ingest/alertmanager/{key}"
        assert admin.client.post(url, json=_am_batch(_am_alert("m0"))).status_code == 200
        frozen.advance(seconds=59.9)
        payload = AlertmanagerPayload.model_validate(_am_batch(_am_alert("m1"), _am_alert("m2")))
        with runtime.transaction() as session:
            integration = signals.authenticate(session, key, "alertmanager")
            intake = signals.Intake(integration, runtime.settings.severity_policy)
            signals.receive_all(session, intake, signals_of(signals, payload, intake))
            frozen.advance(seconds=0.2)  # routing took the batch past the minute
            signals.finish(session, intake)
    with runtime.read() as session:
        attached = set(session.scalars(select(Alert.attached_at).where(Alert.fingerprint != "m0")))
        jobs = session.scalars(select(Job).where(Job.kind == signals.ATTACHED_KIND)).all()
    assert attached == {opening + timedelta(seconds=59.9)}
    assert sorted(job.payload["since"] for job in jobs) == [opening.isoformat()]


def test_the_minute_summary_reads_no_alerts_and_a_request_adds_one_statement(
    factory: Factory, runtime: Runtime
) -> None:
    """Each storm minute queues a summary job per incident, run in the write turn: counting
    the minute's alerts took an index of alerts by incident and time, an entry per new alert.
    Each later request of the minute adds its count to the minute's tally instead (one
    statement), and the job reads the tally, not the alerts."""
    admin, url, worker = _storm_setup(factory, runtime)
    engine = runtime.database.engine

    def tallies_written(statements: list[tuple[str, Any]]) -> list[str]:
        return [s for s, _ in statements if "attach_tallies" in s]

    with FrozenClock(T0) as frozen:
        for request in range(3):  # opens the incident and is noted; the next two join after
            batch = _am_batch(*(_am_alert(f"p{request}-{n}") for n in range(5)))
            with sql_run(engine) as sent:
                assert admin.client.post(url, json=batch).status_code == 200
            assert len(tallies_written(sent)) == (0 if request == 0 else 1), sent
            frozen.advance(seconds=5)
        frozen.advance(minutes=1)
        with sql_run(engine) as ran:
            worker.run_once()
    with runtime.read() as session:
        incident_id = session.scalars(select(Incident.id)).one()
        left = session.scalars(select(AttachTally)).all()
    assert _notes(runtime, incident_id)[-1].text.startswith("10 more alerts attached between 12:00")
    assert not [s for s, _ in ran if "FROM alerts" in s], ran
    assert left == []  # noted, then deleted


def signals_of(signals: Any, payload: Any, intake: Any) -> list[Any]:
    """The Signal values ingest_alertmanager would build (its own loop, without finishing)."""
    return [
        signals.Signal(
            fingerprint=item.fingerprint,
            status=item.status,
            title=item.annotations.get("summary", ""),
            service_name=intake.integration.service_name,
            labels=item.labels,
            annotations=item.annotations,
            starts_at=item.startsAt,
        )
        for item in payload.alerts
    ]


def test_the_minute_summary_counts_only_alerts_that_joined_after_the_first_note(
    factory: Factory, runtime: Runtime
) -> None:
    """One alert opens the incident, the next request is the minute's first note, a third
    joins after it: the summary names that third alone, not the opener nor the noted one."""
    admin, url, worker = _storm_setup(factory, runtime)

    def send(fingerprint: str, summary: str) -> None:
        alert = {**_am_alert(fingerprint), "annotations": {"summary": summary}}
        assert admin.client.post(url, json=_am_batch(alert)).status_code == 200

    with FrozenClock(datetime(2026, 11, 28, 10, 55, 5, tzinfo=UTC)) as frozen:
        send("checkout", "Checkout errors above 5%")  # opens the incident
        frozen.advance(seconds=5)
        send("disk", "Disk full on db-1")  # the minute's first note names it
        frozen.advance(seconds=5)
        send("nodedup", "no dedup")  # joins after the first note
        with runtime.read() as session:
            incident_id = session.scalars(select(Incident.id)).one()
        frozen.advance(minutes=1)
        worker.run_once()
    notes = [n.text for n in _notes(runtime, incident_id)]
    assert notes == [
        "1 alert from prom attached: Disk full on db-1",
        "1 more alert attached between 10:55 and 10:56 UTC (latest: no dedup)",
    ]


def test_a_request_tallied_after_its_minutes_job_ran_is_summed_up_by_the_next_one(
    factory: Factory, runtime: Runtime
) -> None:
    """A request takes its time before it waits for the write turn, so under load one of
    12:00 may commit after 12:00's job has run: the next job of the incident sums it up with
    its own minute's, over both minutes, and no tally is left behind."""
    admin, url, worker = _storm_setup(factory, runtime)

    def send(name: str, count: int) -> None:
        batch = _am_batch(*(_am_alert(f"{name}{n}") for n in range(count)))
        assert admin.client.post(url, json=batch).status_code == 200

    with FrozenClock(T0) as frozen:  # 12:00:10
        send("a", 5)  # opens the incident, four join: noted at once
        frozen.advance(seconds=5)
        send("b", 5)
        frozen.advance(seconds=45)  # 12:01:00
        worker.run_once()
        frozen.current = T0 + timedelta(seconds=40)  # a request of 12:00:50, committed late
        send("c", 3)
        frozen.current = T0 + timedelta(seconds=80)  # 12:01:30: the minute's first note
        send("d", 1)
        frozen.advance(seconds=10)
        send("e", 2)
        frozen.advance(seconds=20)  # 12:02:00
        worker.run_once()
    with runtime.read() as session:
        incident_id = session.scalars(select(Incident.id)).one()
        left = session.scalars(select(AttachTally)).all()
    assert [n.text for n in _notes(runtime, incident_id)] == [
        "4 alerts from prom attached: Errors above 5% (a1); Errors above 5% (a2); "
        "Errors above 5% (a3); Errors above 5% (a4)",
        "5 more alerts attached between 12:00 and 12:01 UTC (latest: Errors above 5% (b4); "
        "Errors above 5% (b3); Errors above 5% (b2); Errors above 5% (b1); Errors above 5% (b0))",
        "1 alert from prom attached: Errors above 5% (d0)",
        "5 more alerts attached between 12:00 and 12:02 UTC "
        "(latest: Errors above 5% (e1); Errors above 5% (e0); …)",
    ]
    assert left == []


def test_the_minute_jobs_queued_before_the_tallies_note_what_they_would_have(
    factory: Factory, runtime: Runtime
) -> None:
    """Migration 0018: a minute job queued by the version before counts the alerts that joined
    after its ``noted_at``; the upgrade takes that count into a tally, so the new job notes it."""
    admin, url, worker = _storm_setup(factory, runtime)
    engine = runtime.database.engine
    with FrozenClock(T0) as frozen:
        for request in range(3):
            batch = _am_batch(*(_am_alert(f"p{request}-{n}") for n in range(5)))
            assert admin.client.post(url, json=batch).status_code == 200
            frozen.advance(seconds=5)
        command.downgrade(alembic_config(engine), "0017")
        with runtime.transaction() as session:
            job = session.scalars(select(Job).where(Job.kind == ATTACHED_KIND)).one()
            job.payload = {**job.payload, "noted_at": T0.isoformat()}  # as 0017's finish wrote
        upgrade(engine)
        frozen.advance(minutes=1)
        worker.run_once()
    with runtime.read() as session:
        incident_id = session.scalars(select(Incident.id)).one()
    assert _notes(runtime, incident_id)[-1].text == (
        "10 more alerts attached between 12:00 and 12:01 UTC (latest: "
        + "; ".join(f"Errors above 5% (p2-{n})" for n in range(4, -1, -1))
        + "; "
        + "; ".join(f"Errors above 5% (p1-{n})" for n in range(4, -1, -1))
        + ")"
    )
