"""Harness of the bad-input catalogue (``docs/RELIABILITY.md``): every case runs the real CLI,
``python -m lstm_exp ...``, in one workspace where a smoke experiment has already finished, and
checks what a user gets.

:meth:`Workspace.assert_user_error` is the catalogue's contract: exit status 1, no traceback,
exactly one ``lstm_exp: error:`` line whose text names the offending file or value, exactly one new
MLflow run, ended FAILED with the same line in its ``lstm_exp.error`` tag (and the whole message
in its Description, ``mlflow.note.content``), and every file the
earlier runs made (stage cache, ``outputs/``) still there, byte for byte.
:meth:`Workspace.assert_refused_before_any_run` is the same contract without a run, for what is
refused before a job or a sweep's parent starts (the command line, the launch or sweep folder).
:func:`file_permissions_in_force` runs a case with file permissions in force also as root.
:meth:`Workspace.assert_config_rejected` is the contract for what Hydra refuses before a job
starts (an unknown option or group value): non-zero exit, no traceback, the value named, no run.
"""
from __future__ import annotations

import hashlib
import os
import re
import shutil
import sqlite3
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Optional, Sequence

CHECKOUT = Path(__file__).resolve().parents[2]
SMOKE = ("experiment=smoke", "progress=false")
ERROR_PREFIX = "lstm_exp: error: "
#: what the earlier runs made and a failing run must leave alone
KEPT = ("cache", "outputs", "multirun")


def cli_env(extra: Optional[Dict[str, str]] = None) -> Dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env["PYTHONPATH"] = os.pathsep.join([str(CHECKOUT), *filter(None, [env.get("PYTHONPATH")])])
    env.update(extra or {})
    return env


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def one_error_line(proc: subprocess.CompletedProcess, names, exit_code: int) -> str:
    """The part of every contract about the output: exit status ``exit_code``, no traceback,
    exactly one ``lstm_exp: error:`` line, naming each of ``names``; returns that line."""
    output = proc.stdout + proc.stderr
    assert proc.returncode == exit_code, f"exit {proc.returncode}, expected {exit_code}:\n{output[-3000:]}"
    assert "Traceback" not in output, output[-5000:]
    lines = [line for line in proc.stderr.splitlines() if line.startswith(ERROR_PREFIX)]
    assert len(lines) == 1, f"expected one '{ERROR_PREFIX}' line:\n{proc.stderr[-3000:]}"
    line = lines[0][len(ERROR_PREFIX):]
    for name in names:
        assert name in line, f"the error line does not name {name!r}: {line}"
    return line


