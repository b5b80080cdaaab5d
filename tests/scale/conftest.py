"""Shared by the team-scale tests: the services' fixtures.  The smoke model's stage cache
(``smoke_cache``, tests/conftest.py) is trained once per session; each test copies it, so it pays
for its service, not for training."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from services import Postgres, SwiftS3, running  # noqa: E402


@pytest.fixture()
def postgres():
    """A private PostgreSQL cluster (services.Postgres), stopped by its PID and removed after the test."""
    with running(Postgres, "lstm_exp-pg-") as server:
        yield server




@pytest.fixture()
def swift():
    """OpenStack Swift's S3 API (services.SwiftS3), stopped by its PIDs and removed after the test."""
    with running(SwiftS3, "lstm_exp-swift-") as store:
        yield store
