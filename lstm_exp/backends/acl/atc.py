"""ONNX -> OM conversion with Huawei's ATC (the recipe's stage 2).

:func:`build_atc_command` writes the recipe's command line (static batch, or one OM with batch
gears); :func:`run_atc` runs it when ``atc`` is installed, keeping the exact command
(``atc_command.txt``) and ATC's output (the log file) beside the OM, and otherwise saves the
command beside the cache entry it would make (``<cache>/convert/<key>.atc_command.txt``) and
says to run it on a machine with the Ascend CANN toolkit.  atc runs with
``ASCEND_SLOG_PRINT_TO_STDOUT=1`` so that the CANN log lines that explain a failure land in the
recorded log rather than in ``~/ascend/log``.  :func:`convert_onnx_to_om` joins
both for the ``convert`` stage.
"""
from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Sequence, Union

from lstm_exp.backends.acl.config import ATC_DEFAULT_PRECISION, MAX_GEAR_SIZE, MAX_GEARS, MIN_GEARS, AtcConfig
from lstm_exp.errors import ConfigError, LstmExpError, MissingDependencyError
from lstm_exp.recipe import ONNX_INPUT_NAME as INPUT_NAME  # the name ATC's --input_shape refers to

FEATURE_DIM = 243
#: the file name run_atc records the command in (beside the log)
COMMAND_FILE = "atc_command.txt"

#: the recipe's --dynamic_batch_size
RECIPE_GEARS = (1, 4, 8, 16, 32)

BatchSpec = Union[int, Sequence[int]]


class AtcConversionError(LstmExpError):
    """atc ran and failed (its log says why)."""


def _gears(batch: Sequence[int]) -> list[int]:
    gears = sorted({int(b) for b in batch})
    if any(not 1 <= g <= MAX_GEAR_SIZE for g in gears):
        raise ConfigError(f"batch gears {list(batch)}: atc takes gears from 1 to {MAX_GEAR_SIZE}: lower the largest batch")
    if not MIN_GEARS <= len(gears) <= MAX_GEARS:
        raise ConfigError(
            f"batch gears {gears}: atc --dynamic_batch_size needs {MIN_GEARS} to {MAX_GEARS} distinct gears; "
            "add gears (atc.batch_gears=[1,4,8,16,32]) or build a static OM (atc.dynamic_batch=false)"
        )
    return gears


def build_atc_command(onnx_path: Path | str, output_stem: Path | str, batch: BatchSpec, cfg: AtcConfig) -> list[str]:
    """The atc argv: an int ``batch`` gives a static OM, a list gives one OM with those gears.

    ``output_stem`` is atc's ``--output`` (atc appends ``.om``).
    """
    if isinstance(batch, int):
        if batch < 1:
            raise ConfigError(f"batch={batch} is impossible for an OM: write a batch size >= 1")
        shape = f"{INPUT_NAME}:{batch},{cfg.frames},{FEATURE_DIM}"
        dynamic_args: list[str] = []
    else:
        gears = _gears(batch)
        shape = f"{INPUT_NAME}:-1,{cfg.frames},{FEATURE_DIM}"
        dynamic_args = [f"--dynamic_batch_size={','.join(str(g) for g in gears)}"]
    return [
        cfg.atc_path,
        "--framework=5",
        f"--model={onnx_path}",
        f"--output={output_stem}",
        "--input_format=ND",
        f"--input_shape={shape}",
        *dynamic_args,
        f"--soc_version={cfg.soc_version}",
        f"--log={cfg.log}",
        *([f"--precision_mode={cfg.precision_mode}"] if cfg.precision_mode is not None else []),
        *([f"--precision_mode_v2={cfg.precision_mode_v2}"] if cfg.precision_mode_v2 is not None else []),
        *cfg.extra_args,
    ]


def soc_version_of(cmd: Sequence[str]) -> str | None:
    """The ``--soc_version`` of an atc command line (None when absent)."""
    for arg in cmd:
        if arg.startswith("--soc_version="):
            return arg.split("=", 1)[1]
    return None


def precision_of(cmd: Sequence[str]) -> str:
    """The precision an atc command line builds with, spelled out as :attr:`AtcConfig.precision` does."""
    for arg in cmd:
        if arg.startswith("--precision_mode="):
            return arg.split("=", 1)[1]
        if arg.startswith("--precision_mode_v2="):
            return "v2:" + arg.split("=", 1)[1]
    return f"{ATC_DEFAULT_PRECISION} (atc default)"


def gears_of(cmd: Sequence[str]) -> list[int]:
    """The ``--dynamic_batch_size`` gears of an atc command line ([] for a static OM)."""
    for arg in cmd:
        if arg.startswith("--dynamic_batch_size="):
            return sorted(int(g) for g in arg.split("=", 1)[1].split(","))
    return []


def recorded_command(om_path: Path | str) -> list[str] | None:
    """The atc argv recorded beside an OM by :func:`run_atc` (None when there is none)."""
    path = Path(om_path).parent / COMMAND_FILE
    if not path.is_file():
        return None
    return shlex.split(path.read_text())


