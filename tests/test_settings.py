"""Settings: bad configuration stops start-up naming the key; the secret key; YAML and env."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from firetower.errors import ConfigError
from firetower.settings import Settings, load_settings

STRONG = "s" * 8 + "-strong-and-long-enough-" + "t" * 8


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Settings read the process environment: start each test from none of ours."""
    for name in list(os.environ):
        if name.startswith("FIRETOWER_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("FIRETOWER_HOME", str(tmp_path / "home"))


@pytest.mark.parametrize(
    ("variable", "value", "named", "expected"),
    [
        ("FIRETOWER_PORT", "eighty", "FIRETOWER_PORT", "valid integer"),
        ("FIRETOWER_PORT", "70000", "FIRETOWER_PORT", "less than or equal to 65535"),
        ("FIRETOWER_ENV", "prod", "FIRETOWER_ENV", "'development', 'test' or 'production'"),
        ("FIRETOWER_LOG_FORMAT", "xml", "FIRETOWER_LOG_FORMAT", "'console' or 'json'"),
        (
            "FIRETOWER_DATABASE_URL",
            "mysql://db",
            "FIRETOWER_DATABASE_URL",
            "postgresql+psycopg://USER@HOST/DB",
        ),
        (
            "FIRETOWER_DATABASE_URL",
            "postgresql://u@h/db",
            "FIRETOWER_DATABASE_URL",
            "psycopg 3 driver",
        ),
        (
            "FIRETOWER_SEVERITY_POLICY__RISK_MINIMUM_SEVERITY",
            "SEV5",
            "FIRETOWER_SEVERITY_POLICY__RISK_MINIMUM_SEVERITY",
            "'SEV1', 'SEV2', 'SEV3' or 'SEV4'",
        ),
        ("FIRETOWER_SEVERITY_POLICY", "{not json", "FIRETOWER_SEVERITY_POLICY", "JSON"),
        ("FIRETOWER_JOB_MAX_ATTEMPTS", "0", "FIRETOWER_JOB_MAX_ATTEMPTS", "greater than"),
    ],
)
def test_invalid_configuration_names_the_key_and_the_form(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, named: str, expected: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError) as refused:
        load_settings()
    message = str(refused.value)
    assert named in message
    assert expected in message


def test_nested_environment_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FIRETOWER_SEVERITY_POLICY__RISK_MINIMUM_SEVERITY", "SEV2")
    monkeypatch.setenv("FIRETOWER_PORT", "9100")
    settings = load_settings()
    assert settings.severity_policy.risk_minimum_severity == "SEV2"
    assert settings.port == 9100
    # The other parts of the policy keep their defaults.
    assert [r.name for r in settings.severity_policy.blast_radius_rules] == [
        "many-users",
        "tier1-impacted",
    ]


def test_the_yaml_settings_block_is_read_and_env_wins(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    config = tmp_path / "firetower.yaml"
    config.write_text(
        "settings:\n"
        "  port: 9000\n"
        "  log_format: json\n"
        "  severity_policy:\n"
        "    blast_radius_rules:\n"
        "      - {name: huge, severity: SEV1, min_users: 1000000}\n"
        "services: []\n"
    )
    monkeypatch.setenv("FIRETOWER_CONFIG", str(config))
    monkeypatch.setenv("FIRETOWER_LOG_FORMAT", "console")
    monkeypatch.setenv("FIRETOWER_SEVERITY_POLICY__RISK_MINIMUM_SEVERITY", "SEV2")
    settings = load_settings()
    assert settings.port == 9000
    assert settings.log_format == "console"
    assert settings.severity_policy.risk_minimum_severity == "SEV2"
    assert [r.name for r in settings.severity_policy.blast_radius_rules] == ["huge"]


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("settings:\n  port: [1, 2]\n", "FIRETOWER_PORT (settings.port)"),
        ("settings:\n  prot: 80\n", "settings.prot"),
        ("settings: [1, 2]\n", "'settings' must be a mapping"),
        (
            "settings:\n  severity_policy:\n    blast_radius_rules:\n"
            "      - {name: x, severity: SEV1}\n",
            "min_users or min_tier1_services",
        ),
        ("- a list\n", "mapping at the top level"),
        ("settings: {port: 1\n", "not valid YAML"),
    ],
)
def test_a_bad_yaml_file_is_refused_by_name(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, content: str, expected: str
) -> None:
    config = tmp_path / "firetower.yaml"
    config.write_text(content)
    monkeypatch.setenv("FIRETOWER_CONFIG", str(config))
    with pytest.raises(ConfigError) as refused:
        load_settings()
    assert expected in str(refused.value)


