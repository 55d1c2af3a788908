"""Intake writes alerts as plain rows with its own encoding: the ORM must read them back as
it would have written them, on both databases."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select
from sqlalchemy.exc import DataError

from firetower.runtime import Runtime
from firetower.signals import intake_rows
from firetower.signals.models import Alert
from tests.signals_support import alert_row, bare_integration, sql_run

texts = st.text(
    alphabet=st.characters(codec="utf-8", exclude_characters="\x00"),
    max_size=30,
)
label_maps = st.dictionaries(texts, texts, max_size=4)
times = st.datetimes(
    min_value=datetime(1, 1, 2),
    max_value=datetime(9999, 12, 30),
    timezones=st.sampled_from([UTC, timezone(timedelta(hours=-7)), timezone(timedelta(hours=5))]),
)


def _read(runtime: Runtime, fingerprint: str) -> Alert:
    with runtime.read() as session:
        alert = session.scalar(select(Alert).where(Alert.fingerprint == fingerprint))
        assert alert is not None
        return alert


def test_rows_written_in_bulk_read_back_through_the_orm(runtime: Runtime) -> None:
    integration_id = bare_integration(runtime)
    counter = iter(range(10_000))

    @settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(
        labels=label_maps,
        annotations=label_maps,
        starts=times,
        ends=st.none() | times,
        flags=st.tuples(st.booleans(), st.booleans(), st.booleans()),
    )
    def check(
        labels: dict[str, str],
        annotations: dict[str, str],
        starts: datetime,
        ends: datetime | None,
        flags: tuple[bool, bool, bool],
    ) -> None:
        silenced, flapping, inhibited = flags
        fingerprint = f"f{next(counter)}"
        row = alert_row(
            integration_id,
            fingerprint,
            labels=labels,
            annotations=annotations,
            starts_at=starts,
            ends_at=ends,
            silenced=silenced,
            flapping=flapping,
            inhibited=inhibited,
            state_changes=[starts.isoformat()],
        )
        with runtime.transaction() as session:
            intake_rows.write(session, [row])
        alert = _read(runtime, fingerprint)
        assert alert.labels == labels
        assert alert.annotations == annotations
        assert alert.starts_at == starts
        assert alert.ends_at == ends
        assert alert.starts_at is not None and alert.starts_at.tzinfo is not None
        assert (alert.silenced, alert.flapping, alert.inhibited) == flags
        assert all(type(flag) is bool for flag in (alert.silenced, alert.flapping, alert.inhibited))
        assert alert.state_changes == [starts.isoformat()]

    check()


_VARIED_COLUMNS = {
    "status": st.sampled_from(["firing", "resolved"]),
    "title": texts,
    "severity": st.sampled_from(["SEV1", "SEV3"]),
    "service_name": st.none() | st.sampled_from(["api", "db"]),
    "labels": label_maps,
    "annotations": label_maps,
    "starts_at": st.none() | times,
    "count": st.integers(1, 3),
    "silenced": st.booleans(),
    "group_key": texts,
    "routing_action": st.none() | st.sampled_from(["open", "attach"]),
    "attached_at": st.none() | times,
}


def _as_stored(alert: Alert) -> dict[str, object]:
    return {name: getattr(alert, name) for name in ("fingerprint", *_VARIED_COLUMNS)}


def test_a_batch_binds_a_value_its_rows_share_once_and_reads_back_each_row(
    runtime: Runtime,
) -> None:
    """SQLite's INSERT of many rows binds a column that every row has alike once: rows
    where some columns vary and others do not read back exactly as written, each value in
    its own column and row."""
    integration_id = bare_integration(runtime)
    counter = iter(range(100_000))
    rows_per_batch = 111  # one statement of each size: 100, 10 and 1 rows

    @settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(
        choices=st.fixed_dictionaries(
            {
                name: st.tuples(drawn, drawn, st.booleans())
                for name, drawn in _VARIED_COLUMNS.items()
            }
        )
    )
    def check(choices: dict[str, tuple[object, object, bool]]) -> None:
        rows = []
        for place in range(rows_per_batch):
            values = {
                name: second if varies and place % 2 else first
                for name, (first, second, varies) in choices.items()
            }
            rows.append(alert_row(integration_id, f"b{next(counter)}", **values))
        expected = [{"fingerprint": row.fingerprint, **_as_written(row)} for row in rows]
        with sql_run(runtime.database.engine) as ran, runtime.transaction() as session:
            intake_rows.write(session, rows)
        with runtime.read() as session:
            stored = session.scalars(
                select(Alert)
                .where(Alert.fingerprint.in_([row.fingerprint for row in rows]))
                .order_by(Alert.id)
            )
            assert [_as_stored(alert) for alert in stored] == expected
        if runtime.database.dialect == "sqlite":
            (hundred, *_) = [p for s, p in ran if s.startswith("INSERT INTO alerts")]
            encoder = intake_rows.Encoder("sqlite")
            stored_values = [
                encoder.column([getattr(row, name) for row in rows[:100]], place)
                for place, name in enumerate(intake_rows.COLUMNS)
            ]
            alike = sum(1 for column in stored_values if len(set(column)) == 1)
            varied = len(intake_rows.COLUMNS) - alike
            assert len(hundred) == alike + 100 * varied  # the fingerprint varies at least

    check()


def _as_written(row: intake_rows.AlertRow) -> dict[str, object]:
    return {name: getattr(row, name) for name in _VARIED_COLUMNS}


def test_a_changed_row_is_updated_and_read_back_by_load(runtime: Runtime) -> None:
    integration_id = bare_integration(runtime)
    row = alert_row(integration_id, "again", labels={"a": "1"})
    with runtime.transaction() as session:
        intake_rows.write(session, [row])
        intake_rows.read_ids(session, integration_id, [row])
    assert row.id is not None and row.stored and not row.dirty

    with runtime.transaction() as session:
        (loaded,) = intake_rows.load(session, integration_id, ["again", "missing"])
        assert loaded.id == row.id and loaded.labels == {"a": "1"} and loaded.stored
        loaded.count = 7
        loaded.labels = {"a": "2"}
        loaded.attached_at = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
        loaded.dirty = True
        intake_rows.write(session, [loaded])

    alert = _read(runtime, "again")
    assert (alert.count, alert.labels, alert.attached_at) == (
        7,
        {"a": "2"},
        datetime(2026, 11, 28, 12, 0, tzinfo=UTC),
    )


def test_times_stored_by_rows_compare_in_time_order_with_orm_values(runtime: Runtime) -> None:
    """SQLite compares datetimes as text: a bulk-written time must sort like an ORM one."""
    integration_id = bare_integration(runtime)
    on_the_minute = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
    with runtime.transaction() as session:
        intake_rows.write(session, [alert_row(integration_id, "edge", attached_at=on_the_minute)])
    with runtime.read() as session:
        found = session.scalar(select(Alert.fingerprint).where(Alert.attached_at >= on_the_minute))
        later = session.scalar(select(Alert.fingerprint).where(Alert.attached_at > on_the_minute))
    assert (found, later) == ("edge", None)


def test_two_requests_changing_one_alert_do_not_lose_either_change(runtime: Runtime) -> None:
    """A row is read, changed in Python and written back whole: a second writer must wait
    for the first (PostgreSQL: the read locks the row; SQLite: one writer at a time), else
    it writes back what it read before the first committed."""
    import threading
    import time

    integration_id = bare_integration(runtime)
    with runtime.transaction() as session:
        intake_rows.write(session, [alert_row(integration_id, "shared")])
    first_read = threading.Event()

    def second_writer() -> None:
        first_read.wait(timeout=10)
        with runtime.transaction() as session:
            (row,) = intake_rows.load(session, integration_id, ["shared"])
            row.count += 1
            row.dirty = True
            intake_rows.write(session, [row])

    thread = threading.Thread(target=second_writer)
    thread.start()
    with runtime.transaction() as session:
        (row,) = intake_rows.load(session, integration_id, ["shared"])
        first_read.set()
        time.sleep(0.3)  # the second writer reads now, if nothing stops it
        row.count = 10
        row.dirty = True
        intake_rows.write(session, [row])
    thread.join(timeout=20)

    assert _read(runtime, "shared").count == 11


def test_text_the_fast_encoder_refuses_is_written_as_the_orm_would() -> None:
    """Rows stored before intake refused lone surrogates still hold them; they stay writable."""
    import json

    value = {"note": "half a pair: \ud800"}
    assert intake_rows._to_json(value) == json.dumps(value).encode()
    assert json.loads(intake_rows._to_json(value)) == value


def test_postgresql_plans_the_known_alert_lookup_afresh_each_time(runtime: Runtime) -> None:
    """A prepared statement may keep the plan it got while ``alerts`` was small: intake then
    scanned all of an integration's alerts per batch and a storm slowed as the table grew."""
    from sqlalchemy import text

    if runtime.database.dialect == "sqlite":
        pytest.skip("PostgreSQL only: SQLite plans every statement in the process itself")
    integration_id = bare_integration(runtime)
    with runtime.transaction() as session:
        for _ in range(10):  # psycopg prepares a statement on its fifth run by default
            intake_rows.load(session, integration_id, ["a", "b"])
        prepared = session.execute(text("SELECT count(*) FROM pg_prepared_statements")).scalar()
    assert prepared == 0


