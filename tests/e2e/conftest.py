"""Real Prometheus and Alertmanager binaries (Debian's packages) for the end-to-end tests.

Each daemon runs from its own temporary directory on a free loopback port, with its output
kept in test-artifacts/e2e/ for debugging. Without the binaries these tests skip, saying so;
under CI=true (where `.ci/run` installs them) a missing binary fails the run instead.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Sequence
from pathlib import Path

import pytest

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "e2e"


def _binary(names: Sequence[str], package: str) -> str:
    for name in names:
        found = shutil.which(name)
        if found:
            return found
    message = (
        f"the end-to-end tests need {' or '.join(names)} (apt-get install {package}); "
        "`.ci/run` installs it"
    )
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true: {message}")
    pytest.skip(message)


@pytest.fixture(scope="session")
def prometheus_binary() -> str:
    return _binary(["prometheus"], "prometheus")


@pytest.fixture(scope="session")
def alertmanager_binary() -> str:
    # Debian names it prometheus-alertmanager; upstream tarballs call it alertmanager.
    return _binary(["prometheus-alertmanager", "alertmanager"], "prometheus-alertmanager")


@pytest.fixture
def artifacts(request: pytest.FixtureRequest) -> Path:
    """test-artifacts/e2e/<test name>/, emptied first: logs of the last run of each test."""
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)
    path = ARTIFACTS / name
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path