def test_a_missing_yaml_file_is_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("FIRETOWER_CONFIG", str(tmp_path / "absent.yaml"))
    with pytest.raises(ConfigError, match="cannot read"):
        load_settings()


def test_the_secret_is_generated_once_with_mode_0600(tmp_path: Path) -> None:
    home = tmp_path / "fresh"
    first = load_settings(home=home, env="production").secret()
    path = home / "secret_key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(first) >= 32
    assert load_settings(home=home, env="production").secret() == first
    assert sorted(p.name for p in home.iterdir()) == ["secret_key"]  # no drafts left behind
    assert Settings(home=tmp_path / "other").secret() != first


def test_a_configured_secret_is_used_as_is(tmp_path: Path) -> None:
    assert load_settings(home=tmp_path, secret_key=STRONG, env="production").secret() == STRONG
    assert not (tmp_path / "secret_key").exists()


@pytest.mark.parametrize("weak", ["changeme", "secret", "firetower", "short-but-random-x"])
@pytest.mark.parametrize("env", ["production", "test"])
def test_a_default_or_short_secret_is_refused_outside_development(
    tmp_path: Path, weak: str, env: str
) -> None:
    with pytest.raises(ConfigError, match="FIRETOWER_SECRET_KEY") as refused:
        load_settings(home=tmp_path, secret_key=weak, env=env)
    assert "at least 32" in str(refused.value)


def test_a_weak_secret_is_allowed_in_development(tmp_path: Path) -> None:
    assert load_settings(home=tmp_path, secret_key="changeme").secret() == "changeme"


def test_an_emptied_secret_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "secret_key").write_text("\n")
    with pytest.raises(ConfigError, match="is empty"):
        load_settings(home=tmp_path).secret()


def test_an_unwritable_home_is_refused_by_name(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(ConfigError, match="FIRETOWER_HOME"):
        load_settings(home=blocker / "home")


def test_client_variables_do_not_stop_the_server(monkeypatch: pytest.MonkeyPatch) -> None:
    """FIRETOWER_URL and FIRETOWER_TOKEN belong to the CLI client; the server ignores them."""
    monkeypatch.setenv("FIRETOWER_URL", "http://127.0.0.1:8000")
    monkeypatch.setenv("FIRETOWER_TOKEN", "ft_abc_def")
    assert load_settings().port == 8000


@pytest.mark.parametrize(
    ("env", "variable", "secure"),
    [
        ("production", None, True),
        ("development", None, False),
        ("test", None, False),
        ("production", "false", False),  # e.g. TLS ends at a proxy that rewrites cookies
        ("development", "true", True),
    ],
)
def test_cookies_are_secure_in_production_unless_set(
    monkeypatch: pytest.MonkeyPatch, env: str, variable: str | None, secure: bool
) -> None:
    monkeypatch.setenv("FIRETOWER_ENV", env)
    if variable is not None:
        monkeypatch.setenv("FIRETOWER_SECURE_COOKIES", variable)
    assert load_settings(secret_key=STRONG).cookies_secure is secure


def test_default_database_is_sqlite_in_home(tmp_path: Path) -> None:
    settings = load_settings(home=tmp_path)
    assert settings.resolved_database_url == f"sqlite:///{(tmp_path / 'firetower.db').resolve()}"
    assert settings.is_sqlite
