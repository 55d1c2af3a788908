"""How long `firetower migrate` takes on a large SQLite database, and its reference check.

On SQLite the migrations run with foreign keys off, in one transaction, and after a change
of revision ``PRAGMA foreign_key_check`` reads every reference of the database before the
commit (``migrations/env.py``); the upgrade holds the write lock all along. This builds a
SQLite database at the revision before head and fills it with bulk SQL, in the proportions
of a busy firetower: ``--alerts`` alerts (their keys merged, as intake leaves them) over 50
services and integrations, every other one attached to one of alerts/100 incidents, each
incident with 10 timeline events, 5 attach tallies and a service; alerts/10 finished jobs,
alerts/2 results of 20 probes, alerts/100 change events. Then it times:

- ``firetower migrate`` to head, the real command in a subprocess (as an operator runs it,
  Python's start included), ``--repeat`` times, downgrading one step in between;
- the reference check alone, ``PRAGMA foreign_key_check``, over the whole database and
  table by table;
- ``firetower migrate`` again with nothing to migrate, the start that every ``serve`` makes:
  no check then (and ``upgrade()`` in this process, without Python's start).

Each is timed with the database's pages in the operating system's cache, and again with the
file's pages dropped from it first (``posix_fadvise``), as after a reboot. ``make bench``
runs it over 1,000,000 alerts (about 40 s, 591 MiB); larger:

    python -m bench.migrate_sqlite --alerts 5000000
"""

from __future__ import annotations

import argparse
import os
import platform
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from alembic import command
from alembic.script import ScriptDirectory

from firetower.db import make_engine
from firetower.migrate import alembic_config, current_revision, head_revision, upgrade

BIN = Path(sys.executable).parent
SERVICES = 50
"""Services, integrations (one each) and users."""
PROBES = 20
EPOCH = "2026-09-01 00:00:00"
SPAN_SECONDS = 90 * 86_400
"""Alerts are seen over 90 days, the default alert retention."""


def previous_revision() -> str:
    """The revision before head: the bench migrates from it."""
    scripts = ScriptDirectory.from_config(alembic_config())
    head = scripts.get_revision("head")
    if head is None or not isinstance(head.down_revision, str):
        raise RuntimeError("the head migration has no single revision before it")
    return head.down_revision


def _time(column: str) -> str:
    """SQL for a time as the ORM stores it (``2026-09-01 00:00:00.000000``), ``column``
    seconds after EPOCH."""
    return f"strftime('%Y-%m-%d %H:%M:%S', '{EPOCH}', '+' || ({column}) || ' seconds') || '.000000'"


def _numbers(count: int) -> str:
    """A CTE naming the numbers 0 to count - 1 as n(i)."""
    return f"WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < {count - 1})"


