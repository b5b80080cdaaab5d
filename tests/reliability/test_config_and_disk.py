"""Catalogue: config values and a full disk (docs/RELIABILITY.md, "Concurrency and outputs" and
"Interrupting a job" list the rest of this helper's area)."""
from __future__ import annotations

import os
import re

import pytest
from catalogue import SMOKE, cli_env

# -- what Hydra refuses before a job starts: no run is recorded -----------------------------------


@pytest.mark.parametrize("override, named", [
    ("backend=tensorrt", "backend/tensorrt"),  # an unknown option of a config group
    ("no_such_key=1", "no_such_key"),          # an unknown key
    ("batch=abc", "abc"),                      # a value of the wrong type
])
def test_a_config_hydra_refuses_records_no_run(workspace, override, named):
    proc = workspace.run(*SMOKE, override)
    workspace.assert_config_rejected(proc, named)


def test_an_impossible_value_fails_the_run_naming_it(workspace):
    proc = workspace.run(*SMOKE, "infer.repeats=0")
    workspace.assert_user_error(proc, "infer.repeats=0")


# -- a disk that fills up while a stage writes ------------------------------------------------------
#: loaded first by every Python process of the job (sitecustomize on PYTHONPATH): a file written
#: inside a temporary prepare entry fails with ENOSPC once it would grow past LIMIT bytes, as on a
#: full disk; no test hook in the code under test
FULL_DISK = '''
import builtins, errno, io, os

LIMIT = 100_000
_open = builtins.open


class _FillingFile:
    def __init__(self, file, name):
        self._file, self._name = file, name

    def write(self, data):
        if self._file.tell() + len(data) > LIMIT:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), self._name)
        return self._file.write(data)

    def __getattr__(self, attr):
        return getattr(self._file, attr)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return self._file.__exit__(*exc)

    def __iter__(self):
        return iter(self._file)


def _filling_open(file, mode="r", *args, **kwargs):
    opened = _open(file, mode, *args, **kwargs)
    name = os.fspath(file) if isinstance(file, (str, os.PathLike)) else ""
    if "/cache/prepare/.tmp-" in str(name) and any(m in mode for m in "wax+"):
        return _FillingFile(opened, str(name))
    return opened


builtins.open = io.open = _filling_open
'''


def test_a_disk_that_fills_up_while_prepare_writes_removes_the_partial_entry_and_names_it(workspace, tmp_path):
    (tmp_path / "sitecustomize.py").write_text(FULL_DISK)
    full_disk = {"PYTHONPATH": os.pathsep.join([str(tmp_path), cli_env()["PYTHONPATH"]])}
    args = (*SMOKE, "stage=prepare", "data.fbank.low_freq=30")  # a new prepare entry; corpus cached
    prepare = workspace.root / "cache" / "prepare"

    proc = workspace.run(*args, env=full_disk)
    line = workspace.assert_user_error(proc, f"{prepare}/", "no space left")
    entry = re.search(rf"{re.escape(str(prepare))}/([0-9a-f]{{16}})\b", line)
    assert entry, line
    assert f"{prepare}/.tmp-{entry.group(1)}-" in line  # the file being written
    assert not (prepare / entry.group(1)).exists()
    assert not list(prepare.glob(".tmp-*"))

    rerun = workspace.run(*args)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert (prepare / entry.group(1) / "_stage.json").is_file()
    workspace.assert_earlier_outputs_intact()


# -- issue 22: one precision spelling; acl maps it onto ATC's modes ------------------------------

@pytest.mark.parametrize("overrides, named", [
    (("backend.precision=int8",), "backend.precision: 'int8'"),
    (("backend.precision=fp32", "backend.atc.precision_mode=force_fp16"), "backend.precision=fp32"),
])
def test_an_acl_precision_atc_cannot_build_fails_the_run_naming_it(workspace, overrides, named):
    proc = workspace.run(*SMOKE, "backend=acl", *overrides)
    line = workspace.assert_user_error(proc, named)
    assert "write one of fp16, fp32, mixed" in line or "keep one" in line
