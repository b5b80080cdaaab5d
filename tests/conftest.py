"""Shared fixtures: Hydra composition of the project's configs."""
from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from conf_schemas import register_configs

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"


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
