"""Input and output shapes of incidents, their roles, tasks and timeline."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from firetower.catalog.schemas import BlastRadius
from firetower.clock import UtcDatetime
from firetower.incidents.lifecycle import IncidentRole, Severity, Source, Status
from firetower.text import NO_NUL, VISIBLE

Line = Annotated[str, Field(pattern=VISIBLE), AfterValidator(str.strip)]
Text = Annotated[str, Field(pattern=NO_NUL)]
Title = Field(min_length=1, max_length=300)


class IncidentCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    title: Line = Title
    severity: Severity = Severity.SEV3
    services: list[Text] = Field(default_factory=list, max_length=100)
    summary: Text = Field(default="", max_length=20_000)
    source: Source = Source.manual
    impact_started_at: UtcDatetime | None = None
    detected_at: UtcDatetime | None = None
    data_at_risk: bool = False
    security_at_risk: bool = False
    revenue_at_risk: bool = False


class IncidentUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    title: Line | None = Field(default=None, min_length=1, max_length=300)
    summary: Text | None = Field(default=None, max_length=20_000)
    severity: Severity | None = None
    status: Status | None = None
    services: list[Text] | None = Field(default=None, max_length=100)
    impact_started_at: UtcDatetime | None = None
    data_at_risk: bool | None = None
    security_at_risk: bool | None = None
    revenue_at_risk: bool | None = None
    merged_into: str | None = Field(default=None, pattern=r"^INC-\d+$")


class TransitionRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    to: Status
    merged_into: str | None = Field(default=None, pattern=r"^INC-\d+$")
    note: Text = Field(default="", max_length=5000)


class RoleAssign(BaseModel):
    model_config = ConfigDict(extra="forbid")
    user: Line = Field(min_length=3, max_length=320, description="The email of the new holder.")


class RoleRead(BaseModel):
    role: IncidentRole
    user: str
    user_active: bool = Field(
        description="False once the holder is deactivated: the role stays theirs until "
        "it is handed over."
    )
    assigned_at: datetime


class TaskCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    title: Line = Title
    assignee: Line | None = Field(default=None, max_length=320)


class TaskUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    title: Line | None = Field(default=None, min_length=1, max_length=300)
    assignee: Line | None = Field(default=None, max_length=320)
    status: str | None = Field(default=None, pattern=r"^(open|done|canceled)$")


class TaskRead(BaseModel):
    id: int
    title: str
    assignee: str | None
    assignee_active: bool | None = Field(
        description="False once the assignee is deactivated: the task stays theirs until "
        "it is handed over; null without an assignee."
    )
    status: str
    created_at: datetime
    completed_at: datetime | None


class NoteCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: Line = Field(min_length=1, max_length=20_000)
    pinned: bool = False


class TimelineEventRead(BaseModel):
    id: int
    at: datetime
    actor: str
    kind: str
    before: Any = None
    after: Any = None
    text: str
    rule: str | None
    pinned: bool


class IncidentSummary(BaseModel):
    ref: str
    title: str
    severity: Severity
    status: Status
    source: Source
    services: list[str]
    declared_at: datetime
    resolved_at: datetime | None
    escalate_immediately: bool


class IncidentRead(IncidentSummary):
    summary: str
    data_at_risk: bool
    security_at_risk: bool
    revenue_at_risk: bool
    merged_into: str | None
    impact_started_at: datetime | None
    detected_at: datetime | None
    acknowledged_at: datetime | None
    mitigated_at: datetime | None
    closed_at: datetime | None
    allowed_transitions: list[Status]
    roles: list[RoleRead]
    participants: list[str]
    deactivated_participants: list[str] = Field(
        description="Those of `participants` who are deactivated since they joined (in the "
        "same order); empty while every participant is active."
    )
    tasks: list[TaskRead]
    blast_radius: BlastRadius | None


class IncidentPage(BaseModel):
    items: list[IncidentSummary]
    next_cursor: str | None = Field(
        description="Pass as ?cursor= for the next page; null at the end."
    )


class TimelinePage(BaseModel):
    items: list[TimelineEventRead]
