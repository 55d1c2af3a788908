"""Typed settings from FIRETOWER_* variables and the ``settings:`` block of firetower.yaml.

Invalid configuration stops start-up with a message that names the key and the expected
form. The secret key is generated into FIRETOWER_HOME on first run; a weak or default
secret is refused outside development.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)

from firetower.errors import ConfigError

SEVERITIES = ("SEV1", "SEV2", "SEV3", "SEV4")
WEAK_SECRETS = {"", "changeme", "change-me", "changethis", "secret", "firetower", "development"}


def severity_rank(severity: str) -> int:
    """SEV1 is the most severe: rank 1. Lower rank, higher severity."""
    return SEVERITIES.index(severity) + 1


class BlastRadiusRule(BaseModel):
    """Raise the severity to at least ``severity`` when a blast radius crosses a threshold."""

    name: str
    severity: Literal["SEV1", "SEV2", "SEV3", "SEV4"]
    min_users: int | None = Field(default=None, ge=0)
    min_tier1_services: int | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _has_threshold(self) -> BlastRadiusRule:
        if self.min_users is None and self.min_tier1_services is None:
            raise ValueError("a blast radius rule needs min_users or min_tier1_services")
        return self


class SeverityPolicy(BaseModel):
    risk_minimum_severity: Literal["SEV1", "SEV2", "SEV3", "SEV4"] = "SEV1"
    blast_radius_rules: list[BlastRadiusRule] = Field(
        default_factory=lambda: [
            BlastRadiusRule(name="many-users", severity="SEV2", min_users=10_000),
            BlastRadiusRule(name="tier1-impacted", severity="SEV2", min_tier1_services=1),
        ]
    )


DEFAULT_SEVERITY_MEANINGS = {
    "SEV1": "Critical: core service down, data, security or revenue at risk",
    "SEV2": "Major: significant degradation for many users",
    "SEV3": "Minor: limited impact, a workaround exists",
    "SEV4": "Low: cosmetic or internal only",
}


class _YamlSettingsSource(PydanticBaseSettingsSource):
    """Reads the ``settings:`` mapping of the firetower.yaml named by FIRETOWER_CONFIG."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        path = os.environ.get("FIRETOWER_CONFIG")
        if not path:
            return {}
        data = load_yaml_file(Path(path))
        block = data.get("settings") or {}
        if not isinstance(block, dict):
            raise ConfigError(f"{path}: 'settings' must be a mapping of setting names to values")
        return block


