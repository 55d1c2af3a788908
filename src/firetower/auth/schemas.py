"""Input and output shapes of users, teams and tokens."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, EmailStr, Field

from firetower.text import NO_NUL


class Role(StrEnum):
    viewer = "viewer"
    responder = "responder"
    admin = "admin"

    @property
    def rank(self) -> int:
        return ["viewer", "responder", "admin"].index(self.value)

    def allows(self, needed: Role) -> bool:
        return self.rank >= needed.rank


class UserCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    email: EmailStr
    name: str = Field(default="", max_length=200, pattern=NO_NUL)
    role: Role = Role.responder
    password: str | None = Field(default=None, min_length=12, max_length=1024)


class UserUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    active: bool = Field(
        description="false deactivates the user: their console sessions end and their API "
        "tokens stop working at once; true lets them log in and use their tokens again."
    )


class UserRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    email: str
    name: str
    role: Role
    active: bool
    deactivated_at: datetime | None = Field(
        description="When the user was deactivated; null while they are active, and for a "
        "user deactivated before firetower recorded it."
    )
    deactivated_by: str | None = Field(
        description="Who deactivated them: an admin's email, or `firetower admin` for the "
        "server's CLI; null while they are active."
    )


class TeamCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=100, pattern=r"^[a-z0-9][a-z0-9._-]*$")
    description: str = Field(default="", max_length=2000, pattern=NO_NUL)
    members: list[EmailStr] = Field(default_factory=list)


class TeamRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    name: str
    description: str
    members: list[str]


class TokenCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=100, pattern=NO_NUL)
    role: Role | None = None


class TokenRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    name: str
    prefix: str
    role: Role
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


class TokenCreated(TokenRead):
    token: str = Field(description="The secret; shown once and never again.")
