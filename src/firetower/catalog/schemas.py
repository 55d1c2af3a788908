"""Input and output shapes of the catalog."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from firetower.text import NO_NUL

NAME_PATTERN = r"^[a-z0-9][a-z0-9._-]*$"
# Features are what users see, so their names read like labels ("News feed"): printable,
# no leading or trailing space.
LABEL_PATTERN = r"^[^\s\x00-\x1f\x7f](?:[^\x00-\x1f\x7f]*[^\s\x00-\x1f\x7f])?$"
MAX_IMPORT_BYTES = 1_000_000


class ServiceCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=100, pattern=NAME_PATTERN)
    team: str | None = Field(default=None, max_length=100, pattern=NO_NUL)
    owner: str = Field(default="", max_length=320, pattern=NO_NUL)
    tier: int = Field(default=3, ge=1, le=4)
    description: str = Field(default="", max_length=5000, pattern=NO_NUL)
    runbook_url: str = Field(default="", max_length=2000, pattern=NO_NUL)
    estimated_users: int = Field(default=0, ge=0, le=10_000_000_000)
    depends_on: list[str] = Field(default_factory=list)


class ServiceUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    team: str | None = Field(default=None, max_length=100, pattern=NO_NUL)
    owner: str | None = Field(default=None, max_length=320, pattern=NO_NUL)
    tier: int | None = Field(default=None, ge=1, le=4)
    description: str | None = Field(default=None, max_length=5000, pattern=NO_NUL)
    runbook_url: str | None = Field(default=None, max_length=2000, pattern=NO_NUL)
    estimated_users: int | None = Field(default=None, ge=0, le=10_000_000_000)


Health = Literal["ok", "at_risk", "failing"]


class ServiceRead(BaseModel):
    id: int
    name: str
    team: str | None
    owner: str
    tier: int
    description: str
    runbook_url: str
    estimated_users: int
    depends_on: list[str]
    dependents: list[str]
    health: Health = Field(
        default="ok",
        description="failing: one of its checks (probe, SLO) fails; at_risk: a service it "
        "depends on, directly or not, is failing; ok otherwise.",
    )
    failing_checks: list[str] = Field(default_factory=list)
    at_risk_from: list[str] = Field(
        default_factory=list, description="The failing services it depends on, directly or not."
    )


class DependencyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    service: str = Field(min_length=1, max_length=100, pattern=NO_NUL)
    depends_on: str = Field(min_length=1, max_length=100, pattern=NO_NUL)


class DependencyRead(BaseModel):
    service: str
    depends_on: str


class FeatureCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=100, pattern=LABEL_PATTERN)
    description: str = Field(default="", max_length=5000, pattern=NO_NUL)
    services: list[str] = Field(default_factory=list)


class FeatureRead(BaseModel):
    name: str
    description: str
    services: list[str]


class CustomerCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=200, pattern=LABEL_PATTERN)
    contact: str = Field(default="", max_length=320, pattern=NO_NUL)
    services: list[str] = Field(default_factory=list)


class CustomerRead(BaseModel):
    name: str
    contact: str
    services: list[str]


class BlastRadius(BaseModel):
    """What a set of failing services reaches through the dependency graph."""

    failing: list[str]
    impacted: list[str] = Field(description="The failing services and every transitive dependent.")
    dependents: list[str] = Field(description="Impacted services that are not failing themselves.")
    tier1_impacted: list[str]
    features: list[str]
    customers: list[str]
    failing_checks: dict[str, list[str]] = Field(
        default_factory=dict,
        description="Impacted services with failing checks (probes, SLOs), and those checks.",
    )
    at_risk: list[str] = Field(
        default_factory=list,
        description="Services marked at risk: dependents, directly or not, of a service whose "
        "check fails.",
    )
    failing_dependencies: list[str] = Field(
        default_factory=list,
        description="Services the failing services depend on, directly or not, whose checks "
        "fail: a likely cause upstream.",
    )
    users_estimate: int = Field(
        description="The largest estimated_users among impacted services: users of one "
        "product overlap across its services, so a sum would overcount."
    )


class TeamSpec(BaseModel):
    """A team as a catalog document names it (members are managed in auth)."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=100, pattern=NAME_PATTERN)
    description: str = Field(default="", max_length=2000)


class CatalogDocument(BaseModel):
    """The ``catalog:`` part of firetower.yaml.

    Fields a service entry leaves out keep their current value (a new service gets the
    defaults); ``depends_on``, when given, is the service's whole set of dependencies.
    """

    model_config = ConfigDict(extra="forbid")
    teams: list[TeamSpec] = Field(default_factory=list)
    services: list[ServiceCreate] = Field(default_factory=list)
    features: list[FeatureCreate] = Field(default_factory=list)
    customers: list[CustomerCreate] = Field(default_factory=list)


ImportFormat = Literal["auto", "firetower", "backstage"]


class CatalogImport(BaseModel):
    """Body of ``POST /api/v1/catalog/import``."""

    model_config = ConfigDict(extra="forbid")
    format: ImportFormat = "auto"
    content: str = Field(min_length=1, max_length=MAX_IMPORT_BYTES)


class ImportReport(BaseModel):
    """What an import applied, counted from the document (the same on every re-import)."""

    format: Literal["firetower", "backstage"] = "firetower"
    teams: int = 0
    services: int = 0
    dependencies: int = 0
    features: int = 0
    customers: int = 0
    skipped: int = Field(
        default=0,
        description="Entries read but not applied: Backstage entities of kinds firetower does "
        "not map (Location, Template, User, Domain, …), or top-level keys beside ``catalog``.",
    )
    skipped_kinds: dict[str, int] = Field(default_factory=dict)
