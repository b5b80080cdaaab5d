"""Schemas of the ``backend`` group, from the backend registry (:mod:`lstm_exp.backends.registry`).

Each backend folder under ``lstm_exp/backends/`` holds its schema (``config.py``, on the common
base :class:`lstm_exp.backends.base.BackendConfig`: name, precision, device, threads), its
implementation (``backend.py``) and its plugin declaration (``plugin.py``: its stages, export
shape, preflight checks, parity reference, plot hints).  This module only asks the registry,
so a new backend needs no line here; backends never import ``conf_schemas`` (no import cycle).
"""
from __future__ import annotations

from lstm_exp.backends.base import BackendConfig


def backend_schemas() -> dict[str, type[BackendConfig]]:
    """``backend=<name>`` -> its schema class, for every registered backend."""
    from lstm_exp.backends.registry import PLUGINS

    return {name: plugin.config_class for name, plugin in PLUGINS.items()}
