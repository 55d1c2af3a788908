"""Alert keys: every alert is found by (integration, fingerprint) through ``alert_keys``,
and on SQLite through ``alert_keys_folded`` once its key is folded there."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from typing import Any

import pytest
from alembic import command
from sqlalchemy import Connection, select, text
from sqlalchemy.exc import IntegrityError

from firetower import clock
from firetower.auth.schemas import Role
from firetower.db import Database
from firetower.metrics import REGISTRY
from firetower.migrate import alembic_config, upgrade
from firetower.runtime import Runtime
from firetower.signals import intake_rows
from firetower.signals.models import Alert, AlertKey, FoldedAlertKey, MergedAlertKey
from tests.factories import Factory
from tests.signals_support import alert_row, bare_integration, send_batch


def _alert(fingerprint: str, status: str = "firing") -> dict[str, Any]:
    return {
        "status": status,
        "labels": {"alertname": "DiskFull", "instance": fingerprint},
        "annotations": {},
        "startsAt": "2026-11-29T10:00:00Z",
        "endsAt": "0001-01-01T00:00:00Z" if status == "firing" else "2026-11-29T10:05:00Z",
        "fingerprint": fingerprint,
    }


def _keys(runtime: Runtime) -> tuple[list[str], list[str]]:
    """The fingerprints in ``alert_keys`` and in ``alert_keys_folded``, each in key order."""
    with runtime.read() as session:
        return (
            list(session.scalars(select(AlertKey.fingerprint).order_by(AlertKey.fingerprint))),
            list(
                session.scalars(
                    select(FoldedAlertKey.fingerprint).order_by(FoldedAlertKey.fingerprint)
                )
            ),
        )


def _orm_alert(integration_id: int, fingerprint: str) -> Alert:
    return Alert(
        integration_id=integration_id,
        fingerprint=fingerprint,
        status="firing",
        title="t",
        severity="SEV3",
        labels={},
        annotations={},
        first_seen_at=clock.now(),
        last_seen_at=clock.now(),
    )


def test_repeats_find_their_alert_before_and_after_its_key_is_folded(
    factory: Factory, runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(intake_rows, "FOLD_EVERY_ALERTS", 4)
    admin = factory.user(Role.admin)
    answer = admin.post("/api/v1/integrations", json={"name": "am", "kind": "alertmanager"})
    key = answer.json()["key"]

    send_batch(factory, key, *(_alert(f"f{n}") for n in range(4)))
    if runtime.database.dialect == "sqlite":  # alert 4 passed the fold's multiple
        assert _keys(runtime) == ([], ["f0", "f1", "f2", "f3"])
    else:  # PostgreSQL never folds
        assert _keys(runtime) == (["f0", "f1", "f2", "f3"], [])

    send_batch(factory, key, _alert("f1"), _alert("f4"), _alert("f5"))  # alerts 5 and 6
    send_batch(factory, key, _alert("f4"), _alert("f2", "resolved"))
    if runtime.database.dialect == "sqlite":
        assert _keys(runtime) == (["f4", "f5"], ["f0", "f1", "f2", "f3"])
    else:
        assert _keys(runtime) == ([f"f{n}" for n in range(6)], [])

    with runtime.read() as session:
        alerts = {a.fingerprint: (a.count, a.status) for a in session.scalars(select(Alert))}
    assert alerts == {
        "f0": (1, "firing"),
        "f1": (2, "firing"),
        "f2": (2, "resolved"),
        "f3": (1, "firing"),
        "f4": (2, "firing"),
        "f5": (1, "firing"),
    }
    if runtime.database.dialect == "sqlite":
        send_batch(factory, key, _alert("f6"), _alert("f7"))  # alert 8 passes the next one
        assert _keys(runtime) == ([], [f"f{n}" for n in range(8)])


def test_a_row_whose_key_was_folded_in_its_own_transaction_is_updated(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The update of a row inserted without its id reads the id through the folded keys."""
    monkeypatch.setattr(intake_rows, "FOLD_EVERY_ALERTS", 1)
    integration_id = bare_integration(runtime)
    row = alert_row(integration_id, "disk")
    with runtime.transaction() as session:
        intake_rows.write(session, [row])
        row.status, row.count, row.dirty = "resolved", 2, True
        intake_rows.write(session, [row])
    with runtime.read() as session:
        stored = session.scalars(select(Alert)).one()
    assert (stored.status, stored.count) == ("resolved", 2)
    folded = runtime.database.dialect == "sqlite"
    assert _keys(runtime) == (([], ["disk"]) if folded else (["disk"], []))


