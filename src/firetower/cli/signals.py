"""Client commands for signals: alerts, silences and integrations."""

from __future__ import annotations

import typer

alerts_app = typer.Typer(help="Alerts received from integrations.", no_args_is_help=True)
silence_app = typer.Typer(help="Silences that mute matching alerts.", no_args_is_help=True)
integrations_app = typer.Typer(help="Integrations and their ingest keys.", no_args_is_help=True)
