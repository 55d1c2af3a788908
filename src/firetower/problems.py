"""RFC 9457 problem details: the one shape every refusal is answered in.

Beside ``errors`` at the bottom, so that every layer answers alike: the app's error
handlers for raised errors, and intake endpoints for refusals they return as values.
"""

from __future__ import annotations

from typing import Any

from starlette.responses import JSONResponse

from firetower.text import pattern_message

PROBLEM = "application/problem+json"


def problem(status: int, title: str, detail: str, **extra: Any) -> JSONResponse:
    """An RFC 9457 problem details answer; ``field`` names the offending input when known."""
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail}
    body.update({k: v for k, v in extra.items() if v is not None})
    return JSONResponse(body, status_code=status, media_type=PROBLEM)


def validation_message(error: Any) -> str:
    """A pydantic error's message as people should read it: without the ``Value error, ``
    that pydantic puts before the text of a validator's own ValueError, and the shared text
    patterns said in words instead of quoted as regexes."""
    if error.get("type") == "string_pattern_mismatch":
        said = pattern_message(error.get("ctx", {}).get("pattern", ""), error.get("input"))
        if said is not None:
            return said
    return str(error["msg"]).removeprefix("Value error, ")