def test_an_encoder_prepared_ahead_encodes_each_object_as_it_was_given() -> None:
    """Values encoded before the write lock are found again by identity, never confused
    with another object that happens to be equal or to come later."""
    from firetower.signals.service import Signal

    starts = datetime(2026, 11, 28, 9, 30, tzinfo=timezone(timedelta(hours=2)))
    signal = Signal("f1", "firing", labels={"team": "api"}, starts_at=starts)
    encoder = intake_rows.Encoder("sqlite")
    encoder.prepare([signal])
    assert encoder.json(signal.labels) == '{"team":"api"}'
    assert encoder.time(starts) == "2026-11-28 07:30:00.000000"
    for _ in range(1000):  # fresh objects, some at addresses freed meanwhile
        other = {"team": f"web-{_}"}
        assert encoder.json(other) == f'{{"team":"web-{_}"}}'
        del other
    assert encoder.json({"team": "api"}) == '{"team":"api"}'
    # Times are remembered by value too: the same instant in another zone, a new object.
    assert encoder.time(starts.astimezone(UTC)) == "2026-11-28 07:30:00.000000"
    assert encoder.time(starts + timedelta(microseconds=1)) == "2026-11-28 07:30:00.000001"
    assert encoder.time(datetime(2026, 11, 28, 7, 30, tzinfo=UTC)) == "2026-11-28 07:30:00.000000"


