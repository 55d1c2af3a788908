"""Alembic environment: runs on the engine handed over in config.attributes."""

from __future__ import annotations

from alembic import context

import firetower.auth.models
import firetower.catalog.models
import firetower.incidents.models
import firetower.jobs
import firetower.monitors.models
import firetower.signals.models  # noqa: F401  (every table must be imported to be known)
from firetower.db import Base

config = context.config
engine = config.attributes.get("engine")
if engine is None:
    raise RuntimeError("run migrations through `firetower migrate`, which provides the engine")

with engine.connect() as connection:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        on_version_apply=config.attributes.get("on_version_apply"),
    )
    with context.begin_transaction():
        context.run_migrations()
    connection.commit()
