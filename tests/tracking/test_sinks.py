"""Tracking as sinks (issue 22): the job report goes to the sinks ``tracking.sinks`` names.

``tracking=none`` instantiates none and never imports MLflow (``-X importtime`` lists every module
the job imported); ``tracking=jsonl`` (the second sink, proving the interface) appends one JSON
line per job, a sweep with it still writing its local summary; ``tracking=mlflow_jsonl`` records
one job into both, with the same run id; a sink that cannot be used is one line before any work;
the param schema's identity round trip."""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lstm_exp.errors import ConfigError
from lstm_exp.tracking.params import identity_from_params, job_params
from lstm_exp.tracking.sink import make_sinks

REPO_ROOT = Path(__file__).resolve().parents[2]
SMOKE = ("experiment=smoke", "progress=false")


def _run(cwd: Path, *args: str, python_flags: tuple = ()) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    return subprocess.run([sys.executable, *python_flags, "-m", "lstm_exp", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=900)


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_tracking_none_never_imports_mlflow(tmp_path, smoke_cache):
    proc = _run(tmp_path, *SMOKE, "tracking=none", f"paths.cache_dir={smoke_cache}", python_flags=("-X", "importtime"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    imported = [line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")]
    assert "lstm_exp.app" in imported and "lstm_exp.experiment" in imported  # the job did run through the app
    assert not [name for name in imported if name.split(".")[0] == "mlflow"]
    assert "no tracking sink (tracking=none)" in proc.stdout
    assert not (tmp_path / "mlflow.db").exists()
    (report,) = (tmp_path / "outputs").glob("*/*/report.json")
    assert json.loads(report.read_text())["status"] == "FINISHED"


def test_jsonl_sweep_appends_a_line_per_job_and_writes_the_local_summary(tmp_path, smoke_cache):
    proc = _run(tmp_path, *SMOKE, "tracking=jsonl", f"paths.cache_dir={smoke_cache}", "batch=2,4", "-m")
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = _lines(tmp_path / "results.jsonl")
    assert sorted(line["batch"] for line in lines) == [2, 4]
    assert {line["status"] for line in lines} == {"FINISHED"}
    assert all(line["accuracy"]["per"] is not None and line["params"]["batch"] == str(line["batch"]) for line in lines)
    assert {line["tags"]["lstm_exp.job_num"] for line in lines} == {"0", "1"}
    assert not (tmp_path / "mlflow.db").exists()
    (summary,) = (tmp_path / "multirun").glob("*/*/summary.csv")
    assert sorted(row["batch"] for row in csv.DictReader(summary.open())) == ["2", "4"]


def test_mlflow_and_jsonl_record_the_same_job(tmp_path, smoke_cache):
    import mlflow

    proc = _run(tmp_path, *SMOKE, "tracking=mlflow_jsonl", f"paths.cache_dir={smoke_cache}", "batch=4")
    assert proc.returncode == 0, proc.stderr[-3000:]
    (line,) = _lines(tmp_path / "results.jsonl")
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    (run,) = mlflow.search_runs(experiment_names=["lstm_exp"], output_format="list")
    assert line["run_id"] == run.info.run_id and run.info.status == "FINISHED"
    assert run.data.metrics["per"] == pytest.approx(line["accuracy"]["per"])
    assert run.data.params["variant"] == line["variant"] and line["params"] == run.data.params


def test_a_failed_job_is_a_line_too(tmp_path, smoke_cache):
    proc = _run(tmp_path, *SMOKE, "tracking=jsonl", f"paths.cache_dir={smoke_cache}", "decode.beam_width=0")
    assert proc.returncode == 1
    (error_line,) = [line for line in proc.stderr.splitlines() if line.startswith("lstm_exp: error:")]
    (line,) = _lines(tmp_path / "results.jsonl")
    assert line["status"] == "FAILED" and line["error"] == error_line.removeprefix("lstm_exp: error: ")


def test_a_results_file_that_cannot_be_written_is_one_line_before_any_work(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder\n")
    proc = _run(tmp_path, *SMOKE, "tracking=jsonl", f"tracking.sinks.jsonl.path={blocker}/results.jsonl")
    assert proc.returncode == 1
    errors = [line for line in proc.stderr.splitlines() if line.startswith("lstm_exp: error:")]
    assert len(errors) == 1 and f"{blocker}/results.jsonl" in errors[0] and "tracking.sinks.jsonl.path=" in errors[0]
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "cache").exists() and blocker.read_text() == "not a folder\n"


def test_make_sinks_instantiates_none_for_tracking_none_and_refuses_a_bad_target():
    assert make_sinks({}) == [] and make_sinks(None) == []
    with pytest.raises(ConfigError, match=r"tracking.sinks.x: cannot instantiate no.such.Sink"):
        make_sinks({"x": {"_target_": "no.such.Sink"}})
    with pytest.raises(ConfigError, match=r"tracking.sinks.y: collections.OrderedDict is not a"):
        make_sinks({"y": {"_target_": "collections.OrderedDict"}})


def test_params_hold_the_identity_a_report_is_read_back_with():
    plain = {"batch": 8, "data": {"kind": "synth"}, "split": {"name": "dev"}, "decode": {"type": "greedy"},
             "model": {"name": "ctc_small"}, "backend": {"name": "torch", "_target_": "x.Y"},
             "tracking": {"experiment_name": "e"}}
    identity = {"variant": "torch-cpu-fp32", "backend": "torch", "batch": 8, "split": "dev", "decode": "greedy",
                "model": "ctc_small", "data": "synth", "batching": "longest", "precision": "fp32"}
    params = job_params(plain, identity)
    assert identity_from_params(params) == identity
    assert "backend._target_" not in params and not any(key.startswith("tracking.") for key in params)
