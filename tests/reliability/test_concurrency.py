"""Outputs are never overwritten (docs/RELIABILITY.md, "Concurrency and outputs"): every run gets its
own folder, also when two start in the same second, and a rerun adds a folder and an MLflow run
without changing any earlier file."""
from __future__ import annotations

import json
import multiprocessing
import subprocess
import sys

from catalogue import SMOKE, cli_env

from lstm_exp.app import new_folder


def _reports(root) -> dict:
    return {str(p.parent.relative_to(root)): json.loads(p.read_text()) for p in (root / "outputs").glob("*/*/report.json")}


def test_racing_processes_each_create_their_own_folder(tmp_path):
    base = str(tmp_path / "outputs" / "2026-01-01" / "12-00-00")
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        folders = pool.map(new_folder, [base] * 8)
    assert sorted(folders) == sorted([base] + [f"{base}-{n}" for n in range(1, 8)])


def test_two_runs_started_at_once_get_two_folders_and_a_rerun_changes_no_earlier_file(workspace):
    workspace.snapshot()
    before = _reports(workspace.root)
    args = [sys.executable, "-m", "lstm_exp", *SMOKE, "stage=prepare"]
    procs = [subprocess.Popen(args, cwd=workspace.root, env=cli_env(), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    for proc in procs:
        _, stderr = proc.communicate(timeout=600)
        assert proc.returncode == 0, stderr[-3000:]
    new = {folder: report for folder, report in _reports(workspace.root).items() if folder not in before}
    assert len(new) == 2, new.keys()
    assert len({report["run_id"] for report in new.values()}) == 2
    workspace.assert_earlier_outputs_intact()

    workspace.snapshot()
    rerun = workspace.run(*SMOKE, "stage=prepare")
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert len(_reports(workspace.root)) == len(before) + 3
    new_runs = {run_id: status for run_id, status in workspace.runs().items() if run_id not in workspace.runs_before}
    assert list(new_runs.values()) == ["FINISHED"]
    workspace.assert_earlier_outputs_intact()
