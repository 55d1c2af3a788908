"""Helpers the console's form handlers share: reading form values and turning a pydantic
refusal into the domain's InvalidInput, so every page words a bad field the same way."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

from pydantic import ValidationError

from firetower.errors import InvalidInput
from firetower.problems import validation_message


def first_error(exc: ValidationError) -> InvalidInput:
    """A pydantic error as the domain's InvalidInput, naming the offending field."""
    error = exc.errors()[0]
    field = ".".join(str(p) for p in error["loc"] if not isinstance(p, int)) or "form"
    message = validation_message(error)
    return InvalidInput(f"{field}: {message}", field=field)


@contextmanager
def as_invalid_input() -> Iterator[None]:
    """Around building a schema from form values: its refusal becomes ``first_error``."""
    try:
        yield
    except ValidationError as exc:
        raise first_error(exc) from None


def parse_local_utc(value: str, field: str) -> datetime | None:
    """An <input type=datetime-local> value, read as UTC (the form says so); blank is None."""
    if not value.strip():
        return None
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise InvalidInput(
            f"{field}: not a date and time like 2025-01-31T14:05", field=field
        ) from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed
