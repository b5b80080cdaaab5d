"""A team store for real: PostgreSQL (Debian's ``postgresql``, a private cluster on a free loopback
port, its socket in a private folder, run as an unprivileged account) behind ``mlflow server``
(``MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false``: two processes), artefacts served by the server.
A smoke sweep records into it: over REST one parent and every child FINISHED, the summary and
plots listed on the parent, and their files in the server's artefact folder.  The README's
``postgresql+psycopg2://`` URI is the one used; a database where nothing listens is one line."""
from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

from services import SMOKE, MlflowServer, error_lines, free_port, lstm_exp, postgres_bin, sweep_runs, tags

pytest.importorskip("psycopg2", reason="pip install -e '.[test]' (psycopg2-binary)")
pytestmark = pytest.mark.skipif(postgres_bin() is None, reason="Debian package postgresql is not installed "
                                                               "(.ci/run installs it)")


def test_sweep_into_mlflow_server_on_postgresql(tmp_path, smoke_cache, postgres):
    server = MlflowServer(tmp_path, postgres.uri).start()
    try:
        shutil.copytree(smoke_cache, tmp_path / "cache")
        start = time.monotonic()
        proc = lstm_exp(tmp_path, *SMOKE, "batch=1,2", "-m", env={"MLFLOW_TRACKING_URI": server.url})
        sweep_s = time.monotonic() - start
        assert proc.returncode == 0, proc.stderr[-5000:]
        print(f"[postgres] PostgreSQL up in {postgres.bring_up_s:.1f} s, mlflow server in {server.bring_up_s:.1f} s, "
              f"2-job smoke sweep (cached model) {sweep_s:.1f} s")
        parents, jobs = sweep_runs(server)
        (parent,) = parents
        parent_id = parent["info"]["run_id"]
        assert parent["info"]["status"] == "FINISHED"
        children = [r for r in jobs if tags(r).get("mlflow.parentRunId") == parent_id]
        assert len(children) == 2 and all(r["info"]["status"] == "FINISHED" for r in children)
        assert all(r["inputs"]["dataset_inputs"] for r in children)
        listed = set(server.artifacts_of(parent_id))
        expected = {"summary.csv", "summary.md", "latency_vs_batch.png", "throughput_vs_batch.png", "per_by_variant.png"}
        assert expected <= listed, listed
        stored = {p.name for p in Path(server.artifacts).rglob("*") if p.is_file()}
        assert expected | {"report.json"} <= stored, stored
    finally:
        server.stop()


def test_a_database_where_nothing_listens_is_one_line(tmp_path):
    uri = f"postgresql+psycopg2://mlflow@127.0.0.1:{free_port()}/mlflow"
    start = time.monotonic()
    proc = lstm_exp(tmp_path, *SMOKE, f"tracking.tracking_uri={uri}")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    (line,) = error_lines(proc)
    assert "cannot connect to the MLflow database" in line and "127.0.0.1:" in line, line
    assert time.monotonic() - start < 30 and not (tmp_path / "cache").exists()
