"""Smoke sweeps through hydra-ray-launcher 1.2.2 (ray 2.x) into a real ``mlflow server``: over REST
one parent and every child FINISHED, the summary and plots on the parent, the launcher on it.

* Local mode (``hydra/launcher=ray``): the launcher starts a Ray cluster in the sweep's process.
* Against a separately started head (``hydra/launcher=ray_head`` and the head's address), into
  ``mlflow server`` on PostgreSQL with its artefacts in Swift's S3 API: the head runs in a working
  directory of its own with an environment of its own (another ``MLFLOW_TRACKING_URI``), as a
  cluster node does; the jobs still write into the sweep's folder and record into the sweep's
  store, experiment and parent (``parent_run.json``), and nothing lands in the head's folder or
  store.  The objects are read from the bucket itself.

hydra-ray-launcher pins ``cloudpickle<3`` (joblib and the main environment have 3), so it lives in
a virtual environment of its own, made once per test session (the pip install takes minutes):
pip installs the launcher there, and a ``.pth`` file puts the main environment's packages behind
its own (its cloudpickle 2 wins).  The head is started from that environment and stopped by its
PID (``services.RayHead``), never with ``ray stop``."""
from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

import pytest

from services import (SMOKE, MlflowServer, RayHead, cli_env, postgres_bin, swift_missing, sweep_runs, tags)

RAY_LAUNCHER = "hydra-ray-launcher==1.2.2"
BUCKET = "mlflow"
#: what a sweep writes onto its parent run
PARENT_ARTIFACTS = {"summary.csv", "summary.md", "latency_vs_batch.png", "throughput_vs_batch.png",
                    "per_by_variant.png"}


@pytest.fixture(scope="session")
def ray_python(tmp_path_factory) -> Path:
    venv = tmp_path_factory.mktemp("ray-venv")
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    python = venv / "bin" / "python"
    proc = subprocess.run([str(python), "-m", "pip", "install", "-q", RAY_LAUNCHER], capture_output=True, text=True,
                          timeout=1800)
    if proc.returncode != 0:
        pytest.skip(f"pip could not install {RAY_LAUNCHER} into the test's own venv (no access to PyPI?): "
                    f"{proc.stderr.strip().splitlines()[-1:]}")
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    # appended after the venv's own packages, the main environment's .pth files (an editable install) included
    Path(purelib, "zz_lstm_exp_main_env.pth").write_text(f"import site; site.addsitedir({sysconfig.get_paths()['purelib']!r})\n")
    return python


def run_sweep(ray_python: Path, cwd: Path, *args: str, env: dict) -> tuple[subprocess.CompletedProcess, float]:
    """A 2-job smoke sweep from Ray's venv in ``cwd``; (the process, seconds it took)."""
    start = time.monotonic()
    proc = subprocess.run([str(ray_python), "-m", "lstm_exp", *SMOKE, "batch=1,2", *args, "-m"], cwd=cwd,
                          env=cli_env({"RAY_USAGE_STATS_ENABLED": "0", **env}), capture_output=True, text=True,
                          timeout=900)
    return proc, time.monotonic() - start


def assert_sweep_recorded(server: MlflowServer) -> dict:
    """One parent and both children FINISHED, the summary and plots on the parent; the parent."""
    parents, jobs = sweep_runs(server)
    (parent,) = parents
    parent_id = parent["info"]["run_id"]
    assert parent["info"]["status"] == "FINISHED" and tags(parent)["lstm_exp.launcher"] == "RayLauncher"
    children = [r for r in jobs if tags(r).get("mlflow.parentRunId") == parent_id]
    assert len(children) == 2 and all(r["info"]["status"] == "FINISHED" for r in children), children
    assert PARENT_ARTIFACTS <= set(server.artifacts_of(parent_id))
    sweep_dir = Path(tags(parent)["lstm_exp.sweep_dir"])
    assert len(list(sweep_dir.glob("*/report.json"))) == 2  # the jobs wrote into the sweep's folder
    return parent


def test_ray_local_sweep_into_mlflow_server(tmp_path, smoke_cache, ray_python):
    server = MlflowServer(tmp_path, f"sqlite:///{tmp_path / 'server.db'}").start()
    try:
        shutil.copytree(smoke_cache, tmp_path / "cache")
        proc, sweep_s = run_sweep(ray_python, tmp_path, "hydra/launcher=ray", env={"MLFLOW_TRACKING_URI": server.url})
        assert proc.returncode == 0, f"{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
        print(f"[ray] local-mode 2-job sweep (cluster start included) {sweep_s:.1f} s")
        assert_sweep_recorded(server)
    finally:
        server.stop()


@pytest.fixture()
def ray_head(ray_python):
    """A Ray head started on its own: its own folder as working directory, and in its environment
    a store of its own (``decoy.db``), which the sweep's jobs must not record into."""
    folder = Path(tempfile.mkdtemp(prefix="lstm_exp-ray-"))  # short: Ray's socket paths are bounded
    head = RayHead(folder, ray_python, env={"MLFLOW_TRACKING_URI": f"sqlite:///{folder / 'head-cwd' / 'decoy.db'}"})
    try:
        yield head.start()
    finally:
        head.stop()
        shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.skipif(postgres_bin() is None, reason="Debian package postgresql is not installed (.ci/run installs it)")
@pytest.mark.skipif(bool(swift_missing()), reason=f"Debian packages swift-proxy swift-account swift-container "
                                                   f"swift-object are not installed (missing {swift_missing()})")
def test_ray_head_sweep_into_mlflow_server_on_postgresql_with_s3_artifacts(tmp_path, smoke_cache, ray_python,
                                                                            postgres, swift, ray_head):
    pytest.importorskip("psycopg2", reason="pip install -e '.[test]' (psycopg2-binary)")
    swift.client().create_bucket(Bucket=BUCKET)
    server = MlflowServer(tmp_path, postgres.uri, artifacts=f"s3://{BUCKET}/artifacts", env=swift.env).start()
    try:
        shutil.copytree(smoke_cache, tmp_path / "cache")
        proc, sweep_s = run_sweep(ray_python, tmp_path, "hydra/launcher=ray_head",
                                  f"hydra.launcher.ray.init.address={ray_head.address}",
                                  env={"MLFLOW_TRACKING_URI": server.url, **ray_head.client_env})
        assert proc.returncode == 0, f"{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}\n{ray_head.logs()}"
        print(f"[ray] head up in {ray_head.bring_up_s:.1f} s, Swift S3 in {swift.bring_up_s:.1f} s, PostgreSQL in "
              f"{postgres.bring_up_s:.1f} s, mlflow server in {server.bring_up_s:.1f} s, 2-job sweep through the head "
              f"{sweep_s:.1f} s")
        parent = assert_sweep_recorded(server)
        parent_id = parent["info"]["run_id"]
        assert Path(tags(parent)["lstm_exp.sweep_dir"]).is_relative_to(tmp_path)
        keys = {key.split("/", 2)[-1] for key in swift.keys(BUCKET)}  # from Swift itself, not through mlflow
        assert {f"{parent_id}/artifacts/{name}" for name in PARENT_ARTIFACTS} <= keys, keys
        children = [r for r in sweep_runs(server)[1] if tags(r).get("mlflow.parentRunId") == parent_id]
        for child in children:
            assert f"{child['info']['run_id']}/artifacts/report.json" in keys, keys
            assert Path(tags(child)["hydra.job_dir"]).is_relative_to(tmp_path)
        assert sorted(p.name for p in ray_head.cwd.iterdir()) == [], "a job wrote into the head's working directory"
    finally:
        server.stop()
