"""What one firetower process holds: settings, database, event bus and job registry."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from sqlalchemy.orm import Session

from firetower.db import Database
from firetower.events import EventBus, unit_of_work
from firetower.jobs import CLEANUP_KIND, JobRegistry, register_maintenance
from firetower.settings import Settings


@dataclass
class Runtime:
    settings: Settings
    database: Database
    bus: EventBus = field(default_factory=EventBus)
    jobs: JobRegistry = field(default_factory=JobRegistry)

    def __post_init__(self) -> None:
        if CLEANUP_KIND not in self.jobs.handlers:
            register_maintenance(self.jobs, keep_succeeded_days=self.settings.job_retention_days)

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """One operation, one transaction, events handled on commit."""
        with unit_of_work(self.database.sessions, self.bus) as session:
            yield session

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A session for reads (on SQLite it neither waits for nor blocks a writer)."""
        with self.database.read_sessions() as session:
            yield session
