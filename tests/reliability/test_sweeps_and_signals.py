"""Catalogue, sweeps and hang-ups (docs/RELIABILITY.md, "Sweeps and hang-ups"): a sweep folder
that already holds a sweep, a sweep of ``backend=acl`` without CANN (checked once, before the
parent run), and SIGHUP (a closed terminal, a dropped SSH session) during a sweep."""
from __future__ import annotations

import signal
import subprocess
import sys
import time

from catalogue import SMOKE, cli_env


def test_a_sweep_into_a_folder_that_holds_an_earlier_sweep_is_refused(workspace):
    folder = workspace.root / "multirun" / "fixed-folder"
    first = workspace.run(*SMOKE, "batch=4", "-m", f"hydra.sweep.dir={folder}")
    assert first.returncode == 0, first.stderr[-3000:]
    earlier = {p.name for p in folder.iterdir()}
    assert {"parent_run.json", "summary.csv"} <= earlier
    proc = workspace.run(*SMOKE, "batch=4,8", "-m", f"hydra.sweep.dir={folder}")
    line = workspace.assert_refused_before_any_run(proc, f"hydra.sweep.dir={folder}", "parent_run.json")
    assert "not empty" in line and "fresh multirun/<date>/<time> folder" in line
    assert {p.name for p in folder.iterdir()} == earlier


def test_a_sweep_of_acl_without_cann_stops_once_before_its_parent_run(workspace):
    proc = workspace.run(*SMOKE, "backend=acl", "batch=4,8", "-m")  # no simulator: no pyacl
    line = workspace.assert_refused_before_any_run(proc, "backend=acl", "pyacl")
    assert "set_env.sh" in line
    assert "pyacl" not in proc.stdout  # no table, no closing list repeating it


def test_a_sweep_of_acls_export_stage_without_cann_is_not_refused(workspace):
    proc = workspace.run(*SMOKE, "backend=acl", "stage=export", "batch=4,8", "-m")
    assert proc.returncode == 0, proc.stderr[-3000:]
    new = sorted(s for run_id, s in workspace.runs().items() if run_id not in workspace.runs_before)
    assert new == ["FINISHED"] * 3  # the parent and two jobs


def test_sighup_during_a_sweep_ends_the_job_and_the_parent_killed(workspace):
    """SIGHUP (the terminal closed) while the sweep's first job trains: as SIGTERM, one line,
    exit status 130, the job's run and the parent run KILLED, never left RUNNING."""
    work = workspace.root / "cache" / "train"
    workspace.snapshot()
    started = time.time()
    proc = subprocess.Popen([sys.executable, "-m", "lstm_exp", *SMOKE, "train.epochs=30", "batch=4,8", "-m"],
                            cwd=workspace.root, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    while not any(p.stat().st_mtime > started for p in work.glob(".work-*/last.pt")):
        assert proc.poll() is None and time.time() - started < 300, "the first job never saved an epoch"
        time.sleep(0.2)
    proc.send_signal(signal.SIGHUP)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr[-3000:]
    assert "Traceback" not in stdout + stderr
    assert [line for line in stderr.splitlines() if line.startswith("lstm_exp: interrupted")], stderr[-3000:]
    new = sorted(s for run_id, s in workspace.runs().items() if run_id not in workspace.runs_before)
    assert new == ["KILLED", "KILLED"]  # the job and the parent
    workspace.assert_earlier_outputs_intact()
