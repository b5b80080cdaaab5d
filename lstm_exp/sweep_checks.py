"""Checks at the start of a sweep (``-m``), before its parent MLflow run is made.

:func:`check_sweep_start` is the first call of
:meth:`lstm_exp.tracking.sweep.SweepCallback.on_multirun_start`, in the launching process:

* **A sweep folder belongs to one sweep.**  The default ``hydra.sweep.dir``
  (``multirun/<date>/<time>[-<n>]``, made by ``lstm_exp.new_folder``) is always new and empty.
  A ``hydra.sweep.dir=<folder>`` that already holds files (an earlier sweep's jobs, summary,
  plots, ``parent_run.json``) is refused: the new sweep would overwrite them and count the
  earlier jobs as its own.
* **A backend's runtime is checked once.**  When the sweep's jobs run ``backend=acl`` through
  inference (``stage=all`` or ``infer``) and pyacl is absent, the sweep stops here with the
  plugin's one line, instead of every job failing with it (and a FAILED parent with empty plots).
  ``stage=export``/``convert``/``preprocess`` do not need pyacl, so they are not refused.

A refusal prints one ``lstm_exp: error:`` line and exits 1; no MLflow run is made and no file is
written.
"""
from __future__ import annotations

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
    """The acl plugin's preflight, once for the sweep, when its jobs run acl's runtime."""
    from lstm_exp.backends.acl.plugin import PLUGIN as ACL

    overrides = list(config.hydra.overrides.task)
    backends = _override_values(overrides, "backend", str(config.backend.get("name", "")))
    stages = _override_values(overrides, "stage", str(config.get("stage", "all")))
    if ACL.name in backends and any(stage in RUNTIME_STAGES for stage in stages):
        ACL.preflight(config.backend)


def check_sweep_start(config: Any, sweep_dir: Path) -> None:
    """The checks of the module doc; a refusal is one line and exit status 1."""
    try:
        check_sweep_dir(sweep_dir)
        check_runtimes(config)
    except LstmExpError as err:
        print(f"lstm_exp: error: {err}", file=sys.stderr)
        raise SystemExit(1) from None
