"""Client commands for synthetic probes."""

from __future__ import annotations

import typer

probes_app = typer.Typer(help="Synthetic probes (HTTP, TCP, DNS).", no_args_is_help=True)