def _fill_statements(alerts: int) -> list[tuple[str, str]]:
    """(what, statement) pairs that fill a database at the previous revision."""
    incidents = max(1, alerts // 100)
    now = f"'{EPOCH}.000000'"
    seen = _time(f"i * {SPAN_SECONDS} / {alerts}")
    return [
        (
            "users, teams, services, integrations, probes",
            f"""
            {_numbers(SERVICES)}
            INSERT INTO users (id, email, name, role, password_hash, active, created_at)
            SELECT i + 1, 'user' || i || '@example.com', 'User ' || i, 'responder', NULL, 1, {now}
            FROM n;
            INSERT INTO teams (id, name, description, created_at)
            VALUES (1, 'platform', '', {now}), (2, 'payments', '', {now});
            {_numbers(SERVICES)}
            INSERT INTO services (id, name, team_id, owner, tier, description, runbook_url,
                                  estimated_users, created_at)
            SELECT i + 1, printf('svc-%02d', i), i % 2 + 1, 'ops@example.com', i % 4 + 1, '',
                   '', 1000, {now}
            FROM n;
            {_numbers(SERVICES)}
            INSERT INTO integrations (id, name, kind, service_name, key_prefix, key_hash,
                                      created_at)
            SELECT i + 1, printf('am-%02d', i), 'alertmanager', printf('svc-%02d', i),
                   printf('bench%02d', i), 'unused', {now}
            FROM n;
            {_numbers(PROBES)}
            INSERT INTO probes (id, name, kind, settings, service_id, severity,
                                interval_seconds, timeout_seconds, failure_threshold,
                                success_threshold, enabled, state, consecutive_failures,
                                consecutive_successes, next_run_at, created_at, updated_at)
            SELECT i + 1, printf('probe-%02d', i), 'http',
                   printf('{{"url": "https://svc-%02d.example.com/healthz"}}', i), i + 1,
                   'SEV2', 30, 10, 3, 1, 1, 'up', 0, 0, {now}, {now}, {now}
            FROM n;
            """,
        ),
        (
            f"{incidents:,} incidents, their services, timelines and attach tallies",
            f"""
            {_numbers(incidents)}
            INSERT INTO incidents (id, title, summary, severity, status, source, data_at_risk,
                                   security_at_risk, revenue_at_risk, escalate_immediately,
                                   created_by_id, declared_at, resolved_at, closed_at,
                                   updated_at)
            SELECT i + 1, printf('HighErrorRate on svc-%02d', i % {SERVICES}),
                   'Error rate above 5%', 'SEV2', 'closed', 'alert', 0, 0, 0, 0,
                   i % {SERVICES} + 1, {_time("i * 600")}, {_time("i * 600 + 3600")},
                   {_time("i * 600 + 7200")}, {_time("i * 600 + 7200")}
            FROM n;
            {_numbers(incidents)}
            INSERT INTO incident_services (incident_id, service_id)
            SELECT i + 1, i % {SERVICES} + 1 FROM n;
            {_numbers(incidents * 10)}
            INSERT INTO timeline_events (incident_id, at, actor_id, actor, kind, "before",
                                         "after", text, rule, pinned)
            SELECT i / 10 + 1, {_time("i * 60")}, i % {SERVICES} + 1,
                   'user' || (i % {SERVICES}) || '@example.com', 'status_changed',
                   '{{"status": "investigating"}}', '{{"status": "identified"}}',
                   'Rolled back the deploy of ' || printf('svc-%02d', i % {SERVICES}), NULL, 0
            FROM n;
            {_numbers(incidents * 5)}
            INSERT INTO attach_tallies (incident_id, minute, alerts, latest)
            SELECT i / 5 + 1, {_time("(i / 5) * 600 + (i % 5) * 60")}, 20,
                   '["HighErrorRate on node-1:9100", "HighErrorRate on node-2:9100"]'
            FROM n;
            """,
        ),
        (
            f"{alerts:,} alerts",
            # Every other alert attached to an incident, 50 alerts each; two in three
            # resolved, as a store under retention holds them.
            f"""
            {_numbers(alerts)}
            INSERT INTO alerts (integration_id, fingerprint, status, title, severity,
                                service_name, labels, annotations, starts_at, ends_at,
                                first_seen_at, last_seen_at, count, incident_id, silenced,
                                group_key, state_changes, flapping, inhibited, attached_at)
            SELECT i % {SERVICES} + 1, printf('%08x%08x', (i * 2654435761) % 4294967296, i),
                   CASE WHEN i % 3 = 0 THEN 'firing' ELSE 'resolved' END, 'HighErrorRate', 'SEV1',
                   printf('svc-%02d', i % {SERVICES}),
                   printf('{{"alertname": "HighErrorRate", "service": "svc-%02d", '
                          || '"severity": "critical", "instance": "node-%d:9100", '
                          || '"job": "api"}}', i % {SERVICES}, i),
                   printf('{{"summary": "Error rate above 5%% on svc-%02d"}}', i % {SERVICES}),
                   {seen}, CASE WHEN i % 3 = 0 THEN NULL ELSE {seen} END, {seen}, {seen},
                   1 + i % 4, CASE WHEN i % 2 = 0 THEN (i / 100) % {incidents} + 1 END, 0,
                   printf('alertname=HighErrorRate,service=svc-%02d', i % {SERVICES}), '[]', 0,
                   0, CASE WHEN i % 2 = 0 THEN {seen} END
            FROM n;
            INSERT INTO alert_keys_merged (integration_id, fingerprint, alert_id)
            SELECT integration_id, fingerprint, alert_id FROM alert_keys;
            DELETE FROM alert_keys;
            """,
        ),
        (
            f"{alerts // 10:,} jobs, {alerts // 2:,} probe results, "
            f"{alerts // 100:,} change events",
            f"""
            {_numbers(max(1, alerts // 10))}
            INSERT INTO jobs (kind, payload, status, attempts, max_attempts, run_at,
                              idempotency_key, created_at, finished_at)
            SELECT 'notify.send',
                   printf('{{"incident_id": %d, "channel": "slack-oncall", '
                          || '"template": "incident_updated"}}', i % {incidents} + 1),
                   'done', 1, 5, {_time("i * 60")}, 'notify-' || i, {_time("i * 60")},
                   {_time("i * 60 + 1")}
            FROM n;
            {_numbers(max(1, alerts // 2))}
            INSERT INTO probe_results (probe_id, checked_at, ok, latency_ms, status_code, error,
                                       details)
            SELECT i % {PROBES} + 1, {_time(f"(i / {PROBES}) * 30")}, i % 500 != 0,
                   40.0 + i % 17, 200, NULL, '{{}}'
            FROM n;
            {_numbers(max(1, alerts // 100))}
            INSERT INTO change_events (integration_id, summary, source, timestamp, received_at,
                                       custom_details, links, service_name)
            SELECT i % {SERVICES} + 1, printf('Deploy %d of svc-%02d', i, i % {SERVICES}),
                   'ci', {_time("i * 3600")}, {_time("i * 3600")}, '{{}}', '[]',
                   printf('svc-%02d', i % {SERVICES})
            FROM n;
            """,
        ),
    ]


def build(path: str, alerts: int) -> str:
    """A database at the revision before head holding ``alerts`` alerts; its revision."""
    previous = previous_revision()
    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine, previous)
    engine.dispose()
    connection = sqlite3.connect(path, isolation_level=None)
    # Bulk writes without the write-ahead log's copy of every page; WAL again after.
    connection.execute("PRAGMA journal_mode=DELETE")
    connection.execute("PRAGMA synchronous=OFF")
    connection.execute("PRAGMA foreign_keys=ON")  # the fill must leave no dangling reference
    for what, statements in _fill_statements(alerts):
        started = time.perf_counter()
        connection.executescript(f"BEGIN; {statements}; COMMIT;")
        print(f"    filled {what} in {time.perf_counter() - started:.1f} s")
    connection.execute("PRAGMA journal_mode=WAL")
    connection.close()
    return previous