def load_yaml_file(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from exc
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a mapping at the top level")
    return data


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="FIRETOWER_", env_nested_delimiter="__", extra="forbid", validate_default=True
    )

    env: Literal["development", "test", "production"] = "development"
    home: Path = Path(".firetower")
    database_url: str | None = None
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    public_url: str | None = None
    secret_key: SecretStr | None = None
    log_format: Literal["console", "json"] = "console"
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    secure_cookies: bool | None = None
    """None: secure when ``env`` is production; true or false as set otherwise."""
    embedded_worker: bool = True
    web_processes: int = Field(default=1, ge=1, le=64)
    """Processes that serve HTTP (``serve --processes``); each holds one CPU core's worth."""
    database_pool_size: int = Field(default=10, ge=1)
    database_max_overflow: int = Field(default=20, ge=0)
    database_pool_timeout_seconds: float = Field(default=30.0, gt=0)
    job_max_attempts: int = Field(default=8, ge=1)
    job_retention_days: float = Field(default=14.0, gt=0)
    alert_retention_days: float = Field(default=90.0, gt=0)
    """Resolved alerts last seen longer ago than this are deleted (hourly)."""
    job_lease_seconds: float = Field(default=60.0, gt=0)
    job_backoff_base_seconds: float = Field(default=2.0, gt=0)
    job_backoff_max_seconds: float = Field(default=600.0, gt=0)
    worker_poll_interval_seconds: float = Field(default=0.5, gt=0)
    worker_heartbeat_stale_seconds: float = Field(default=30.0, gt=0)
    severity_meanings: dict[str, str] = Field(
        default_factory=lambda: dict(DEFAULT_SEVERITY_MEANINGS)
    )
    severity_policy: SeverityPolicy = Field(default_factory=SeverityPolicy)
    max_request_body_bytes: int = Field(default=1_000_000, gt=0)
    prometheus_url: str | None = Field(
        default=None,
        pattern=r"^https?://[^\s]+$",
        description="Prometheus that SLOs with a Prometheus ratio query when they name none.",
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, _YamlSettingsSource(settings_cls))

    @field_validator("database_url")
    @classmethod
    def _known_database(cls, value: str | None) -> str | None:
        if value is None:
            return value
        if value.startswith(("postgresql://", "postgres://")):
            raise ValueError("use the psycopg 3 driver: postgresql+psycopg://USER@HOST/DB")
        if not value.startswith(("sqlite://", "sqlite+pysqlite://", "postgresql+psycopg://")):
            raise ValueError("expected sqlite:///PATH or postgresql+psycopg://USER@HOST/DB")
        return value

    @field_validator("severity_meanings")
    @classmethod
    def _four_levels(cls, value: dict[str, str]) -> dict[str, str]:
        if set(value) != set(SEVERITIES):
            raise ValueError(f"expected exactly the keys {', '.join(SEVERITIES)}")
        return value

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.home / 'firetower.db').resolve()}"

    @property
    def cookies_secure(self) -> bool:
        """Whether the console's session cookie is sent over HTTPS only."""
        if self.secure_cookies is None:
            return self.env == "production"
        return self.secure_cookies

    @property
    def is_sqlite(self) -> bool:
        return self.resolved_database_url.startswith("sqlite")

    def secret(self) -> str:
        """The signing secret: configured, or generated once into FIRETOWER_HOME (mode 0600).

        The file is written whole under a temporary name and linked into place, so two
        processes starting together agree on one secret and never read a half-written one.
        """
        if self.secret_key is not None:
            return self.secret_key.get_secret_value()
        path = self.home / "secret_key"
        if not path.exists():
            try:
                self.home.mkdir(parents=True, exist_ok=True)
                draft = self.home / f".secret_key.{os.getpid()}.{secrets.token_hex(4)}"
                fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "w") as handle:
                    handle.write(secrets.token_urlsafe(48))
                try:
                    os.link(draft, path)
                except FileExistsError:
                    pass  # another process won the race: use its secret
                finally:
                    draft.unlink()
            except OSError as exc:
                raise ConfigError(
                    f"FIRETOWER_HOME: cannot write the secret key into {self.home} "
                    f"({exc.strerror}); expected a writable directory, or set "
                    "FIRETOWER_SECRET_KEY"
                ) from exc
        try:
            secret = path.read_text().strip()
        except OSError as exc:
            raise ConfigError(
                f"FIRETOWER_HOME: cannot read {path} ({exc.strerror}); expected a file "
                "readable by the firetower user"
            ) from exc
        if not secret:
            raise ConfigError(
                f"FIRETOWER_HOME: {path} is empty; expected a secret (delete the file to "
                "generate a new one, which logs everyone out)"
            )
        return secret

    def check_secret(self) -> None:
        secret = self.secret()
        if self.env != "development" and (secret.lower() in WEAK_SECRETS or len(secret) < 32):
            raise ConfigError(
                "FIRETOWER_SECRET_KEY: a default or short secret is refused outside "
                "development; expected at least 32 random characters "
                "(or leave it unset to generate one into FIRETOWER_HOME)"
            )


def format_validation_error(exc: ValidationError) -> str:
    """One line per bad key, named both ways it can be set: FIRETOWER_X and settings.x."""
    lines = []
    for error in exc.errors():
        loc = [str(part) for part in error["loc"]]
        key = "FIRETOWER_" + "__".join(loc).upper()
        got = error.get("input")
        shown = f" (got {got!r})" if isinstance(got, str | int | float) else ""
        lines.append(f"{key} (settings.{'.'.join(loc)}): {error['msg']}{shown}")
    return "invalid configuration: " + "; ".join(lines)


def load_settings(**overrides: Any) -> Settings:
    """Build the settings or raise ConfigError naming every bad key."""
    try:
        settings = Settings(**overrides)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc)) from exc
    except SettingsError as exc:
        # A nested setting given as one variable must be JSON, e.g.
        # FIRETOWER_SEVERITY_POLICY='{"risk_minimum_severity": "SEV2"}'.
        field = str(exc).split('"')[1] if str(exc).count('"') >= 2 else "?"
        raise ConfigError(
            f"FIRETOWER_{field.upper()}: cannot be parsed; expected JSON (or set its parts "
            f"one by one, e.g. FIRETOWER_{field.upper()}__<PART>=value)"
        ) from exc
    settings.check_secret()
    return settings
