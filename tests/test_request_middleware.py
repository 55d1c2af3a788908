"""The request middleware: one X-Request-ID on every answer, the size limit before the app,
and each request counted under its route template (the rest is pinned in test_logs.py and
test_api_contract.py)."""

from __future__ import annotations

from collections.abc import Iterator

from fastapi import FastAPI
from fastapi.responses import PlainTextResponse, StreamingResponse
from fastapi.testclient import TestClient

from firetower.metrics import REGISTRY
from firetower.runtime import Runtime


def requests_counted(method: str, route: str, status: int) -> float:
    labels = {"method": method, "route": route, "status": str(status)}
    return REGISTRY.get_sample_value("firetower_http_requests_total", labels) or 0.0


def test_an_oversized_body_is_refused_before_the_app_runs_and_carries_the_request_id(
    app: FastAPI, runtime: Runtime
) -> None:
    reached: list[bytes] = []

    async def swallow(body: bytes) -> None:
        reached.append(body)

    app.add_api_route("/swallow", swallow, methods=["POST"])
    before = requests_counted("POST", "unmatched", 413)
    limit = runtime.settings.max_request_body_bytes
    with TestClient(app) as client:
        answer = client.post(
            "/swallow", content=b"x" * (limit + 1), headers={"X-Request-ID": "big-1"}
        )
    assert answer.status_code == 413
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.headers.get_list("x-request-id") == ["big-1"]
    assert reached == []
    assert requests_counted("POST", "unmatched", 413) == before + 1


def test_a_request_id_set_by_an_endpoint_is_replaced_not_doubled(app: FastAPI) -> None:
    def own_id() -> PlainTextResponse:
        return PlainTextResponse("ok", headers={"X-Request-ID": "made-up-by-the-endpoint"})

    app.add_api_route("/own-id", own_id, methods=["GET"])
    with TestClient(app) as client:
        answer = client.get("/own-id", headers={"X-Request-ID": "r-7"})
    assert answer.headers.get_list("x-request-id") == ["r-7"]


def test_a_streamed_answer_keeps_its_status_and_body_and_is_counted_by_template(
    app: FastAPI,
) -> None:
    def stream(count: int) -> StreamingResponse:
        def lines() -> Iterator[bytes]:
            for n in range(count):
                yield f"line {n}\n".encode()

        return StreamingResponse(lines(), status_code=201, media_type="text/plain")

    app.add_api_route("/stream/{count}", stream, methods=["GET"])
    before = requests_counted("GET", "/stream/{count}", 201)
    with TestClient(app) as client:
        answer = client.get("/stream/3")
    assert answer.status_code == 201
    assert answer.text == "line 0\nline 1\nline 2\n"
    assert len(answer.headers["x-request-id"]) == 32
    assert requests_counted("GET", "/stream/{count}", 201) == before + 1
