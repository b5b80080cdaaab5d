"""The Ascend path end to end through the simulators (tests/acl_sim on PYTHONPATH): the users'
headline `-m` sweep initialises ACL once in its one process, ais_bench gives pyacl's PER, and the
recipe's own files (its info file, pyacl_infer's 0.0.npy outputs) score to the same PER."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("espeakng_loader")

REPO = Path(__file__).resolve().parents[2]
ACL_SIM = REPO / "tests" / "acl_sim"
sys.path.insert(0, str(ACL_SIM))
from helpers import install_fake_atc  # noqa: E402

sys.path.remove(str(ACL_SIM))

SMOKE = ["experiment=smoke", "backend=acl", "progress=false"]


def _run(cwd: Path, *args: str, report: Path | None = None, module: str | None = "lstm_exp", check: bool = True) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "ACL_SIM_REPORT")}
    env["PYTHONPATH"] = os.pathsep.join([str(ACL_SIM), str(REPO)])
    if report is not None:
        env["ACL_SIM_REPORT"] = str(report)
    command = [sys.executable, "-m", module, *args] if module else [sys.executable, *args]
    proc = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}\nstdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-5000:]}")
    return proc


def _runs(cwd: Path) -> list:
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{cwd / 'mlflow.db'}")
    return mlflow.search_runs(experiment_names=["lstm_exp"], output_format="list")


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """`python -m lstm_exp experiment=smoke backend=acl batch=1,2,3,4,5 -m`: five jobs, one process."""
    cwd = tmp_path_factory.mktemp("acl_e2e")
    atc = install_fake_atc(cwd / "bin")
    report = cwd / "sweep_report.json"
    _run(cwd, *SMOKE, "batch=1,2,3,4,5", f"backend.atc.atc_path={atc}", "-m", report=report)
    return cwd, atc, report


def _pyacl_run(cwd: Path, batch: int):
    return next(r for r in _runs(cwd) if r.data.params["batch"] == str(batch) and r.data.tags.get("acl.runtime") == "pyacl")


def test_five_job_sweep_initialises_acl_once(sweep):
    cwd, _, report = sweep
    sim = json.loads(report.read_text())
    assert (sim["init"], sim["finalize"]) == (1, 1)  # not init -> finalize -> init per job
    assert sim["errors"] == [] and sim["leaks"] == [] and sim["leaks_at_finalize"] == []
    runs = [r for r in _runs(cwd) if r.data.tags.get("acl.runtime") == "pyacl"]
    assert sorted(int(r.data.params["batch"]) for r in runs) == [1, 2, 3, 4, 5]
    for run in runs:
        assert run.info.status == "FINISHED"
        # precision on record: the guide's OM (no --precision_mode) computes in fp16
        assert run.data.tags["om.precision"] == "force_fp16 (atc default)"
        assert run.data.tags["soc"] == run.data.tags["om.soc_version"] == "Ascend310"


def test_ais_bench_end_to_end_gives_the_pyacl_per(sweep):
    cwd, atc, _ = sweep
    report = cwd / "ais_report.json"
    _run(cwd, *SMOKE, "batch=4", "backend.runtime=ais_bench", f"backend.atc.atc_path={atc}", "tracking.run_name=ais-b4", report=report)
    sim = json.loads(report.read_text())
    assert (sim["init"], sim["finalize"]) == (1, 1) and sim["errors"] == [] and sim["leaks"] == []
    ais = next(r for r in _runs(cwd) if r.info.run_name == "ais-b4")
    assert ais.info.status == "FINISHED" and ais.data.tags["acl.runtime"] == "ais_bench"
    pyacl = _pyacl_run(cwd, 4)
    assert ais.data.metrics["per"] == pytest.approx(pyacl.data.metrics["per"], abs=1e-9)
    assert ais.data.metrics["cer"] == pytest.approx(pyacl.data.metrics["cer"], abs=1e-9)
    assert ais.data.metrics["infer_ms_p50"] > 0


INFER_LIKE_PYACL_INFER = """
import sys
from pathlib import Path
import numpy as np
from lstm_exp.backends.acl.config import AclBackendConfig
from lstm_exp.backends.acl.backend import AclBackend
from lstm_exp.backends.acl.inputs import read_bin_batches, read_info
info, om, out, recipe_info = map(Path, sys.argv[1:5])
out.mkdir()
lines = []
with AclBackend(AclBackendConfig()) as backend:
    backend.load(om)
    for entry, (_, x, _) in zip(read_info(info), read_bin_batches(info)):
        np.save(out / f"{entry.index}.0.npy", backend.run(x).log_probs)  # pyacl_infer's name
        lines.append(f"{entry.index} ./lstm_bin/inputs_{entry.index}.bin ({','.join(map(str, entry.shape))})\\n")
recipe_info.write_text("".join(lines))  # LSTM_get_info.py's format: no utterance ids
"""


def test_recipe_info_file_and_outputs_score_to_our_per(sweep):
    cwd, atc, _ = sweep
    proc = _run(cwd, *SMOKE, "batch=4", "stage=preprocess", "tracking=none")
    assert "stage preprocess done" in proc.stdout
    ours = next(p for p in (cwd / "cache" / "preprocess").iterdir() if not p.name.startswith(".")) / "lstm.info"
    prepared = next(p for p in (cwd / "cache" / "prepare").iterdir() if not p.name.startswith("."))
    om = next(p / "model.om" for p in (cwd / "cache" / "convert").iterdir()
              if not p.name.startswith(".") and ":4,390,243" in (p / "atc_command.txt").read_text())
    recipe = cwd / "recipe"
    recipe.mkdir()
    _run(cwd, "-c", INFER_LIKE_PYACL_INFER, str(ours), str(om), str(recipe / "infer_res"), str(recipe / "lstm.info"), module=None)
    assert (recipe / "infer_res" / "0.0.npy").is_file()
    assert (recipe / "lstm.info").read_text().startswith("0 ./lstm_bin/inputs_0.bin (4,390,243)\n")
    scored = {}
    for name, info in (("recipe", recipe / "lstm.info"), ("ours", ours)):
        out_json = recipe / f"{name}.json"
        proc = _run(cwd, "--info", str(info), "--outputs", str(recipe / "infer_res"), "--prepared", str(prepared),
                    "--json", str(out_json), module="lstm_exp.recipe_score")
        assert "PER" in proc.stdout and "recipe-compatible" in proc.stdout
        scored[name] = json.loads(out_json.read_text())
    job = _pyacl_run(cwd, 4).data.metrics
    for result in scored.values():
        assert result["utterances"] == result["split_utterances"] == job["utterances"]
        for metric in ("per", "cer", "per_recipe", "cer_recipe"):
            assert result[metric] == pytest.approx(job[metric], abs=1e-9), metric


def test_recipe_score_bad_input_is_one_line(sweep, tmp_path):
    cwd, _, _ = sweep
    proc = _run(cwd, "--info", str(tmp_path / "none.info"), "--outputs", str(tmp_path), "--prepared", str(tmp_path),
                module="lstm_exp.recipe_score", check=False)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("recipe_score: error: info file ")
