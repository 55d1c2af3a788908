"""Alertmanager batches driven by wrk, into firetower and into Alertmanager itself.

The same load as `bench.intake_alertmanager` and `bench.reference_alertmanager` (batches of
BATCH distinct alerts of one service, services taking turns, every alert checked at the end),
but sent by wrk (Debian's package `wrk`) instead of Python processes, which on a 2-core
machine take about a quarter of the CPU that the server under test could use. Each body is
the Python benchmarks' JSON template, serialised once per service, with the request's number
put in by wrk's Lua (LuaJIT) at its placeholders: every label set is new.

One command measures firetower on each backend, then, when it is installed (`apt-get install
prometheus-alertmanager`), Alertmanager 0.25 under the very same wrk settings, so that the two
figures come from one machine in one minute:

    python -m bench.intake_alertmanager_wrk --backend sqlite --server-processes 2 --connections 16

Skipped, saying so, when wrk is not installed (`apt-get install wrk`).
"""

from __future__ import annotations

import json
import re
import shutil

from bench.intake_alertmanager import BATCH, SECONDS, SERVICES, alertmanager_batch, service_names
from bench.intake_support import (
    arguments,
    count_rows,
    create_integration,
    create_services,
    intake_server,
    run_each_backend,
)
from bench.reference_alertmanager import (
    BINARY,
    metric_total,
    postable_batch,
    running_alertmanager,
    version,
)
from bench.wrk_support import LUA_FINGERPRINT, WrkResult, run_wrk

CONNECTIONS = 16

SCRIPT = (
    LUA_FINGERPRINT
    + """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local templates = %(templates)s
local n = 0
request = function()
  local template = templates[(n %% #templates) + 1]
  local pieces, marks = template[1], template[2]
  local number = tostring(n)
  local parts = {pieces[1]}
  local place = 0
  for i = 1, #marks do
    if marks:sub(i, i) == "F" then
      parts[2 * i] = fingerprint(n, place)
      place = place + 1
    else
      parts[2 * i] = number
    end
    parts[2 * i + 1] = pieces[i + 1]
  end
  n = n + 1
  return wrk.format(nil, "%(path)s", nil, table.concat(parts))
end
"""
)
"""Request n (from 0, one wrk thread): template n mod len(templates) with n at its N marks
and ``intake_support.fingerprint(n, place)`` at its F marks."""


def _lua_text(text: str) -> str:
    """``text`` as a Lua long string, whose level no ``]=...=]`` in the text can close."""
    level = 0
    while f"]{'=' * level}]" in f"{text}]":  # a text ending in "]" must not close it early
        level += 1
    return f"[{'=' * level}[{text}]{'=' * level}]"


def script(path: str, documents: list[object]) -> str:
    """The wrk script that sends ``documents`` in turn, their marks filled in as
    ``intake_support.Template`` fills them (PLACEHOLDER and FINGERPRINT only)."""
    templates = []
    for document in documents:
        pieces = re.split(r"@@([NF])@@", json.dumps(document, separators=(",", ":")))
        texts = "{" + ", ".join(map(_lua_text, pieces[0::2])) + "}"
        templates.append(f"{{{texts}, {_lua_text(''.join(pieces[1::2]))}}}")
    return SCRIPT % {
        "templates": "{" + ",\n".join(templates) + "}",
        "path": path,
    }


def _rate(result: WrkResult, batch: int) -> str:
    return (
        f"{result.accepted * batch / result.seconds:,.0f} alerts/s, "
        f"{result.accepted / result.seconds:,.1f} requests/s over {result.seconds:.1f} s "
        f"({result.latency})"
    )


def run(
    backend: str,
    postgres: str | None,
    *,
    seconds: float = SECONDS,
    connections: int = CONNECTIONS,
    services: int = SERVICES,
    batch: int = BATCH,
    reference: bool = True,
) -> None:
    settings = f"wrk -t1 -c{connections} -d{seconds:g}s"
    if shutil.which("wrk") is None:
        print(f"[{backend}] alertmanager intake with wrk: skipped, wrk is not installed")
        return
    names = service_names(services)
    with intake_server(backend, postgres, "intake_alertmanager_wrk") as target:
        create_services(target, names)
        key = create_integration(target, "bench-am-wrk", "alertmanager")
        documents: list[object] = [alertmanager_batch(name, batch) for name in names]
        path = f"/ingest/alertmanager/{key}"
        result = run_wrk(f"{target.url}{path}", script(path, documents), seconds, connections)
        committed = count_rows(target, "SELECT count(*) FROM alerts")
    print(f"[{backend}] alertmanager intake with {settings}, batches of {batch} distinct alerts")
    print(f"    firetower: {_rate(result, batch)}")
    print(
        f"    committed: {committed:,} alert rows for {result.accepted * batch:,} alerts "
        f"accepted, plus at most {connections} batches in flight at the end "
        f"({result.verdict(committed, batch, connections)}); "
        f"{result.non_2xx:,} requests not accepted"
    )
    if reference:
        run_reference(seconds=seconds, connections=connections, services=services, batch=batch)


def run_reference(
    *,
    seconds: float = SECONDS,
    connections: int = CONNECTIONS,
    services: int = SERVICES,
    batch: int = BATCH,
) -> None:
    """Alertmanager under the same wrk load (its API v2 takes the same alerts as a list)."""
    binary = shutil.which(BINARY)
    if binary is None or shutil.which("wrk") is None:
        print(f"[alertmanager] reference with wrk: skipped, needs wrk and {BINARY}")
        return
    names = service_names(max(1, services))
    documents: list[object] = [postable_batch(name, batch) for name in names]
    with running_alertmanager(binary) as alertmanager:
        result = run_wrk(
            f"{alertmanager.url}/api/v2/alerts",
            script("/api/v2/alerts", documents),
            seconds,
            connections,
        )
        received = metric_total(alertmanager.url, "alertmanager_alerts_received_total")
        invalid = metric_total(alertmanager.url, "alertmanager_alerts_invalid_total")
    verdict = result.verdict(received, batch, connections) if invalid == 0 else "INVALID"
    print(f"    reference, {version(binary)} (in memory): {_rate(result, batch)}")
    print(
        f"    received: {received:,.0f} alerts ({invalid:,.0f} invalid) for "
        f"{result.accepted * batch:,} accepted ({verdict}); "
        f"{result.non_2xx:,} requests not accepted"
    )


def main() -> None:
    parser = arguments(__doc__.splitlines()[0], processes=False)
    parser.set_defaults(connections=CONNECTIONS)
    parser.add_argument("--seconds", type=float, default=SECONDS)
    parser.add_argument("--services", type=int, default=SERVICES, help="services taking turns")
    parser.add_argument("--batch", type=int, default=BATCH, help="alerts per request")
    parser.add_argument(
        "--no-reference", dest="reference", action="store_false", help="skip Alertmanager"
    )
    run_each_backend(parser, run)


if __name__ == "__main__":
    main()