def _firetower_migrate(env: dict[str, str]) -> tuple[float, str]:
    started = time.perf_counter()
    done = subprocess.run(
        [str(BIN / "firetower"), "migrate"], env=env, capture_output=True, text=True, check=True
    )
    return time.perf_counter() - started, done.stdout


def _checkpoint(path: str) -> None:
    """Copy the log into the database, as the server's checkpointer would soon after."""
    connection = sqlite3.connect(path)
    connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    connection.close()


_EVICT = """
import os, sys
for file in sys.argv[1:]:
    if os.path.exists(file):
        descriptor = os.open(file, os.O_RDONLY)
        os.fsync(descriptor)
        os.posix_fadvise(descriptor, 0, 0, os.POSIX_FADV_DONTNEED)
        os.close(descriptor)
"""


def evict(path: str) -> None:
    """Drop the database's pages from the operating system's cache (this file's only), so
    that the next read comes from disk, as after a reboot. In a process of its own: closing
    a descriptor of the file here would drop this process's SQLite locks on it."""
    subprocess.run([sys.executable, "-c", _EVICT, path, f"{path}-wal"], check=True)


def foreign_key_check(path: str) -> float:
    """Seconds of the whole check."""
    connection = sqlite3.connect(path)
    started = time.perf_counter()
    broken = connection.execute("PRAGMA foreign_key_check").fetchall()
    seconds = time.perf_counter() - started
    connection.close()
    if broken:
        raise RuntimeError(f"dangling references: {broken[:5]}")
    return seconds


def foreign_key_check_by_table(path: str) -> list[tuple[str, float]]:
    """Seconds of each table's check, slowest first."""
    connection = sqlite3.connect(path)
    tables = [
        row[0]
        for row in connection.execute(
            "SELECT DISTINCT m.name FROM sqlite_master m, pragma_foreign_key_list(m.name) "
            "WHERE m.type = 'table'"
        )
    ]
    each = []
    for table in tables:
        started = time.perf_counter()
        connection.execute(f'PRAGMA foreign_key_check("{table}")').fetchall()
        each.append((table, time.perf_counter() - started))
    connection.close()
    return sorted(each, key=lambda pair: -pair[1])


def _size_mib(path: str) -> float:
    files = (path, f"{path}-wal")
    return sum(os.path.getsize(file) for file in files if os.path.exists(file)) / 2**20


def run(alerts: int = 1_000_000, repeat: int = 3) -> None:
    with tempfile.TemporaryDirectory(prefix="firetower-bench-migrate-") as home:
        path = f"{home}/firetower.db"
        url = f"sqlite:///{path}"
        env = {
            **os.environ,
            "FIRETOWER_HOME": home,
            "FIRETOWER_DATABASE_URL": url,
            "FIRETOWER_LOG_LEVEL": "warning",
        }
        print(f"[sqlite] migrate over {alerts:,} alerts (load average {_load()})")
        started = time.perf_counter()
        previous = build(path, alerts)
        built = time.perf_counter() - started
        head = head_revision()
        print(
            f"    built at {previous} in {built:.0f} s: {_size_mib(path):,.0f} MiB "
            f"(SQLite {sqlite3.sqlite_version})"
        )
        engine = make_engine(url)
        config = alembic_config(engine)
        runs: dict[str, list[float]] = {"cached": [], "from disk": []}
        step = ""
        for number in range(repeat):
            for cache, seconds_taken in runs.items():
                if number or cache != "cached":
                    command.downgrade(config, previous)  # its own check, not timed
                    _checkpoint(path)
                if cache == "from disk":
                    evict(path)
                seconds, output = _firetower_migrate(env)
                seconds_taken.append(seconds)
                step = "; ".join(line.strip() for line in output.splitlines() if "applied" in line)
                if current_revision(engine) != head:
                    raise RuntimeError(f"firetower migrate left {current_revision(engine)}")
        _checkpoint(path)
        for cache, seconds_taken in runs.items():
            shown = ", ".join(f"{value:.1f}" for value in seconds_taken)
            print(
                f"    firetower migrate {previous} -> {head}, database {cache}: best "
                f"{min(seconds_taken):.1f} s (runs: {shown} s; as it said: {step})"
            )
        checks: dict[str, list[float]] = {"cached": [], "from disk": []}
        for _ in range(repeat):
            checks["cached"].append(foreign_key_check(path))
            evict(path)
            checks["from disk"].append(foreign_key_check(path))
        for cache, seconds_taken in checks.items():
            best = min(seconds_taken)
            shown = ", ".join(f"{value:.2f}" for value in seconds_taken)
            print(
                f"    PRAGMA foreign_key_check alone, database {cache}: best {best:.2f} s, "
                f"{best / alerts * 1e6:.2f} s per million alerts (runs: {shown} s)"
            )
        each = foreign_key_check_by_table(path)
        print(
            "        by table (cached): "
            + ", ".join(f"{table} {seconds:.2f} s" for table, seconds in each[:4])
        )
        evict(path)
        seconds, output = _firetower_migrate(env)
        if "upgrading" in output:
            raise RuntimeError(f"nothing should have migrated: {output}")
        started = time.perf_counter()
        upgrade(engine)
        in_process = time.perf_counter() - started
        engine.dispose()
        print(
            f"    nothing to migrate (as serve starts), database from disk: firetower migrate "
            f"{seconds:.1f} s; upgrade() in this process {in_process * 1000:.0f} ms (no check)"
        )
        print(f"    database {_size_mib(path):,.0f} MiB (load average {_load()})")


def _load() -> str:
    return " ".join(f"{value:.1f}" for value in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--alerts", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3, help="migrations timed")
    options = parser.parse_args()
    if options.alerts < 100 or options.repeat < 1:
        parser.error("--alerts must be at least 100 and --repeat at least 1")
    python = f"{platform.python_implementation()} {platform.python_version()}"
    print(f"machine: {os.cpu_count()} cores, {python}")
    run(options.alerts, options.repeat)


if __name__ == "__main__":
    main()
