"""Checks at the start of a sweep (``-m``), before its parent MLflow run is made.

:func:`check_sweep_start` is the first call of
:meth:`lstm_exp.tracking.sweep.SweepCallback.on_multirun_start`, in the launching process:

* **A sweep folder belongs to one sweep.**  The default ``hydra.sweep.dir``
  (``multirun/<date>/<time>[-<n>]``, made by ``lstm_exp.new_folder``) is always new and empty.
  A ``hydra.sweep.dir=<folder>`` that already holds files (an earlier sweep's jobs, summary,
  plots, ``parent_run.json``) is refused: the new sweep would overwrite them and count the
  earlier jobs as its own.
* **A backend's runtime is checked once.**  When the sweep's jobs run a backend through inference
  (``stage=all`` or ``infer``), its plugin's :meth:`~lstm_exp.backends.plugin.BackendPlugin.sweep_preflight`
  runs here (acl: is pyacl there?), so that a missing runtime stops the sweep with the plugin's
  one line instead of failing every job with it (and a FAILED parent with empty plots).  Stages
  that only build files (``stage=export``/``convert``/``preprocess``) are not refused.
* **A Ray head named is a Ray head that answers.**  With ``hydra/launcher=ray_head`` (or any
  launcher whose ``ray.init.address`` is ``HOST:PORT`` / ``ray://HOST:PORT``, or ``auto`` with
  ``RAY_ADDRESS`` set), the address is probed with one TCP connect before anything is launched:
  a head that is down or misspelt is one line here instead of Ray's ``ConnectionError``
  traceback after its own retries.

A refusal prints one ``lstm_exp: error:`` line and exits 1; no MLflow run is made and no file is
written.
"""
from __future__ import annotations

import os
import socket
import sys
from pathlib import Path
from typing import Any, Iterable

from lstm_exp.errors import LstmExpError
from lstm_exp.tracking.sweep import PARENT_FILE

#: the stages that run a backend's runtime (the others only build files for it)
RUNTIME_STAGES = ("all", "infer")


def _override_values(overrides: Iterable[str], key: str, default: str) -> list[str]:
    """The values a sweep gives ``key`` (``backend=torch,acl`` -> [torch, acl]), else [default]."""
    for override in overrides:
        name, _, value = override.partition("=")
        if name.lstrip("+") == key and value:
            return [v.strip() for v in value.split(",")]
    return [default]


def check_sweep_dir(sweep_dir: Path) -> None:
    """Refuse a sweep dir that already holds files (module doc)."""
    if not sweep_dir.is_dir():
        return
    held = sorted(p.name for p in sweep_dir.iterdir())
    if held:
        # an earlier sweep's record first (what makes the folder a sweep's), then the other entries
        held.sort(key=lambda name: name != PARENT_FILE)
        shown = ", ".join(held[:4]) + (f", ... ({len(held)} entries)" if len(held) > 4 else "")
        raise LstmExpError(
            f"hydra.sweep.dir={sweep_dir} is not empty ({shown}): a sweep folder holds one sweep, and this one "
            "would overwrite and count the earlier one's files; write a new hydra.sweep.dir, or leave it out "
            "to get a fresh multirun/<date>/<time> folder")


def check_runtimes(config: Any) -> None:
    """Each of the sweep's backends' sweep preflight, once, when its jobs run the runtime."""
    from lstm_exp.backends.registry import PLUGINS

    overrides = list(config.hydra.overrides.task)
    backends = _override_values(overrides, "backend", str(config.backend.get("name", "")))
    stages = _override_values(overrides, "stage", str(config.get("stage", "all")))
    if not any(stage in RUNTIME_STAGES for stage in stages):
        return
    for name in backends:
        if name in PLUGINS:  # an unknown name is Hydra's to report, with its options
            PLUGINS[name].sweep_preflight()


def ray_head_address(config: Any) -> str | None:
    """``HOST:PORT`` of the Ray head the sweep's launcher connects to, or None (no Ray launcher,
    or one that starts its own cluster)."""
    launcher = config.hydra.get("launcher") if "hydra" in config else None
    ray = launcher.get("ray") if launcher is not None else None
    init = ray.get("init") if ray is not None else None
    address = init.get("address") if init is not None else None
    if address in (None, "", "local"):
        return None
    address = str(address)
    if address == "auto":
        address = os.environ.get("RAY_ADDRESS", "")
        if not address or address == "auto":
            return None  # Ray looks for a head started on this machine itself
    address = address.removeprefix("ray://")
    host, _, port = address.rpartition(":")
    return address if host and port.isdigit() else None


def check_ray_head(config: Any, timeout_s: float = 5.0) -> None:
    """Refuse a Ray head address nothing answers at (module doc)."""
    address = ray_head_address(config)
    if address is None:
        return
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise LstmExpError(
            f"hydra.launcher.ray.init.address={address}: no Ray head answers there ({reason}): start one with "
            f"`ray start --head --port={port}` on {host}, or correct the address (or RAY_ADDRESS)") from None


def check_sweep_start(config: Any, sweep_dir: Path) -> None:
    """The checks of the module doc; a refusal is one line and exit status 1."""
    try:
        check_sweep_dir(sweep_dir)
        check_runtimes(config)
        check_ray_head(config)
    except LstmExpError as err:
        print(f"lstm_exp: error: {err}", file=sys.stderr)
        raise SystemExit(1) from None
