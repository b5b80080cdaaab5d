"""Shared by the team-scale tests: one smoke model trained once (tracking off) whose stage cache
the tests' sweeps reuse (``paths.cache_dir=``), so each test pays for its service, not for training."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from services import SMOKE, Postgres, SwiftS3, lstm_exp, running  # noqa: E402


@pytest.fixture(scope="session")
def smoke_cache(tmp_path_factory) -> Path:
    pytest.importorskip("espeakng_loader")
    folder = tmp_path_factory.mktemp("scale-cache")
    proc = lstm_exp(folder, *SMOKE, "stage=export", "tracking=none")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return folder / "cache"


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
