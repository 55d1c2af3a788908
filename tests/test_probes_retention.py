"""Roll-ups and retention of probe results, and sli_counts across the raw/roll-up boundary."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from firetower.auth.schemas import Role
from firetower.clock import FrozenClock
from firetower.jobs import Worker, enqueue
from firetower.monitors import probes
from firetower.monitors.probe_checks import CheckOutcome
from tests.factories import ApiUser, Factory

T0 = datetime(2026, 3, 1, 0, 0, tzinfo=UTC)


@pytest.fixture
def admin(factory: Factory) -> ApiUser:
    return factory.user(Role.admin)


def record(factory: Factory, at: datetime, latency_ms: float, ok: bool = True) -> None:
    """Store one run as the worker would after its check (the check itself is tested apart)."""
    with factory.runtime.read() as session:
        spec = probes.run_spec(session, "api")
    outcome = CheckOutcome(at, ok, latency_ms, 200 if ok else 503, None if ok else "status 503")
    with factory.runtime.transaction() as session:
        assert probes.record_result(session, spec, outcome) is not None


def maintain(factory: Factory) -> None:
    with factory.runtime.transaction() as session:
        enqueue(session, probes.MAINTENANCE_KIND)
    worker = Worker(factory.runtime.database, factory.runtime.jobs, factory.runtime.bus)
    assert worker.run_once() == 1


def counts(factory: Factory, start: datetime, end: datetime, **kw: int) -> tuple[int, int]:
    with factory.runtime.read() as session:
        return probes.sli_counts(session, "api", start, end, **kw)


def test_rollups_retention_and_sli_counts(admin: ApiUser, factory: Factory) -> None:
    with FrozenClock(T0) as clock:
        created = admin.post(
            "/api/v1/probes",
            json={"name": "api", "kind": "tcp", "tcp": {"host": "127.0.0.1", "port": 9}},
        )
        assert created.status_code == 201
        for minute, latency, ok in [
            (0, 20, True),
            (15, 40, True),
            (30, 120, True),
            (45, 900, False),
        ]:
            record(factory, T0 + timedelta(minutes=minute, seconds=10), latency, ok)
        for minute, latency in [(5, 30), (50, 260)]:
            record(factory, T0 + timedelta(hours=1, minutes=minute), latency)
        window = (T0, T0 + timedelta(hours=2))
        raw = {
            None: counts(factory, *window),
            100: counts(factory, *window, latency_threshold_ms=100),
            250: counts(factory, *window, latency_threshold_ms=250),
            110: counts(factory, *window, latency_threshold_ms=110),
        }
        assert raw == {None: (5, 6), 100: (3, 6), 250: (4, 6), 110: (3, 6)}
        assert counts(factory, T0 + timedelta(minutes=20), T0 + timedelta(hours=1)) == (1, 2)

        # Hour 1 is not rolled up until it is over (and its grace has passed).
        clock.current = T0 + timedelta(hours=1, minutes=30)
        maintain(factory)
        rollups = admin.get("/api/v1/probes/api/rollups").json()
        assert [r["hour_start"] for r in rollups] == ["2026-03-01T00:00:00Z"]
        clock.current = T0 + timedelta(hours=2, minutes=10)
        maintain(factory)
        maintain(factory)  # again: nothing doubles
        rollups = admin.get("/api/v1/probes/api/rollups", params={"since": T0.isoformat()}).json()
        assert [(r["count"], r["failures"]) for r in rollups] == [(4, 1), (2, 0)]
        first, second = rollups
        assert (first["latency_p50_ms"], first["latency_p95_ms"], first["latency_max_ms"]) == (
            40,
            900,
            900,
        )
        assert (second["latency_p50_ms"], second["latency_p95_ms"]) == (30, 260)
        buckets = probes.LATENCY_BUCKETS_MS
        assert sum(first["ok_latency_histogram"]) == 3  # failures are not in the histogram
        assert first["ok_latency_histogram"][buckets.index(25)] == 1
        assert first["ok_latency_histogram"][buckets.index(150)] == 1
        assert len(first["ok_latency_histogram"]) == len(buckets) + 1

        # Eight days on, the raw results of those hours are gone; the roll-ups answer.
        clock.current = T0 + timedelta(days=8, minutes=30)
        record(factory, clock.current - timedelta(minutes=1), 10)
        maintain(factory)
        results = admin.get("/api/v1/probes/api/results", params={"since": T0.isoformat()}).json()
        assert [r["latency_ms"] for r in results] == [10]
        after = {
            None: counts(factory, *window),
            100: counts(factory, *window, latency_threshold_ms=100),
            250: counts(factory, *window, latency_threshold_ms=250),
            110: counts(factory, *window, latency_threshold_ms=110),
        }
        assert after == raw
        # A window spanning both: the roll-ups before the trim, raw results after it.
        assert counts(factory, T0, clock.current) == (6, 7)

        # Past 90 days the roll-ups go too.
        clock.current = T0 + timedelta(days=91)
        maintain(factory)
        hours = [r["hour_start"] for r in admin.get("/api/v1/probes/api/rollups").json()]
        assert hours == ["2026-03-09T00:00:00Z"]
        assert counts(factory, *window) == (0, 0)


def test_sli_counts_of_an_unknown_probe_and_an_empty_window(factory: Factory) -> None:
    from firetower.errors import NotFound

    with factory.runtime.read() as session, pytest.raises(NotFound) as missing:
        probes.sli_counts(session, "absent", T0, T0 + timedelta(hours=1))
    assert missing.value.field == "probe"
    admin = factory.user(Role.admin)
    admin.post(
        "/api/v1/probes", json={"name": "api", "kind": "tcp", "tcp": {"host": "h", "port": 1}}
    )
    assert counts(factory, T0, T0 + timedelta(days=30)) == (0, 0)
    assert counts(factory, T0, T0) == (0, 0)
