"""A smoke sweep through ``hydra/launcher=ray`` (hydra-ray-launcher 1.2.2, ray 2.x; local mode: the
launcher starts a Ray cluster in the sweep's process) into a real ``mlflow server``: over REST one
parent and every child FINISHED, the summary and plots on the parent, the launcher on it.

hydra-ray-launcher pins ``cloudpickle<3`` (joblib and the main environment have 3), so it lives in
a virtual environment of its own, made by the test: pip installs the launcher there, and a ``.pth``
file puts the main environment's packages behind its own (its cloudpickle 2 wins).  Not tested:
a sweep against a separately started head (``ray start --head``)."""
from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import pytest

from services import SMOKE, MlflowServer, cli_env, sweep_runs, tags

RAY_LAUNCHER = "hydra-ray-launcher==1.2.2"


@pytest.fixture(scope="module")
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


def test_ray_local_sweep_into_mlflow_server(tmp_path, smoke_cache, ray_python):
    server = MlflowServer(tmp_path, f"sqlite:///{tmp_path / 'server.db'}").start()
    try:
        shutil.copytree(smoke_cache, tmp_path / "cache")
        start = time.monotonic()
        proc = subprocess.run([str(ray_python), "-m", "lstm_exp", *SMOKE, "batch=1,2", "hydra/launcher=ray", "-m"],
                              cwd=tmp_path, env=cli_env({"MLFLOW_TRACKING_URI": server.url,
                                                         "RAY_USAGE_STATS_ENABLED": "0"}),
                              capture_output=True, text=True, timeout=900)
        sweep_s = time.monotonic() - start
        assert proc.returncode == 0, f"{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
        print(f"[ray] local-mode 2-job sweep (cluster start included) {sweep_s:.1f} s")
        parents, jobs = sweep_runs(server)
        (parent,) = parents
        parent_id = parent["info"]["run_id"]
        assert parent["info"]["status"] == "FINISHED" and tags(parent)["lstm_exp.launcher"] == "RayLauncher"
        children = [r for r in jobs if tags(r).get("mlflow.parentRunId") == parent_id]
        assert len(children) == 2 and all(r["info"]["status"] == "FINISHED" for r in children)
        assert {"summary.csv", "summary.md", "latency_vs_batch.png"} <= set(server.artifacts_of(parent_id))
        sweep_dir = Path(tags(parent)["lstm_exp.sweep_dir"])
        assert len(list(sweep_dir.glob("*/report.json"))) == 2  # the jobs wrote into the sweep's folder
    finally:
        server.stop()
