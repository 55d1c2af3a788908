"""Usage mistakes (bad option values, missing arguments, unknown options or commands) are one
``error:`` line on stderr with exit code 2, as docs/cli.md promises; ``--help`` stays Rich."""

from __future__ import annotations

import pytest

from tests.cli_support import error_line, run_cli, unused_port

# No server listens: a usage error must be found before any request is made.
URL = f"http://127.0.0.1:{unused_port()}"


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["alerts", "list", "--status", "burning"], "invalid value for '--status': 'burning' is"),
        (["alerts", "list", "--limit", "0"], "invalid value for '--limit': "),
        (["integrations", "create", "x", "--kind", "nagios"], "invalid value for '--kind': "),
        (["integrations", "create", "x"], "missing option '--kind'. Choose from: alertmanager,"),
        (["integrations", "create", "--kind", "generic"], "missing argument 'name'"),
        (["silence", "expire", "abc"], "invalid value for 'ID': "),
        (["alerts", "list", "--bogus"], "no such option: --bogus"),
        (["--bogus"], "no such option: --bogus"),
        (["nosuch"], "no such command 'nosuch'"),
        (["alerts", "lst"], "no such command 'lst'. Did you mean 'list'?"),
        (["declare", "x", "--severity", "SEV9"], "invalid value for '--severity': 'SEV9'"),
        (
            ["update", "INC-2", "--merged-into", "INC-1", "--status", "resolved"],
            "invalid value for '--status': --merged-into sets the status merged; "
            "leave out --status resolved",
        ),
        (
            ["update", "INC-2"],
            "nothing to update: give --status, --severity, --title, --summary or --merged-into",
        ),
    ],
)
def test_a_usage_error_is_one_line_naming_the_option(args: list[str], expected: str) -> None:
    result = run_cli(args, url=URL, token="unused")
    assert result.exit_code == 2, result.output
    line = error_line(result)
    assert line.startswith(f"error: {expected}"), line
    assert "Value error" not in line and "╭" not in line
    assert result.stdout == ""


def test_help_is_still_shown_whole() -> None:
    result = run_cli(["alerts", "list", "--help"])
    assert result.exit_code == 0
    assert "Usage: firetower alerts list" in result.stdout and "--status" in result.stdout


def test_a_bare_group_still_prints_its_help() -> None:
    result = run_cli(["alerts"])
    assert result.exit_code == 2
    assert "Usage: firetower alerts" in result.stdout and "list" in result.stdout
    assert "error:" not in result.stderr
