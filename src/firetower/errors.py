"""The one exception tree of firetower's domain; the API maps it to problem details in one place.

FiretowerError
├── ConfigError        invalid settings or firetower.yaml (stops start-up)
└── DomainError        a refused operation; nothing was written
    ├── NotFound           404: the referenced thing does not exist
    ├── InvalidInput       422: a value is wrong; ``field`` names it
    ├── Conflict           409: the current state forbids it (e.g. a transition)
    ├── PermissionDenied   403: the actor's role is too weak
    └── Unauthenticated    401: no or a wrong credential
"""

from __future__ import annotations

from typing import Any


class FiretowerError(Exception):
    """Base of every error firetower raises on purpose."""


class ConfigError(FiretowerError):
    """Configuration that cannot work; the message names the key and the expected form."""


class DomainError(FiretowerError):
    status_code = 400
    title = "Bad request"

    def __init__(self, detail: str, *, field: str | None = None, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.field = field
        self.extra = extra


class NotFound(DomainError):
    status_code = 404
    title = "Not found"


class InvalidInput(DomainError):
    status_code = 422
    title = "Invalid input"


class Conflict(DomainError):
    status_code = 409
    title = "Conflict"


class PermissionDenied(DomainError):
    status_code = 403
    title = "Forbidden"


class Unauthenticated(DomainError):
    status_code = 401
    title = "Unauthenticated"
