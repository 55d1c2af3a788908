"""PagerDuty Events API v2 driven by wrk: single triggers from a generator written in C.

The httpx generator of `bench.intake_events` is Python: on a 2-core machine it takes a good
share of the CPU the server could use. wrk (Debian's package `wrk`) costs far less, so this
shows what the server itself can take. Two runs on one fresh server:

1. **refused**: every event has a routing key of the wrong length, refused before any
   database work: the ceiling of the HTTP stack alone.
2. **triggers**: every event is a trigger with a dedup key never sent before (16 hex digits
   scattered as hashes are), on KEYS routing keys (one integration per catalog service,
   taken in turn); the alert rows are counted afterwards and must equal the 202 answers.

    python -m bench.intake_events_wrk --seconds 8 --connections 16 --keys 1

Skipped, saying so, when wrk is not installed (`apt-get install wrk`).
"""

from __future__ import annotations

import json
import shutil

from bench.intake_alertmanager import service_names
from bench.intake_support import (
    arguments,
    count_rows,
    create_integration,
    create_services,
    intake_server,
    run_each_backend,
)
from bench.wrk_support import LUA_FINGERPRINT, run_wrk

SECONDS = 8.0
CONNECTIONS = 16
KEYS = 1

REFUSED = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"routing_key": "short", "event_action": "trigger", '
  .. '"payload": {"summary": "s", "source": "h", "severity": "critical"}}'
"""

TRIGGERS = (
    LUA_FINGERPRINT
    + """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local keys = %(keys)s
local n = 0
request = function()
  n = n + 1
  local dedup_key = fingerprint(n, 0)  -- new keys scatter over the dedup index as hashes do
  local body = '{"routing_key": "' .. keys[(n %% #keys) + 1] .. '", "event_action": "trigger", '
    .. '"dedup_key": "' .. dedup_key .. '", "payload": {"summary": "Disk 91%% full on db-' .. n
    .. '", "source": "db-' .. n .. '.internal", "severity": "warning", "component": "postgres", '
    .. '"custom_details": {"free_bytes": 1234567}}}'
  return wrk.format(nil, nil, nil, body)
end
"""
)


def run(
    backend: str,
    postgres: str | None,
    *,
    seconds: float = SECONDS,
    connections: int = CONNECTIONS,
    keys: int = KEYS,
) -> None:
    if shutil.which("wrk") is None:
        print(
            f"[{backend}] events v2 with wrk: skipped, wrk is not installed (apt-get install wrk)"
        )
        return
    with intake_server(backend, postgres, "intake_events_wrk") as target:
        names = service_names(keys)
        create_services(target, names)
        routing_keys = [create_integration(target, f"wrk-{n}", "pagerduty", n) for n in names]
        url = f"{target.url}/v2/enqueue"
        refused = run_wrk(url, REFUSED, seconds, connections)
        lua_keys = "{" + ", ".join(json.dumps(k) for k in routing_keys) + "}"
        triggers = run_wrk(url, TRIGGERS % {"keys": lua_keys}, seconds, connections)
        committed = count_rows(target, "SELECT count(*) FROM alerts")
    accepted = triggers.accepted
    print(
        f"[{backend}] events v2 with wrk (-t1 -c{connections} -d{seconds:g}s, "
        f"{keys} routing key(s))"
    )
    print(
        f"    refused before any database work: {refused.rate:,.0f} requests/s "
        f"({refused.latency}; {refused.non_2xx:,} of {refused.requests:,} refused, as meant)"
    )
    verdict = triggers.verdict(committed, 1, connections)
    print(
        f"    single triggers: {accepted / triggers.seconds:,.0f} events/s ({triggers.latency}); "
        f"committed {committed:,} alert rows for {accepted:,} accepted, plus at most "
        f"{connections} in flight at the end ({verdict}); {triggers.non_2xx:,} not accepted"
    )


def main() -> None:
    parser = arguments(__doc__.splitlines()[0], processes=False)
    parser.set_defaults(connections=CONNECTIONS)
    parser.add_argument("--seconds", type=float, default=SECONDS)
    parser.add_argument("--keys", type=int, default=KEYS, help="routing keys, one per service")
    run_each_backend(parser, run)


if __name__ == "__main__":
    main()
