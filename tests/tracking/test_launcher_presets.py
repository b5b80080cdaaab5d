"""The launcher presets under configs/hydra/launcher compose onto the plugins' own configs, and
the sweep callback is registered."""
from __future__ import annotations

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from conf_schemas import register_configs
from lstm_exp.config_path import config_dir

CONFIG_DIR = config_dir()


def _hydra_cfg(*overrides: str):
    register_configs()
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(version_base="1.3", config_dir=str(CONFIG_DIR)):
            return compose("config", overrides=list(overrides), return_hydra_config=True).hydra
    finally:
        GlobalHydra.instance().clear()


def test_sweep_callback_is_registered():
    assert _hydra_cfg().callbacks.sweep_summary._target_ == "lstm_exp.tracking.sweep.SweepCallback"


def test_parallel_preset_is_joblib_with_two_jobs():
    pytest.importorskip("hydra_plugins.hydra_joblib_launcher")
    launcher = _hydra_cfg("hydra/launcher=parallel").launcher
    assert launcher._target_.endswith("JoblibLauncher") and launcher.n_jobs == 2


def test_slurm_preset_is_submitit_slurm():
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    launcher = _hydra_cfg("hydra/launcher=slurm").launcher
    assert launcher._target_.endswith("SlurmLauncher") and launcher.cpus_per_task == 2