def om_path_of(cmd: Sequence[str]) -> Path:
    """The OM file an atc command writes: its ``--output`` plus ``.om``."""
    for arg in cmd:
        if arg.startswith("--output="):
            return Path(arg.split("=", 1)[1] + ".om")
    raise ConfigError(f"atc command has no --output=...: {shlex.join(cmd)}")


def _outside_build(out_dir: Path, cmd: Sequence[str]) -> list[str]:
    """``cmd`` with its ``--output`` in the cache entry instead of the build folder, which a failed
    build removes (the command as it would run for that entry)."""
    from lstm_exp.cache import entry_of_build

    entry = entry_of_build(out_dir)
    if entry is None:
        return list(cmd)
    build = str(Path(out_dir).resolve())
    return [arg.replace(build, str(entry.resolve())) if arg.startswith("--output=") else arg for arg in cmd]


def _keep_command(out_dir: Path, cmd: Sequence[str]) -> Path:
    """Save the ATC command where a failed convert build leaves it: ``<entry>.atc_command.txt``
    beside the cache entry (``out_dir`` itself outside the cache); returns that file."""
    from lstm_exp.cache import entry_of_build

    entry = entry_of_build(out_dir)
    path = out_dir / COMMAND_FILE if entry is None else entry.with_name(f"{entry.name}.{COMMAND_FILE}")
    path.write_text(shlex.join(_outside_build(out_dir, cmd)) + "\n")
    return path


def run_atc(cmd: Sequence[str], log_path: Path | str) -> Path:
    """Run ``cmd`` (from :func:`build_atc_command`); return the OM it wrote.

    The command is written to ``atc_command.txt`` beside ``log_path`` before anything runs, so a
    user without ATC can copy it to an Ascend host.
    """
    cmd = [str(c) for c in cmd]
    log_path = Path(log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    command_line = shlex.join(cmd)
    (log_path.parent / COMMAND_FILE).write_text(command_line + "\n")
    executable = shutil.which(cmd[0])
    if executable is None:
        where = "is not an executable file" if os.sep in cmd[0] else "not found on PATH"
        kept = _keep_command(log_path.parent, cmd)
        raise MissingDependencyError(
            f"backend.atc.atc_path={cmd[0]} {where}: ONNX->OM conversion needs the Ascend CANN toolkit (atc); "
            f"source <CANN>/set_env.sh (e.g. /usr/local/Ascend/ascend-toolkit/set_env.sh) and run again, "
            f"or run the command saved in {kept} on a host with CANN: {shlex.join(_outside_build(log_path.parent, cmd))}"
        )
    om_path = om_path_of(cmd)
    om_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "wb") as log:
        log.write(f"$ {command_line}\n".encode())
        log.flush()
        env = {**os.environ, "ASCEND_SLOG_PRINT_TO_STDOUT": "1"}
        proc = subprocess.run([executable, *cmd[1:]], stdout=log, stderr=subprocess.STDOUT, check=False, env=env)
    if proc.returncode != 0:
        raise AtcConversionError(f"atc failed with exit code {proc.returncode}: read {log_path} (command in {log_path.parent / COMMAND_FILE})")
    if not om_path.is_file():
        raise AtcConversionError(f"atc exited 0 but wrote no {om_path}: read {log_path}")
    return om_path


def resolve_batch_spec(cfg: AtcConfig, batch: int, sweep_batches: Sequence[int] = ()) -> BatchSpec:
    """What to build for a job at ``batch``: the batch itself (static OM), or the gears of a
    dynamic OM: ``cfg.batch_gears``, else the sweep's batch sizes plus ``batch``, and when that
    is a single size, the recipe's gears (1, 4, 8, 16, 32) plus ``batch`` - so every job of a
    recipe sweep asks for the same OM."""
    if not cfg.dynamic_batch:
        return int(batch)
    gears = list(cfg.batch_gears) or sorted({int(batch), *(int(b) for b in sweep_batches)})
    if len(gears) < MIN_GEARS and not cfg.batch_gears:
        gears = sorted({int(batch), *RECIPE_GEARS})
    if batch not in gears and batch > max(gears):
        raise ConfigError(f"batch={batch} is larger than every gear of atc.batch_gears={gears}: add a gear >= {batch}")
    return _gears(gears)


def convert_onnx_to_om(onnx_path: Path | str, out_dir: Path | str, batch: BatchSpec, cfg: AtcConfig, stem: str = "model") -> Path:
    """Run atc on ``onnx_path`` into ``out_dir/<stem>.om`` (log: ``out_dir/atc.log``)."""
    onnx_path = Path(onnx_path)
    if not onnx_path.is_file():
        raise ConfigError(f"ONNX model {onnx_path} does not exist: run the export stage first (stage=export)")
    out_dir = Path(out_dir)
    cmd = build_atc_command(onnx_path.resolve(), (out_dir / stem).resolve(), batch, cfg)
    return run_atc(cmd, out_dir / "atc.log")
