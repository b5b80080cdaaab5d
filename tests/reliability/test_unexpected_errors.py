"""A bug (an exception that is not an ``LstmExpError``) in a sweep's jobs: Hydra runs every job,
then exits non-zero with the first job's traceback (it is a bug, so the traceback is the
report). Each job's run ends FAILED and so does the sweep's parent run; none is left RUNNING. The bug is planted by a
``sitecustomize.py`` first on ``PYTHONPATH``: no test hook in the code under test."""
from __future__ import annotations

import os
import sqlite3

from catalogue import SMOKE, cli_env

BUG = '''
import lstm_exp.experiment as experiment

def run_experiment(cfg, *args, **kwargs):
    raise ZeroDivisionError("planted bug (test)")

experiment.run_experiment = run_experiment
'''


def test_a_bug_in_sweep_jobs_ends_the_jobs_and_the_parent_failed(workspace, tmp_path):
    (tmp_path / "sitecustomize.py").write_text(BUG)
    env = {"PYTHONPATH": os.pathsep.join([str(tmp_path), cli_env()["PYTHONPATH"]])}
    proc = workspace.run(*SMOKE, "batch=2,3", "-m", env=env)
    assert proc.returncode != 0, proc.stdout[-2000:]
    assert "ZeroDivisionError: planted bug (test)" in proc.stderr
    new = {run_id: status for run_id, status in workspace.runs().items() if run_id not in workspace.runs_before}
    with sqlite3.connect(workspace.root / "mlflow.db") as connection:
        roles = dict(connection.execute("SELECT run_uuid, value FROM tags WHERE key = 'lstm_exp.role'"))
    assert sorted((roles[run_id], status) for run_id, status in new.items()) == [("job", "FAILED")] * 2 + [("sweep", "FAILED")]
    workspace.assert_earlier_outputs_intact()
