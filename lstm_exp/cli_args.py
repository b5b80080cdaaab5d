"""The command line of ``python -m lstm_exp``, checked before Hydra composes it.

* Overrides may come before or after Hydra's flags (``backend=torch -m batch=1,4``): they are
  moved in front of the flags, the only order Hydra's argparse accepts (it answered a bare
  ``unrecognized arguments`` before).
* A plain override whose first name is neither a config group nor a key of the config
  (``bakend=torch``) is refused with one line that names it and, when one is close, the name
  meant (``did you mean backend?``), instead of Hydra's advice to write ``+bakend=torch``, which
  composes, ignores the value and runs the default backend.  ``+key=``/``++key=``/``~key``
  (Hydra's explicit add/force/delete) are left to Hydra.
* ``key=~/x`` gets the home folder, as ``data.root="~/x"`` does at validation.
* A relative folder given to a key of :data:`LAUNCH_RELATIVE_KEYS` (``hydra.sweep.dir=my_sweep``,
  ``paths.cache_dir=cache2``) is made absolute against the launch folder here, once: a sweep's job
  that runs in another working directory (a Ray head's, a batch node's) writes its folder, reads
  the stage cache and finds ``parent_run.json`` where the sweep put them.
* :func:`check_launch_folder`: a run writes ``outputs/``, ``multirun/``, ``cache/`` and
  ``mlflow.db`` into the folder it is started from; a folder it cannot write to is one line
  before Hydra makes any folder (Hydra's resolver otherwise fails in its error formatting).

Each check raises :class:`~lstm_exp.errors.ConfigError`; ``lstm_exp.app.main`` prints it as the
``lstm_exp: error:`` line and exits 1.  No MLflow run is recorded: the store lives in the launch
folder, and nothing has been composed yet.
"""
from __future__ import annotations

import dataclasses
import difflib
import os
import re
from pathlib import Path
from typing import Iterable, Optional, Sequence

from lstm_exp.errors import ConfigError

#: Hydra's options that take a value (the next argument)
VALUE_OPTIONS = frozenset({"--cfg", "-c", "--package", "-p", "--config-path", "-cp", "--config-name", "-cn",
                           "--config-dir", "-cd", "--experimental-rerun"})
#: Hydra's option whose value is optional
OPTIONAL_VALUE_OPTIONS = frozenset({"--info", "-i"})
#: options after which Hydra makes no run folder (it prints and exits)
NO_RUN_OPTIONS = frozenset({"--help", "-h", "--hydra-help", "--version", "--cfg", "-c", "--info", "-i",
                            "--shell-completion", "-sc"})
MULTIRUN_OPTIONS = frozenset({"--multirun", "-m"})
#: overrides that name the run folder themselves (then it is the user's, not the launch folder's)
RUN_DIR_KEYS = ("hydra.run.dir", "hydra.sweep.dir")
#: folders a relative value of which means "under the launch folder" (made absolute before Hydra)
LAUNCH_RELATIVE_KEYS = (*RUN_DIR_KEYS, "paths.root", "paths.cache_dir")
#: characters of a folder name kept as it is in an override (Hydra's grammar reads them unquoted)
_PLAIN_PATH = re.compile(r"[\w./@+-]+")


def split_argv(args: Sequence[str]) -> tuple[list[str], list[str]]:
    """(overrides, options with their values), each in the order given."""
    overrides: list[str] = []
    options: list[str] = []
    index = 0
    while index < len(args):
        arg = args[index]
        if arg in VALUE_OPTIONS and index + 1 < len(args):
            options += [arg, args[index + 1]]
            index += 1
        elif arg in OPTIONAL_VALUE_OPTIONS and index + 1 < len(args) and _is_option_value(args[index + 1]):
            options += [arg, args[index + 1]]
            index += 1
        elif arg.startswith("-"):
            options.append(arg)
        else:
            overrides.append(arg)
        index += 1
    return overrides, options


def _is_option_value(arg: str) -> bool:
    return not arg.startswith("-") and "=" not in arg