def test_a_fold_is_due_each_time_the_ids_pass_a_multiple(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(intake_rows, "FOLD_EVERY_ALERTS", 100)
    assert intake_rows.fold_due(1, 100) and intake_rows.fold_due(100, 100)
    assert intake_rows.fold_due(50, 250) and intake_rows.fold_due(199, 200)
    assert not intake_rows.fold_due(1, 99) and not intake_rows.fold_due(101, 199)


def test_the_database_refuses_a_second_alert_with_a_key_not_folded(runtime: Runtime) -> None:
    """The trigger's key row takes the place of the unique index ``alerts`` had."""
    integration_id = bare_integration(runtime)
    with runtime.transaction() as session:
        intake_rows.write(session, [alert_row(integration_id, "twice")])
    with pytest.raises(IntegrityError), runtime.transaction() as session:
        intake_rows.write(session, [alert_row(integration_id, "twice")])
    with runtime.transaction() as session:
        intake_rows.write(session, [alert_row(integration_id, "once")])
        session.add(_orm_alert(integration_id, "by the orm"))
    assert _keys(runtime) == (["by the orm", "once", "twice"], [])
    with runtime.read() as session:
        found = intake_rows.load(session, integration_id, ["by the orm"])
    assert [row.fingerprint for row in found] == ["by the orm"]


def test_the_database_refuses_a_second_alert_with_a_key_already_folded(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found in review: a duplicate that got past intake's lookup made every later fold
    fail on the folded table's primary key, and intake with it."""
    monkeypatch.setattr(intake_rows, "FOLD_EVERY_ALERTS", 1)
    integration_id = bare_integration(runtime)
    with runtime.transaction() as session:
        intake_rows.write(session, [alert_row(integration_id, "folded")])
    with pytest.raises(IntegrityError), runtime.transaction() as session:
        session.add(_orm_alert(integration_id, "folded"))
    with runtime.transaction() as session:  # folds go on
        intake_rows.write(session, [alert_row(integration_id, "next")])
    folded = runtime.database.dialect == "sqlite"
    both = ["folded", "next"]
    assert _keys(runtime) == (([], both) if folded else (both, []))


def test_two_writers_of_one_new_key_the_second_is_refused(runtime: Runtime) -> None:
    """What group commit retries on PostgreSQL: the second writer of a key new to both waits
    for the first and then fails on ``alert_keys``' primary key, as on the unique index.
    On SQLite the second waits for the write lock, with the same outcome."""
    integration_id = bare_integration(runtime)
    outcome: list[BaseException | None] = []

    def second_writer() -> None:
        try:
            with runtime.transaction() as session:
                intake_rows.write(session, [alert_row(integration_id, "raced")])
            outcome.append(None)
        except IntegrityError as error:
            outcome.append(error)

    with runtime.transaction() as session:
        intake_rows.write(session, [alert_row(integration_id, "raced")])
        session.flush()
        second = threading.Thread(target=second_writer)
        second.start()
        second.join(timeout=0.5)
        assert second.is_alive()  # waiting for the first writer
    second.join(timeout=20)
    [error] = outcome
    assert isinstance(error, IntegrityError)
    if runtime.database.dialect == "postgresql":
        assert getattr(error.orig, "sqlstate", None) == "23505"
    with runtime.read() as session:
        assert [a.fingerprint for a in session.scalars(select(Alert))] == ["raced"]


def test_a_deleted_alert_takes_its_key_with_it(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(intake_rows, "FOLD_EVERY_ALERTS", 2)
    integration_id = bare_integration(runtime)
    with runtime.transaction() as session:
        intake_rows.write(session, [alert_row(integration_id, "a"), alert_row(integration_id, "b")])
        intake_rows.write(session, [alert_row(integration_id, "c")])  # SQLite folded a and b
    with runtime.transaction() as session:
        session.execute(text("DELETE FROM alerts WHERE fingerprint IN ('a', 'c')"))
    folded = runtime.database.dialect == "sqlite"
    assert _keys(runtime) == (([], ["b"]) if folded else (["b"], []))
    with runtime.transaction() as session:  # both can be stored again
        intake_rows.write(session, [alert_row(integration_id, "a"), alert_row(integration_id, "c")])
    with runtime.read() as session:
        found = intake_rows.load(session, integration_id, ["a", "b", "c"])
    assert sorted(row.fingerprint for row in found) == ["a", "b", "c"]


def test_one_large_write_folds_once_and_a_rolled_back_fold_leaves_nothing(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """111 new alerts go in as INSERTs of 100, 10 and 1 rows and pass two multiples of 50:
    the ids the last INSERT reports must cover all of them."""
    monkeypatch.setattr(intake_rows, "FOLD_EVERY_ALERTS", 50)
    integration_id = bare_integration(runtime)
    fingerprints = [f"k{n:03d}" for n in range(111)]
    folds_before = REGISTRY.get_sample_value("firetower_alert_key_fold_seconds_count") or 0

    with pytest.raises(RuntimeError), runtime.transaction() as session:
        intake_rows.write(session, [alert_row(integration_id, f) for f in fingerprints])
        raise RuntimeError("the group failed after its fold")
    assert _keys(runtime) == ([], [])
    with runtime.transaction() as session:
        intake_rows.write(session, [alert_row(integration_id, f) for f in fingerprints])

    folds = REGISTRY.get_sample_value("firetower_alert_key_fold_seconds_count") or 0
    folds -= folds_before  # one per write on SQLite, the rolled-back one counted too
    if runtime.database.dialect == "sqlite":
        assert (_keys(runtime), folds) == (([], fingerprints), 2)
    else:
        assert (_keys(runtime), folds) == ((fingerprints, []), 0)
    with runtime.read() as session:
        found = intake_rows.load(session, integration_id, fingerprints)
    assert [row.fingerprint for row in found] == fingerprints


def _insert_alert(connection: Connection, fingerprint: str) -> None:
    connection.execute(
        text(
            "INSERT INTO alerts (integration_id, fingerprint, status, title, severity, labels, "
            "annotations, first_seen_at, last_seen_at, count, silenced) VALUES (7, :f, "
            "'firing', 't', 'SEV3', '{}', '{}', :at, :at, 1, false)"
        ),
        {"f": fingerprint, "at": datetime(2026, 1, 1, tzinfo=UTC)},
    )


def _alerts_before_the_keys(database: Database, *fingerprints: str) -> None:
    """Migrate to 0013, before the key tables, and store these alerts (ids 1, 2, ...)."""
    upgrade(database.engine, "0013")
    with database.engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO integrations (id, name, kind, key_prefix, key_hash, created_at) "
                "VALUES (7, 'old', 'alertmanager', 'oldoldol', 'x', :at)"
            ),
            {"at": datetime(2026, 1, 1, tzinfo=UTC)},
        )
        for fingerprint in fingerprints:
            _insert_alert(connection, fingerprint)


def test_the_migration_gives_stored_alerts_their_keys_and_takes_them_back(
    unmigrated_database: Database,
) -> None:
    database = unmigrated_database
    _alerts_before_the_keys(database, "b", "a")
    upgrade(database.engine, "0014")
    stored_in = "alert_keys" if database.dialect == "postgresql" else "alert_keys_folded"
    with database.engine.connect() as connection:
        keys = connection.execute(
            text(f"SELECT fingerprint, alert_id FROM {stored_in} ORDER BY fingerprint")
        ).all()
    assert keys == [("a", 2), ("b", 1)]
    with database.engine.begin() as connection:
        _insert_alert(connection, "c")  # the trigger, as migrated
    with pytest.raises(IntegrityError), database.engine.begin() as connection:
        _insert_alert(connection, "c")

    command.downgrade(alembic_config(database.engine), "0013")
    with pytest.raises(IntegrityError), database.engine.begin() as connection:
        _insert_alert(connection, "a")  # the unique constraint is back
    with database.engine.begin() as connection:
        _insert_alert(connection, "d")  # and the trigger is gone with the keys


def _merged(runtime: Runtime) -> list[str]:
    """The fingerprints in ``alert_keys_merged``, in key order."""
    with runtime.read() as session:
        return list(
            session.scalars(select(MergedAlertKey.fingerprint).order_by(MergedAlertKey.fingerprint))
        )


def test_folds_merge_a_slice_from_the_new_keys_on_once_enough_are_folded(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each write below inserts four alerts and folds; from eight folded keys on, the fold
    also merges four keys (plus any above eight) in key order from where the last merge
    stopped, stops short at the last key, and starts over from the first."""
    monkeypatch.setattr(intake_rows, "FOLD_EVERY_ALERTS", 4)
    monkeypatch.setattr(intake_rows, "MERGE_FROM_KEYS", 8)
    integration_id = bare_integration(runtime)
    sqlite = runtime.database.dialect == "sqlite"
    written: list[str] = []
    steps = [
        (["k0", "k1", "k2", "k3"], ["k0", "k1", "k2", "k3"], []),
        (["k4", "k5", "k6", "k7"], ["k4", "k5", "k6", "k7"], ["k0", "k1", "k2", "k3"]),
        (["a0", "a1", "a2", "a3"], ["a0", "a1", "a2", "a3"], ["k4", "k5", "k6", "k7"]),
        (["z0", "z1", "b0", "b1"], ["a0", "a1", "a2", "a3", "b0", "b1"], ["z0", "z1"]),
        (["c0", "c1", "c2", "c3"], ["c0", "c1", "c2", "c3"], ["a0", "a1", "a2", "a3", "b0", "b1"]),
    ]
    merged: list[str] = []
    for fingerprints, folded, merged_now in steps:
        with runtime.transaction() as session:
            intake_rows.write(session, [alert_row(integration_id, f) for f in fingerprints])
        written += fingerprints
        merged = sorted(merged + merged_now)
        if sqlite:
            assert (_keys(runtime), _merged(runtime)) == (([], folded), merged), fingerprints
        else:  # PostgreSQL never folds
            assert (_keys(runtime), _merged(runtime)) == ((sorted(written), []), [])

    with runtime.read() as session:
        found = intake_rows.load(session, integration_id, written)
    assert sorted(row.fingerprint for row in found) == sorted(written)
    with pytest.raises(IntegrityError), runtime.transaction() as session:
        session.add(_orm_alert(integration_id, "k4"))  # merged on SQLite
    with runtime.transaction() as session:
        session.execute(text("DELETE FROM alerts WHERE fingerprint = 'a0'"))
    assert "a0" not in _merged(runtime) + _keys(runtime)[0]


def test_a_folded_table_far_over_the_threshold_drains_over_several_merges(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A database upgraded from a larger ``MERGE_FROM_KEYS`` holds more folded keys than the
    new threshold: each fold merges at most ``MERGE_AT_MOST_FOLDS`` folds' worth of them,
    not the whole excess in one long write turn."""
    monkeypatch.setattr(intake_rows, "FOLD_EVERY_ALERTS", 2)
    monkeypatch.setattr(intake_rows, "MERGE_FROM_KEYS", 100)  # the old threshold
    integration_id = bare_integration(runtime)
    fingerprints = [f"k{n:02}" for n in range(12)]
    for pair in zip(fingerprints[::2], fingerprints[1::2], strict=True):
        with runtime.transaction() as session:
            intake_rows.write(session, [alert_row(integration_id, f) for f in pair])
    monkeypatch.setattr(intake_rows, "MERGE_FROM_KEYS", 2)  # the new one: 12 keys is 10 over
    sizes = []
    for pair in (("m0", "m1"), ("m2", "m3"), ("m4", "m5")):
        with runtime.transaction() as session:
            intake_rows.write(session, [alert_row(integration_id, f) for f in pair])
        sizes.append((len(_keys(runtime)[1]), len(_merged(runtime))))
    if runtime.database.dialect == "sqlite":
        # 14 folded, 8 merged (2 + 10 over, capped at 4 x 2); then 8 and 8 more; then 2 + 0
        assert sizes == [(6, 8), (0, 16), (0, 18)]
    else:  # PostgreSQL never folds
        assert sizes == [(0, 0), (0, 0), (0, 0)]


def test_the_known_alerts_of_several_integrations_are_read_at_once_from_every_level(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``load_many`` finds each (integration, fingerprint) asked for, whichever level of keys
    holds it, and nothing of another integration that has the same fingerprint."""
    monkeypatch.setattr(intake_rows, "FOLD_EVERY_ALERTS", 2)
    monkeypatch.setattr(intake_rows, "MERGE_FROM_KEYS", 2)
    one, two = bare_integration(runtime), bare_integration(runtime, "more")
    for integration_id, fingerprints in ((one, "ab"), (two, "ac"), (one, "de"), (two, "f")):
        with runtime.transaction() as session:
            intake_rows.write(session, [alert_row(integration_id, f) for f in fingerprints])
    if runtime.database.dialect == "sqlite":  # keys on all three levels
        assert all([*_keys(runtime), _merged(runtime)]), (_keys(runtime), _merged(runtime))
    wanted = {one: ["a", "d", "f", "zz"], two: ["a", "b", "c", "f"]}
    with runtime.read() as session:
        found = intake_rows.load_many(session, wanted)
    assert sorted((r.integration_id, r.fingerprint) for r in found) == sorted(
        [(one, "a"), (one, "d"), (two, "a"), (two, "c"), (two, "f")]
    )
    assert all(row.stored and row.id is not None for row in found)


def test_the_third_level_migration_moves_the_folded_keys_and_back(
    unmigrated_database: Database,
) -> None:
    database = unmigrated_database
    _alerts_before_the_keys(database, "b", "a")
    upgrade(database.engine, "0014")  # folded on SQLite
    with database.engine.begin() as connection:
        _insert_alert(connection, "c")  # not folded yet

    def keys(table: str) -> list[tuple[str, int]]:
        with database.engine.connect() as connection:
            query = f"SELECT fingerprint, alert_id FROM {table} ORDER BY fingerprint"
            return [(row[0], row[1]) for row in connection.execute(text(query))]

    upgrade(database.engine)
    sqlite = database.dialect == "sqlite"
    if sqlite:
        assert keys("alert_keys_merged") == [("a", 2), ("b", 1)]
        assert keys("alert_keys") == [("c", 3)]
    else:  # PostgreSQL keeps every key in alert_keys
        assert keys("alert_keys") == [("a", 2), ("b", 1), ("c", 3)]
        assert keys("alert_keys_merged") == []
    assert keys("alert_keys_folded") == []
    with pytest.raises(IntegrityError), database.engine.begin() as connection:
        _insert_alert(connection, "a")  # refused by the key of the level it is in
    with database.engine.begin() as connection:
        connection.execute(text("DELETE FROM alerts WHERE fingerprint = 'a'"))
    assert ("a", 2) not in keys("alert_keys_merged") + keys("alert_keys")

    command.downgrade(alembic_config(database.engine), "0014")
    if sqlite:
        assert keys("alert_keys_folded") == [("b", 1)]
    with pytest.raises(IntegrityError), database.engine.begin() as connection:
        _insert_alert(connection, "b")  # 0014's trigger, or alert_keys' key
    with database.engine.begin() as connection:
        _insert_alert(connection, "a")  # a deleted alert's key went with it
