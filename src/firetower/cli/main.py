"""The `firetower` command: one Typer app, one sub-app per domain."""

from __future__ import annotations

import typer

from firetower.cli import server

app = typer.Typer(
    name="firetower",
    help="Self-hosted incident management.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.command()(server.serve)
app.command()(server.worker)
app.command()(server.migrate)
app.add_typer(server.admin_app, name="admin")


def main() -> None:
    app()
