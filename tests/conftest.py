"""Shared fixtures: Hydra composition of the project's configs; the trained smoke model's cache."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from conf_schemas import register_configs

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"


@pytest.fixture(scope="session")
def smoke_cache(tmp_path_factory) -> Path:
    """A stage cache holding the smoke model (``experiment=smoke stage=export``), trained once per
    test session with tracking off.  Tests that only infer from it may point ``paths.cache_dir``
    at it; a test that could change its entries works on a copy."""
    pytest.importorskip("espeakng_loader")
    folder = tmp_path_factory.mktemp("smoke-cache")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "LSTM_EXP_"))}
    env["PYTHONPATH"] = os.pathsep.join([str(CONFIG_DIR.parent), *filter(None, [env.get("PYTHONPATH")])])
    proc = subprocess.run([sys.executable, "-m", "lstm_exp", "experiment=smoke", "progress=false", "stage=export",
                           "tracking=none"], cwd=folder, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return folder / "cache"


@pytest.fixture
def compose_config(tmp_path):
    """``compose_config(*overrides)`` -> the composed DictConfig, with paths under tmp_path."""
    register_configs()

    def _compose(*overrides: str):
        GlobalHydra.instance().clear()
        with initialize_config_dir(version_base="1.3", config_dir=str(CONFIG_DIR)):
            return compose(
                "config",
                overrides=[f"paths.root={tmp_path}", "tracking=none", *overrides],
            )

    yield _compose
    GlobalHydra.instance().clear()