@dataclass
class Workspace:
    """A launch folder (``cache/``, ``outputs/``, ``mlflow.db``) shared by the catalogue's cases."""

    root: Path
    #: stage -> the cache entry the first smoke run made (set by the ``workspace`` fixture)
    smoke_entries: Dict[str, Path] = field(default_factory=dict)
    files_before: Dict[str, str] = field(default_factory=dict)
    runs_before: Dict[str, str] = field(default_factory=dict)

    # -- what is there -----------------------------------------------------------------------
    def files(self) -> Dict[str, str]:
        """Relative path -> sha256 of every file under cache/, outputs/ and multirun/ (lock files
        are the cache's own bookkeeping and are left out)."""
        found = {}
        for top in KEPT:
            for path in sorted((self.root / top).rglob("*")):
                if path.is_file() and not path.name.endswith(".lock"):
                    found[str(path.relative_to(self.root))] = _digest(path)
        return found

    def runs(self) -> Dict[str, str]:
        """MLflow run id -> status, read from the store's SQLite file."""
        db = self.root / "mlflow.db"
        if not db.is_file():
            return {}
        with sqlite3.connect(db) as connection:
            return dict(connection.execute("SELECT run_uuid, status FROM runs"))

    def tag(self, run_id: str, key: str) -> str:
        with sqlite3.connect(self.root / "mlflow.db") as connection:
            row = connection.execute("SELECT value FROM tags WHERE run_uuid = ? AND key = ?", (run_id, key)).fetchone()
        return row[0] if row else ""

    def error_tag(self, run_id: str) -> str:
        return self.tag(run_id, "lstm_exp.error")

    def snapshot(self) -> None:
        self.files_before, self.runs_before = self.files(), self.runs()

    # -- running -----------------------------------------------------------------------------
    def run(self, *args: str, env: Optional[Dict[str, str]] = None, timeout: float = 600,
            snapshot: bool = True, cwd: Optional[Path] = None,
            prefix: Sequence[str] = ()) -> subprocess.CompletedProcess:
        """``python -m lstm_exp <args>`` here (or in ``cwd``), behind ``prefix`` (e.g.
        :func:`file_permissions_in_force`); remembers what existed before (``snapshot``)."""
        if snapshot:
            self.snapshot()
        return subprocess.run([*prefix, sys.executable, "-m", "lstm_exp", *args], cwd=cwd or self.root,
                              env=cli_env(env), capture_output=True, text=True, timeout=timeout)

    def copy(self, dest: Path) -> "Workspace":
        """A workspace of its own at ``dest`` holding a copy of this one's stage cache (no runs), for
        a case that damages or locks the cache."""
        shutil.copytree(self.root / "cache", dest / "cache", symlinks=True)
        space = Workspace(dest)
        space.smoke_entries = {stage: dest / "cache" / stage / entry.name for stage, entry in self.smoke_entries.items()}
        return space

    # -- the contracts -----------------------------------------------------------------------
    def assert_earlier_outputs_intact(self) -> None:
        after = self.files()
        lost = [p for p in self.files_before if p not in after]
        changed = [p for p, d in self.files_before.items() if p in after and after[p] != d]
        assert not lost and not changed, f"earlier outputs lost: {lost[:5]}, changed: {changed[:5]}"
        runs = self.runs()
        assert all(runs.get(run_id) == status for run_id, status in self.runs_before.items()), \
            "an earlier MLflow run changed status"

    def assert_user_error(self, proc: subprocess.CompletedProcess, *names: str, exit_code: int = 1,
                          status: str = "FAILED") -> str:
        """The catalogue's contract (module doc); returns the error line."""
        line = one_error_line(proc, names, exit_code)
        new = {run_id: s for run_id, s in self.runs().items() if run_id not in self.runs_before}
        assert list(new.values()) == [status], f"new MLflow runs: {new}"
        (run_id,) = new
        tag = self.error_tag(run_id)
        # the run page's Description: the whole message, Markdown-escaped (read back unescaped)
        description = re.sub(r"\\(.)", r"\1", self.tag(run_id, "mlflow.note.content"))
        for name in names:
            assert name in tag, f"the run's lstm_exp.error tag does not name {name!r}: {tag}"
            assert name in description, f"the run's description does not name {name!r}: {description}"
        self.assert_earlier_outputs_intact()
        print(f"[catalogue] {line}")  # pytest -s shows the line each case gives (for docs/RELIABILITY.md)
        return line

    def assert_refused_before_any_run(self, proc: subprocess.CompletedProcess, *names: str) -> str:
        """What is refused before a job or a sweep's parent starts (the command line, the launch
        folder, the sweep folder, a sweep's missing runtime): the catalogue's contract without
        an MLflow run: exit status 1, no traceback, exactly one ``lstm_exp: error:`` line naming
        ``names``, no new run, earlier outputs intact; returns the line."""
        line = one_error_line(proc, names, 1)
        assert self.runs() == self.runs_before, "a run was recorded for what was refused before any run"
        self.assert_earlier_outputs_intact()
        print(f"[catalogue] {line}")
        return line

    def assert_config_rejected(self, proc: subprocess.CompletedProcess, *names: str) -> None:
        """Hydra's refusal before any job: non-zero exit, no traceback, ``names`` in its message, no run."""
        output = proc.stdout + proc.stderr
        assert proc.returncode != 0, output[-3000:]
        assert "Traceback" not in output, output[-5000:]
        for name in names:
            assert name in proc.stderr, f"Hydra's message does not name {name!r}: {proc.stderr[-2000:]}"
        assert self.runs() == self.runs_before, "a run was recorded for a config Hydra refused"
        self.assert_earlier_outputs_intact()


def file_permissions_in_force() -> list:
    """A command prefix under which file permissions hold also for root (the CI runs as root):
    ``setpriv`` without CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH; nothing for another user."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    assert setpriv, "setpriv (util-linux) is needed to run the read-only cases as root"
    return [setpriv, "--inh-caps=-all", "--bounding-set=-dac_override,-dac_read_search"]


def assert_tool_error(proc: subprocess.CompletedProcess, prefix: str, *names: str) -> str:
    """The contract of the project's other commands (``recipe_score``, ``report``), which record no
    MLflow run: exit status 2, no traceback, stderr exactly one ``<prefix>...`` line naming
    ``names``; returns that line."""
    output = proc.stdout + proc.stderr
    assert proc.returncode == 2, output[-3000:]
    assert "Traceback" not in output, output[-3000:]
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(prefix), proc.stderr
    for name in names:
        assert name in lines[0], f"{name!r} not named: {lines[0]}"
    print(f"[catalogue] {lines[0]}")
    return lines[0]
