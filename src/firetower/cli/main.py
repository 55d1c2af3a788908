"""The `firetower` command: one Typer app, one sub-app per domain.

Server commands (serve, worker, migrate, admin) work on this machine's database; client
commands (declare, incidents, update, ..., catalog, apply, doctor) speak the REST API at
FIRETOWER_URL with FIRETOWER_TOKEN.
"""

from __future__ import annotations

import typer

from firetower.cli import catalog, doctor, incidents, probes, server
from firetower.cli import signals as signal_commands
from firetower.cli import slos as slo_commands
from firetower.cli.output import OneLineErrorsGroup

app = typer.Typer(
    name="firetower",
    help="Self-hosted incident management.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    cls=OneLineErrorsGroup,
)
app.command()(server.serve)
app.command()(server.worker)
app.command()(server.migrate)
app.add_typer(server.admin_app, name="admin")

app.command()(incidents.declare)
app.add_typer(incidents.incidents_app, name="incidents")
app.command()(incidents.update)
app.command()(incidents.note)
app.command()(incidents.ack)
app.command()(incidents.assign)
app.command()(incidents.resolve)
app.command()(incidents.timeline)
app.add_typer(catalog.catalog_app, name="catalog")
app.command()(catalog.apply)
app.command()(doctor.doctor)
app.add_typer(signal_commands.alerts_app, name="alerts")
app.add_typer(signal_commands.silence_app, name="silence")
app.add_typer(signal_commands.integrations_app, name="integrations")
app.add_typer(signal_commands.changes_app, name="changes")
app.add_typer(probes.probes_app, name="probes")
app.add_typer(slo_commands.slo_app, name="slo")


def main() -> None:
    app()
