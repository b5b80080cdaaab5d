"""The store checked before any work (lstm_exp/tracking/store_check.py): a tracking URI where
nothing listens, a corrupt or read-only ``mlflow.db`` and a ``file:`` URI each end a run or a sweep
with one ``lstm_exp: error:`` line naming the store and what to do, exit 1, no traceback, within
seconds, before any stage (no ``cache/``), and the store file untouched."""
from __future__ import annotations

import os
import sqlite3
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from services import SMOKE, cli_env, error_lines, free_port, lstm_exp

#: the issue's bound for a store where nothing listens (MLflow's own retries took 253 s)
UNREACHABLE_S = 30


def assert_store_error(proc, cwd: Path, *names: str) -> str:
    output = proc.stdout + proc.stderr
    assert proc.returncode == 1, output[-3000:]
    assert "Traceback" not in output, output[-5000:]
    lines = error_lines(proc)
    assert len(lines) == 1, proc.stderr[-3000:]
    for name in names:
        assert name in lines[0], f"{name!r} not named: {lines[0]}"
    assert not (cwd / "cache").exists(), "a stage ran before the store was checked"
    print(f"[store] {lines[0]}")
    return lines[0]


@pytest.mark.parametrize("sweep", [False, True], ids=["run", "sweep"])
def test_nothing_listening_fails_fast_with_one_line(tmp_path, sweep):
    uri = f"http://127.0.0.1:{free_port()}"
    start = time.monotonic()
    proc = lstm_exp(tmp_path, *SMOKE, f"tracking.tracking_uri={uri}", *(["batch=1,2", "-m"] if sweep else []))
    elapsed = time.monotonic() - start
    assert_store_error(proc, tmp_path, uri, "tracking.tracking_uri")
    assert elapsed < UNREACHABLE_S, f"{elapsed:.1f} s"


def test_corrupt_mlflow_db_is_one_line(tmp_path):
    db = tmp_path / "mlflow.db"
    db.write_bytes(b"not a database, " * 64)
    before = db.read_bytes()
    proc = lstm_exp(tmp_path, *SMOKE)
    line = assert_store_error(proc, tmp_path, str(db), "corrupt")
    assert f"mv {db} {db}.bad" in line
    assert db.read_bytes() == before


def test_file_uri_is_one_line(tmp_path):
    proc = lstm_exp(tmp_path, *SMOKE, f"tracking.tracking_uri=file://{tmp_path}/mlruns")
    assert_store_error(proc, tmp_path, f"file://{tmp_path}/mlruns", "sqlite:///")


def test_read_only_mlflow_db_is_one_line(tmp_path):
    """A store on a read-only file system (root writes any file whatever its mode, so as root the
    store's folder is bind-mounted read-only in a mount namespace of the command's own; as another
    user the file and its folder lose their write bits)."""
    store = tmp_path / "store"
    store.mkdir()
    db = store / "mlflow.db"
    with sqlite3.connect(db) as connection:
        connection.execute("CREATE TABLE experiments (experiment_id INTEGER PRIMARY KEY)")
    before = db.read_bytes()
    args = [*SMOKE, f"tracking.tracking_uri=sqlite:///{db}"]
    if os.geteuid() == 0:
        command = f"mount --bind -o ro {store} {store} && exec {sys.executable} -m lstm_exp {' '.join(args)}"
        proc = subprocess.run(["unshare", "-m", "sh", "-c", command], cwd=tmp_path, env=cli_env(),
                              capture_output=True, text=True, timeout=600)
    else:
        db.chmod(stat.S_IRUSR)
        store.chmod(stat.S_IRUSR | stat.S_IXUSR)
        proc = lstm_exp(tmp_path, *args)
        store.chmod(stat.S_IRWXU)
    assert_store_error(proc, tmp_path, str(db), "read-only")
    assert db.read_bytes() == before
