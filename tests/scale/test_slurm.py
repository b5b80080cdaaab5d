"""A smoke sweep through ``hydra/launcher=slurm`` (hydra-submitit-launcher) on a one-node SLURM
cluster of the test's own (Debian slurmctld, slurmd, slurm-client, munge: services.Slurm) into
``mlflow server`` on PostgreSQL with its artefacts in OpenStack Swift's S3 API (Debian swift-*:
services.SwiftS3): the shipped preset fits the node (2 CPUs: it asked 4 and pended for ever), and
over REST one parent and every child FINISHED, the summary and plots on the parent, the launcher
and the measured concurrency on it, and the objects in the S3 bucket."""
from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

from services import (SMOKE, MlflowServer, Slurm, lstm_exp, postgres_bin, slurm_missing, swift_missing,
                      running, sweep_runs, tags)

pytest.importorskip("hydra_plugins.hydra_submitit_launcher", reason="pip install -e '.[test]' (hydra-submitit-launcher)")
pytest.importorskip("psycopg2", reason="pip install -e '.[test]' (psycopg2-binary)")
pytest.importorskip("boto3", reason="pip install -e '.[test]' (boto3)")
pytestmark = [
    pytest.mark.skipif(bool(slurm_missing()), reason=f"Debian packages slurmctld slurmd slurm-client munge are not "
                                                      f"installed (missing {slurm_missing()}; .ci/run installs them)"),
    pytest.mark.skipif(postgres_bin() is None, reason="Debian package postgresql is not installed (.ci/run installs it)"),
    pytest.mark.skipif(bool(swift_missing()), reason=f"Debian packages swift-proxy swift-account swift-container "
                                                      f"swift-object are not installed (missing {swift_missing()}; "
                                                      ".ci/run installs them)"),
]
BUCKET = "mlflow"


@pytest.fixture()
def slurm():
    with running(Slurm, "lstm_exp-slurm-") as cluster:
        yield cluster


def test_slurm_sweep_into_mlflow_server_on_postgresql_with_s3_artifacts(tmp_path, smoke_cache, postgres, swift, slurm):
    swift.client().create_bucket(Bucket=BUCKET)
    server = MlflowServer(tmp_path, postgres.uri, artifacts=f"s3://{BUCKET}/artifacts", env=swift.env).start()
    try:
        shutil.copytree(smoke_cache, tmp_path / "cache")
        start = time.monotonic()
        proc = lstm_exp(tmp_path, *SMOKE, "batch=1,2", "hydra/launcher=slurm", "-m",
                        env={"MLFLOW_TRACKING_URI": server.url, **slurm.env})
        sweep_s = time.monotonic() - start
        assert proc.returncode == 0, f"{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}\n{slurm.logs()}"
        print(f"[slurm] cluster up in {slurm.bring_up_s:.1f} s ({slurm.cpus} CPUs), Swift S3 in {swift.bring_up_s:.1f} s, "
              f"PostgreSQL in {postgres.bring_up_s:.1f} s, mlflow server in {server.bring_up_s:.1f} s, "
              f"2-job sweep {sweep_s:.1f} s")
        parents, jobs = sweep_runs(server)
        (parent,) = parents
        parent_id, parent_tags = parent["info"]["run_id"], tags(parent)
        assert parent["info"]["status"] == "FINISHED"
        assert parent_tags["lstm_exp.launcher"] == "SlurmLauncher"
        assert parent_tags["lstm_exp.concurrent_jobs"] == str(min(slurm.cpus // 2, 2))  # 2 CPUs a job
        children = [r for r in jobs if tags(r).get("mlflow.parentRunId") == parent_id]
        assert len(children) == 2 and all(r["info"]["status"] == "FINISHED" for r in children)
        expected = {"summary.csv", "summary.md", "latency_vs_batch.png", "throughput_vs_batch.png", "per_by_variant.png"}
        assert expected <= set(server.artifacts_of(parent_id))
        keys = swift.keys(BUCKET)  # read from Swift itself, not through mlflow
        assert {f"{parent_id}/artifacts/{name}" for name in expected} <= {k.split("/", 2)[-1] for k in keys}, keys
        for child in children:
            assert any(k.endswith(f"{child['info']['run_id']}/artifacts/report.json") for k in keys), keys
        sweep_dir = Path(parent_tags["lstm_exp.sweep_dir"])
        assert list(sweep_dir.glob(".submitit/*/*_log.out")), "no SLURM job logs: the jobs did not run through SLURM"
    finally:
        server.stop()