def override_name(override: str) -> str:
    """The first name of a plain ``key=value`` override (``hydra/launcher=x`` -> ``hydra``), or
    "" for what Hydra's grammar adds, forces or deletes (``+k=``, ``++k=``, ``~k``)."""
    if override.startswith(("+", "~")) or "=" not in override:
        return ""
    key = override.split("=", 1)[0]
    return key.split("/", 1)[0].split(".", 1)[0].split("@", 1)[0]


def known_names(config_dir: Path) -> tuple[list[str], list[str]]:
    """(config groups: the folders of ``config_dir`` and ``hydra``; top-level keys of the schema)."""
    from conf_schemas.experiment import ExperimentConfig

    groups = sorted({p.name for p in Path(config_dir).iterdir() if p.is_dir()} | {"hydra"})
    keys = sorted(f.name for f in dataclasses.fields(ExperimentConfig))
    return groups, keys


def check_override_names(overrides: Iterable[str], config_dir: Path) -> None:
    """Refuse the first override whose name is neither a group nor a key (module doc)."""
    groups, keys = known_names(config_dir)
    known = sorted(set(groups) | set(keys))
    for override in overrides:
        name = override_name(override)
        if not name or name in known:
            continue
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
        what = f"'{name}' is neither a config group nor a key of the config"
        if close:
            meant = close[0] + override[len(name):]
            raise ConfigError(f"{override}: {what}; did you mean {close[0]}? (write {meant})")
        raise ConfigError(f"{override}: {what} (groups: {', '.join(groups)}; keys: {', '.join(keys)}); "
                          "see python -m lstm_exp --help")


def expand_home(override: str) -> str:
    """``key=~/x`` -> ``key=<home>/x``: the shell leaves a ``~`` after ``data.root=`` alone, and
    Hydra's grammar cannot read it (``LexerNoViableAltException``)."""
    key, equals, value = override.partition("=")
    if equals and (value == "~" or value.startswith("~/")):
        return f"{key}={os.path.expanduser(value)}"
    return override


def anchored(override: str, launch: Path) -> str:
    """``hydra.sweep.dir=x`` -> ``hydra.sweep.dir=<launch>/x`` for :data:`LAUNCH_RELATIVE_KEYS`; a
    value with Hydra syntax (interpolation, sweep, quotes) is left to Hydra as written."""
    key, equals, value = override.partition("=")
    if not equals or key not in LAUNCH_RELATIVE_KEYS or not value or not _PLAIN_PATH.fullmatch(value):
        return override
    absolute = str(launch / value) if not os.path.isabs(value) else value
    return f"{key}={absolute}" if _PLAIN_PATH.fullmatch(absolute) else override


def checked_argv(args: Sequence[str], config_dir: Path, launch: Optional[Path] = None) -> list[str]:
    """``args`` with the overrides first (``~`` expanded, launch-relative folders made absolute
    against ``launch``), once their names are checked."""
    overrides, options = split_argv(args)
    if not ({"--shell-completion", "-sc"} & set(options)):
        check_override_names(overrides, config_dir)
    expanded = [expand_home(o) for o in overrides]
    return [anchored(o, launch) for o in expanded] + options if launch else expanded + options


def check_launch_folder(args: Sequence[str], launch: Path) -> None:
    """Refuse a launch folder this process cannot write to, when the run folder would go there."""
    overrides, options = split_argv(args)
    if NO_RUN_OPTIONS & set(options) or any(o.split("=", 1)[0] in RUN_DIR_KEYS for o in overrides):
        return
    base = launch / ("multirun" if MULTIRUN_OPTIONS & set(options) else "outputs")
    folder = base if base.is_dir() else launch
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ConfigError(
            f"the launch folder {launch} is not writable (no write permission on {folder}, or a read-only "
            "file system): python -m lstm_exp writes outputs/, multirun/, cache/ and mlflow.db into the folder "
            "it is started from; cd to a folder you can write to and run it there")
