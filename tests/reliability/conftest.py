"""The catalogue's shared workspace (the harness is :mod:`catalogue`)."""
from __future__ import annotations

import pytest

from catalogue import SMOKE, Workspace


@pytest.fixture(scope="session")
def workspace(tmp_path_factory) -> Workspace:
    """One workspace for the whole catalogue: a smoke experiment FINISHED in it first."""
    pytest.importorskip("espeakng_loader")
    space = Workspace(tmp_path_factory.mktemp("catalogue"))
    proc = space.run(*SMOKE)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert list(space.runs().values()) == ["FINISHED"]
    for stage in (space.root / "cache").iterdir():
        (entry,) = [e for e in stage.iterdir() if (e / "_stage.json").is_file()]
        space.smoke_entries[stage.name] = entry
    return space
