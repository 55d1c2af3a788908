"""Incident API under load: declare and list over HTTP on loopback.

Load generator: one process, httpx.AsyncClient, CONCURRENCY requests in flight, against a
`firetower serve` subprocess (embedded worker on) with a fresh database.
"""

from __future__ import annotations

import asyncio
import time

import httpx

from bench.support import Server, percentiles_ms, running_server

CONCURRENCY = 16
DECLARES = 2000
LISTS = 1000


async def _drive(server: Server, count: int, request: str) -> tuple[float, list[float]]:
    headers = {"Authorization": f"Bearer {server.token}"}
    latencies: list[float] = []
    queue: asyncio.Queue[int] = asyncio.Queue()
    for n in range(count):
        queue.put_nowait(n)

    async def one(client: httpx.AsyncClient) -> None:
        while not queue.empty():
            n = queue.get_nowait()
            started = time.perf_counter()
            if request == "declare":
                answer = await client.post(
                    "/api/v1/incidents",
                    json={"title": f"bench incident {n}", "severity": "SEV3", "summary": "load"},
                )
            else:
                answer = await client.get("/api/v1/incidents", params={"limit": 50})
            latencies.append(time.perf_counter() - started)
            if answer.status_code >= 400:
                raise RuntimeError(f"{request} failed: {answer.status_code} {answer.text[:200]}")

    async with httpx.AsyncClient(base_url=server.url, headers=headers, timeout=30) as client:
        started = time.perf_counter()
        await asyncio.gather(*(one(client) for _ in range(CONCURRENCY)))
        elapsed = time.perf_counter() - started
    return elapsed, latencies


def run(label: str, database_url: str | None) -> None:
    with running_server(database_url) as server:
        elapsed, latencies = asyncio.run(_drive(server, DECLARES, "declare"))
        rate = DECLARES / elapsed
        print(f"[{label}] declare: {rate:,.0f} incidents/s ({percentiles_ms(latencies)})")
        elapsed, latencies = asyncio.run(_drive(server, LISTS, "list"))
        rate = LISTS / elapsed
        print(
            f"[{label}] list 50 of {DECLARES}: {rate:,.0f} requests/s ({percentiles_ms(latencies)})"
        )