def test_a_row_inserted_without_its_id_is_updated_by_a_later_write(runtime: Runtime) -> None:
    """Found by batching Events v2: a trigger inserted, then a resolve of it in the same
    request. The update finds its row by id, which the INSERT did not return."""
    integration_id = bare_integration(runtime)
    row = alert_row(integration_id, "disk")
    with runtime.transaction() as session:
        intake_rows.write(session, [row])
        assert row.id is None
        row.status, row.count, row.dirty = "resolved", 2, True
        intake_rows.write(session, [row])
    with runtime.read() as session:
        stored = session.scalars(select(Alert)).one()
    assert (stored.fingerprint, stored.status, stored.count) == ("disk", "resolved", 2)


def _orm_values(runtime: Runtime, fingerprint: str) -> dict[str, object]:
    alert = _read(runtime, fingerprint)
    return {name: getattr(alert, name) for name in intake_rows.COLUMNS}


def test_load_decodes_rows_as_the_orm_and_an_update_writes_what_changed(
    runtime: Runtime,
) -> None:
    """SQLite's known rows are decoded at the driver, not by the column types, and an update
    writes only the columns that differ from what was read: both must agree with the ORM,
    whatever changed."""
    integration_id = bare_integration(runtime)
    counter = iter(range(10_000))
    changes = st.fixed_dictionaries(
        {},
        optional={
            "status": st.sampled_from(["firing", "resolved", "acknowledged"]),
            "title": texts,
            "labels": label_maps,
            "annotations": label_maps,
            "starts_at": st.none() | times,
            "ends_at": st.none() | times,
            "last_seen_at": times,
            "count": st.integers(min_value=1, max_value=2**31 - 1),
            "silenced": st.booleans(),
            "flapping": st.booleans(),
            "state_changes": st.lists(texts, max_size=3),
            "routed_by": st.none() | texts,
            "attached_at": st.none() | times,
        },
    )

    @settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(labels=label_maps, ends=st.none() | times, flags=st.booleans(), changed=changes)
    def check(
        labels: dict[str, str], ends: datetime | None, flags: bool, changed: dict[str, object]
    ) -> None:
        fingerprint = f"u{next(counter)}"
        row = alert_row(integration_id, fingerprint, labels=labels, ends_at=ends, inhibited=flags)
        with runtime.transaction() as session:
            intake_rows.write(session, [row])
        with runtime.transaction() as session:
            (loaded,) = intake_rows.load(session, integration_id, [fingerprint])
            as_read = {name: getattr(loaded, name) for name in intake_rows.COLUMNS}
            assert as_read == _orm_values(runtime, fingerprint)
            for name in ("silenced", "flapping", "inhibited"):
                assert type(as_read[name]) is bool
            for name in ("first_seen_at", "last_seen_at", "ends_at"):
                value = as_read[name]
                assert value is None or value.tzinfo is UTC  # type: ignore[attr-defined]
            for name, value in changed.items():
                setattr(loaded, name, value)
            loaded.dirty = True
            intake_rows.write(session, [loaded])
        assert _orm_values(runtime, fingerprint) == {**as_read, **changed}

    check()


