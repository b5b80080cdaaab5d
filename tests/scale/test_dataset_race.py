"""Two jobs log the same dataset input at once (the issue: ``UNIQUE constraint failed: datasets``
in 2 of 7 SLURM sweeps; MLflow inserts a dataset unless it finds it, so two first inserts race).
Two processes race for 20 rounds, each round into a fresh experiment (so the dataset is new to
it), released together: every run of every round has its dataset input, and no process failed."""
from __future__ import annotations

import sqlite3
import subprocess
import sys
import time

from services import cli_env

ROUNDS, WORKERS = 20, 2

WORKER = """
import sys, time
from pathlib import Path
from lstm_exp.report.job import Dataset
from lstm_exp.tracking.mlflow_run import MlflowRun

uri, folder, worker, rounds = sys.argv[1], Path(sys.argv[2]), sys.argv[3], int(sys.argv[4])
dataset = Dataset(corpus="synth", split="dev", utterances=12, digest="0123456789abcdef", source="/data/synth")
for round_ in range(rounds):
    run = MlflowRun(True, uri, f"race-{round_}")
    run.start(f"w{worker}", {"worker": worker}, {"lstm_exp.role": "job"})
    (folder / f"ready-{round_}-{worker}").touch()
    while not (folder / f"go-{round_}").exists():
        time.sleep(0.0005)
    run.log_dataset(dataset)
    run.end("FINISHED")
"""


def test_two_jobs_logging_one_dataset_race_for_20_rounds_without_failure(tmp_path):
    db = tmp_path / "mlflow.db"
    uri = f"sqlite:///{db}"
    from lstm_exp.tracking.store import client, ensure_experiment

    mlflow_client = client(uri)
    for round_ in range(ROUNDS):  # the experiments exist before the race: only the dataset is new
        ensure_experiment(mlflow_client, f"race-{round_}")
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, uri, str(tmp_path), str(w), str(ROUNDS)],
                              env=cli_env(), cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for w in range(WORKERS)]
    try:
        for round_ in range(ROUNDS):
            deadline = time.monotonic() + 300
            while not all((tmp_path / f"ready-{round_}-{w}").exists() for w in range(WORKERS)):
                assert all(p.poll() is None for p in procs), [p.communicate()[0][-3000:] for p in procs]
                assert time.monotonic() < deadline, f"round {round_}: workers not ready"
                time.sleep(0.01)
            (tmp_path / f"go-{round_}").touch()
        outputs = [p.communicate(timeout=300)[0] for p in procs]
    finally:
        for p in procs:
            p.kill() if p.poll() is None else None
    for proc, output in zip(procs, outputs):
        assert proc.returncode == 0, output[-3000:]
    with sqlite3.connect(db) as connection:
        runs = dict(connection.execute("SELECT run_uuid, status FROM runs"))
        with_input = {row[0] for row in connection.execute(
            "SELECT destination_id FROM inputs WHERE source_type = 'DATASET' AND destination_type = 'RUN'")}
        datasets = connection.execute("SELECT count(*) FROM datasets").fetchone()[0]
    assert len(runs) == ROUNDS * WORKERS and set(runs.values()) == {"FINISHED"}
    assert with_input == set(runs), f"{len(runs) - len(with_input & set(runs))} runs lost their dataset input"
    assert datasets == ROUNDS  # one row per experiment
