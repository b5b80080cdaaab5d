"""Parallel jobs on one MLflow store lose no run (docs/RELIABILITY.md, "Concurrency and outputs").

4 processes start together on a fresh SQLite store and each records 8 runs through
:class:`lstm_exp.tracking.mlflow_run.MlflowRun` (start, params, tags, metrics, end): all 32 runs
are there, FINISHED, with their params, tags and metrics.  Without the store lock of
:func:`lstm_exp.tracking.store.client`, processes that open a fresh store at once fail in
MLflow's table creation and their runs are lost.
"""
from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

CHECKOUT = Path(__file__).resolve().parents[2]
PROCESSES, RUNS = 4, 8

JOB = """
import sys
from lstm_exp.tracking.mlflow_run import MlflowRun

uri, worker, runs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
for index in range(runs):
    run = MlflowRun(True, uri, "stress")
    run.start(f"w{worker}-r{index}", {"worker": str(worker), "index": str(index)}, {"lstm_exp.role": "job"})
    run.log_metrics({"per": worker * 100 + index, "latency_ms": index / 10})
    run.set_tags({"recorded": f"{worker}/{index}"})
    run.end("FINISHED")
"""


def test_parallel_processes_on_one_sqlite_store_lose_no_run(tmp_path):
    db = tmp_path / "mlflow.db"
    env = {"PYTHONPATH": str(CHECKOUT), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    procs = [subprocess.Popen([sys.executable, "-c", JOB, f"sqlite:///{db}", str(worker), str(RUNS)], env=env,
                              cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for worker in range(PROCESSES)]
    outputs = [proc.communicate(timeout=600)[0] for proc in procs]
    for proc, output in zip(procs, outputs):
        assert proc.returncode == 0, output[-3000:]

    with sqlite3.connect(db) as connection:
        runs = dict(connection.execute("SELECT name, status FROM runs"))
        metrics = set(connection.execute("SELECT r.name, m.key, m.value FROM metrics m JOIN runs r USING (run_uuid)"))
        params = set(connection.execute("SELECT r.name, p.key, p.value FROM params p JOIN runs r USING (run_uuid)"))
        tags = set(connection.execute("SELECT r.name, t.value FROM tags t JOIN runs r USING (run_uuid) "
                                      "WHERE t.key = 'recorded'"))
    expected = {f"w{w}-r{i}": (w, i) for w in range(PROCESSES) for i in range(RUNS)}
    assert runs == {name: "FINISHED" for name in expected}
    for name, (worker, index) in expected.items():
        assert (name, "per", float(worker * 100 + index)) in metrics
        assert (name, "latency_ms", index / 10) in metrics
        assert (name, "worker", str(worker)) in params and (name, "index", str(index)) in params
        assert (name, f"{worker}/{index}") in tags
