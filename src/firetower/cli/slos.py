"""Client commands for SLOs and SLA reports."""

from __future__ import annotations

import typer

slo_app = typer.Typer(help="SLOs, error budgets and SLA reports.", no_args_is_help=True)
