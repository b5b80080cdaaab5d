"""Where the project's Hydra configs are, in a checkout and in an installed wheel.

The YAML lives in the checkout's top-level ``configs/`` (the one source of truth).  A wheel ships
the same files as ``lstm_exp/configs`` (setup.py maps the folder into the package), so:

* installed (``pip install .`` or a wheel): ``<site-packages>/lstm_exp/configs``;
* a checkout (``pip install -e .`` or ``PYTHONPATH=<checkout>``): ``<checkout>/configs``.

Users add their own groups or presets without editing either: ``--config-dir DIR`` or
``hydra.searchpath=[file://DIR]`` (README, "Your own configs").
"""
from __future__ import annotations

from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent


def config_dir() -> Path:
    """The folder holding ``config.yaml`` and the config groups."""
    for candidate in (PACKAGE_DIR / "configs", PACKAGE_DIR.parent / "configs"):
        if (candidate / "config.yaml").is_file():
            return candidate
    raise RuntimeError(
        f"lstm_exp's configs are missing: neither {PACKAGE_DIR / 'configs'} (an installed wheel) nor "
        f"{PACKAGE_DIR.parent / 'configs'} (a checkout) holds config.yaml; reinstall lstm_exp"
    )
