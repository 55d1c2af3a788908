"""``firetower doctor``: is the server at FIRETOWER_URL up, ready, and does it accept my token?"""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from firetower.cli.client import ApiError, Client, connect
from firetower.cli.output import console, emit, fail, print_json


def _json_or_none(client: Client, path: str) -> tuple[int, Any]:
    response = client.send("GET", path)
    try:
        return response.status_code, response.json()
    except ValueError:
        return response.status_code, None


def _check_token(client: Client) -> tuple[str, bool]:
    if not client.token:
        return "not set (client commands need FIRETOWER_TOKEN)", True
    try:
        me = client.get("/api/v1/me")
    except ApiError as exc:
        if exc.status_code == 401:
            return "refused: FIRETOWER_TOKEN is missing or invalid", False
        raise
    return f"ok ({me['email']}, {me['role']})", True


def doctor(
    json_output: Annotated[bool, typer.Option("--json", help="Print the checks as JSON.")] = False,
) -> None:
    """Check the server: /healthz, each /readyz check, and the token. Non-zero when not ready."""
    checks: dict[str, str] = {}
    problems: list[str] = []
    with connect() as client:
        url = client.base_url
        status_code, health = _json_or_none(client, "/healthz")
        if status_code == 200 and isinstance(health, dict) and health.get("status") == "ok":
            checks["healthz"] = f"ok (version {health.get('version', '?')})"
        else:
            checks["healthz"] = f"answered {status_code}"
            problems.append(f"healthz: answered {status_code}")
        status_code, ready = _json_or_none(client, "/readyz")
        if isinstance(ready, dict) and isinstance(ready.get("checks"), dict):
            for name, outcome in ready["checks"].items():
                checks[name] = str(outcome)
                if outcome != "ok":
                    problems.append(f"{name}: {outcome}")
            if status_code != 200 and not problems:
                problems.append(f"readyz: answered {status_code}")
        else:
            checks["readyz"] = f"answered {status_code} without its checks"
            problems.append(f"readyz: answered {status_code}")
        checks["token"], token_ok = _check_token(client)
        if not token_ok:
            problems.append("token: FIRETOWER_TOKEN is missing or invalid")
    if json_output:
        print_json({"url": url, "ready": not problems, "checks": checks})
    else:
        grid = Table.grid(padding=(0, 2))
        grid.add_column()
        grid.add_column()
        for name, outcome in checks.items():
            failed = any(p.startswith(f"{name}:") for p in problems)
            style = "red" if failed else "green" if outcome.startswith("ok") else "yellow"
            grid.add_row(Text(name), Text(outcome, style=style))
        console.print(Text(f"firetower at {url}", style="bold"), soft_wrap=True)
        emit(grid)
    if problems:
        fail(f"firetower at {url} is not ready: " + "; ".join(problems))