def test_a_naive_time_is_refused_and_nothing_is_written(runtime: Runtime) -> None:
    """Times are stored as UTC, and a naive one has no zone to convert from. On PostgreSQL
    the rows go as JSON text, where the server would read it in its own zone."""
    integration_id = bare_integration(runtime)
    naive = datetime(2026, 11, 28, 12, 0)
    refused = "naive datetime refused"
    with pytest.raises(ValueError, match=refused), runtime.transaction() as session:
        intake_rows.write(session, [alert_row(integration_id, "new", starts_at=naive)])

    stored = alert_row(integration_id, "stored")
    with runtime.transaction() as session:
        intake_rows.write(session, [stored])
        intake_rows.read_ids(session, integration_id, [stored])
    stored.attached_at, stored.dirty = naive, True
    with pytest.raises(ValueError, match=refused), runtime.transaction() as session:
        intake_rows.write(session, [stored])

    with runtime.read() as session:
        assert session.execute(select(Alert.fingerprint, Alert.attached_at)).all() == [
            ("stored", None)
        ]


def test_postgresql_refuses_a_value_too_long_for_its_column(runtime: Runtime) -> None:
    """PostgreSQL takes the rows as JSON records: a value longer than its column is refused
    as an INSERT of it would be, never cut to fit."""
    if runtime.database.dialect == "sqlite":
        pytest.skip("PostgreSQL only: SQLite does not hold text to a column's length")
    integration_id = bare_integration(runtime)
    with pytest.raises(DataError, match="too long"), runtime.transaction() as session:
        intake_rows.write(session, [alert_row(integration_id, "f" * 256)])
    with runtime.read() as session:
        assert session.scalars(select(Alert.fingerprint)).all() == []


def test_a_time_with_an_offset_in_seconds_is_stored_as_the_same_instant(
    runtime: Runtime,
) -> None:
    """Found in review: JSON from pydantic-core writes an offset to the minute only, so on
    PostgreSQL a time at +05:30:15 was stored 15 seconds off. Inserted and updated alike."""
    integration_id = bare_integration(runtime)
    odd_zone = timezone(timedelta(hours=5, minutes=30, seconds=15, microseconds=500))
    starts = datetime(2026, 11, 28, 12, 0, tzinfo=odd_zone)
    row = alert_row(integration_id, "odd", starts_at=starts)
    with runtime.transaction() as session:
        intake_rows.write(session, [row])
        intake_rows.read_ids(session, integration_id, [row])
    assert _read(runtime, "odd").starts_at == starts

    attached = datetime(2026, 11, 28, 13, 0, tzinfo=odd_zone)
    row.attached_at, row.dirty = attached, True
    with runtime.transaction() as session:
        intake_rows.write(session, [row])
    stored = _read(runtime, "odd")
    assert (stored.starts_at, stored.attached_at) == (starts, attached)
    assert stored.attached_at is not None
    assert stored.attached_at.utcoffset() == timedelta(0)


def test_a_time_out_of_range_in_utc_is_refused_and_nothing_is_written(runtime: Runtime) -> None:
    """Found in review: on PostgreSQL such a time was stored (a year 0, or 10000) and every
    later read of the row failed. It is refused as binding it through the ORM would be."""
    integration_id = bare_integration(runtime)
    too_early = datetime(1, 1, 1, 0, 30, tzinfo=timezone(timedelta(hours=1)))
    with pytest.raises(OverflowError), runtime.transaction() as session:
        intake_rows.write(session, [alert_row(integration_id, "early", starts_at=too_early)])
    with runtime.read() as session:
        assert session.scalars(select(Alert.fingerprint)).all() == []
