"""`python -m lstm_exp` end to end on a tiny embedded corpus: a sweep over two backends and two
batch sizes makes one FINISHED MLflow run per job from one cached training, nested under one
parent run that holds the sweep's table and plots (read back over a real mlflow server's REST
API); a rerun computes nothing again; a failing job fails the sweep (basic and joblib
launchers); a bad input fails with one line, a non-zero exit and a FAILED run."""
from __future__ import annotations

import csv
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytest.importorskip("espeakng_loader")


ACL_SIM = Path(__file__).resolve().parent / "acl_sim"
REPO_ROOT = Path(__file__).resolve().parent.parent


SWEEP = ("experiment=smoke", "backend=torch,onnxruntime", "batch=1,4", "progress=false", "-m")


def _run(cwd: Path, *args: str, check: bool = True, pythonpath: str | None = None,
         module: str = "lstm_exp") -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "LSTM_EXP_PARENT_RUN_ID")}
    if pythonpath:  # before this checkout, never instead of it (else an installed lstm_exp is imported)
        env["PYTHONPATH"] = os.pathsep.join([pythonpath, str(REPO_ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    proc = subprocess.run(
        [sys.executable, "-m", module, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=900
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}\nstdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-5000:]}")
    return proc


def _runs(cwd: Path):
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{cwd / 'mlflow.db'}")
    return mlflow.search_runs(experiment_names=["lstm_exp"], output_format="list")


def _job_runs(cwd: Path):
    """The runs that measured a job (a rerun's REUSED copies of them left out)."""
    return [r for r in _runs(cwd) if r.data.tags.get("lstm_exp.role") == "job"
            and r.data.tags.get("lstm_exp.status") != "REUSED"]


def _sweeps(cwd: Path):
    """Sweep parent runs, latest first."""
    runs = [r for r in _runs(cwd) if r.data.tags.get("lstm_exp.role") == "sweep"]
    return sorted(runs, key=lambda r: r.info.start_time, reverse=True)


def _children(cwd: Path, parent_id: str):
    return [r for r in _runs(cwd) if r.data.tags.get("mlflow.parentRunId") == parent_id]


@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("e2e")
    _run(cwd, *SWEEP)
    return cwd


@pytest.fixture(scope="module")
def first_sweep_dir(sweep_dir):
    """The Hydra sweep folder of the module's sweep (before any other sweep runs)."""
    (folder,) = [p.parent for p in (sweep_dir / "multirun").glob("*/*/parent_run.json")]
    return folder


@pytest.fixture(scope="module")
def mlflow_server(sweep_dir):
    """A real `mlflow server` on a free loopback port over the sweep's SQLite store."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    log = open(sweep_dir / "mlflow-server.log", "w")
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", f"sqlite:///{sweep_dir / 'mlflow.db'}",
         "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        cwd=sweep_dir, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(240):
            try:
                urllib.request.urlopen(f"{url}/health", timeout=2)
                break
            except OSError:
                if server.poll() is not None:
                    raise AssertionError((sweep_dir / "mlflow-server.log").read_text()[-3000:])
                time.sleep(0.5)
        else:
            raise AssertionError("mlflow server did not answer on /health within 120 s")
        yield url
    finally:
        os.killpg(server.pid, 15)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:  # a loaded machine: uvicorn's workers outlive SIGTERM's grace
            os.killpg(server.pid, 9)
            server.wait(timeout=30)
        log.close()


def _rest(url: str, path: str, body: dict | None = None) -> dict:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(f"{url}/api/2.0/mlflow/{path}", data=data,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def _tags(run: dict) -> dict:
    return {t["key"]: t["value"] for t in run["data"].get("tags", [])}


def test_sweep_is_one_parent_with_four_nested_children_over_rest(sweep_dir, first_sweep_dir, mlflow_server):
    experiment = _rest(mlflow_server, "experiments/get-by-name?experiment_name=lstm_exp")["experiment"]
    kind = {t["key"]: t["value"] for t in experiment["tags"]}["mlflow.experimentKind"]
    assert kind == "custom_model_development"
    exp_id = experiment["experiment_id"]
    parents = _rest(mlflow_server, "runs/search", {"experiment_ids": [exp_id],
                                                     "filter": "tags.`lstm_exp.role` = 'sweep'"})["runs"]
    assert len(parents) == 1
    parent = parents[0]
    parent_id, tags = parent["info"]["run_id"], _tags(parent)
    assert parent["info"]["status"] == "FINISHED"
    assert tags["lstm_exp.overrides"] == "experiment=smoke backend=torch,onnxruntime batch=1,4 progress=false"
    assert tags["lstm_exp.sweep_dir"] == str(first_sweep_dir) and tags["lstm_exp.launcher"] == "BasicLauncher"
    assert tags["lstm_exp.failed_jobs"] == "0"
    assert json.loads((first_sweep_dir / "parent_run.json").read_text())["run_id"] == parent_id
    children = _rest(mlflow_server, "runs/search", {"experiment_ids": [exp_id],
                                                      "filter": f"tags.`mlflow.parentRunId` = '{parent_id}'"})["runs"]
    assert len(children) == 4
    names = sorted(c["info"]["run_name"] for c in children)
    assert names == ["onnxruntime-cpu-fp32-b1-dev", "onnxruntime-cpu-fp32-b4-dev", "torch-cpu-fp32-b1-dev",
                     "torch-cpu-fp32-b4-dev"]
    for child in children:
        assert child["info"]["status"] == "FINISHED"
        params = {p["key"]: p["value"] for p in child["data"]["params"]}
        assert params["variant"] in child["info"]["run_name"] and params["batching"] == "longest"
        (dataset_input,) = child["inputs"]["dataset_inputs"]
        dataset = dataset_input["dataset"]
        assert dataset["name"] == "synth-dev" and len(dataset["digest"]) == 16
        metrics = {m["key"]: m["value"] for m in child["data"]["metrics"]}
        assert json.loads(dataset["profile"])["utterances"] == metrics["utterances"] > 0
    artifacts = {f["path"] for f in _rest(mlflow_server, f"artifacts/list?run_id={parent_id}")["files"]}
    assert {"summary.csv", "summary.md", "latency_vs_batch.png", "throughput_vs_batch.png",
            "per_by_variant.png"} <= artifacts


def test_sweep_summary_has_a_row_per_job_and_plots_that_open(first_sweep_dir):
    import matplotlib.pyplot as plt

    rows = list(csv.DictReader((first_sweep_dir / "summary.csv").open()))
    assert len(rows) == 4 and {r["status"] for r in rows} == {"FINISHED"}
    assert {(r["variant"], r["batch"]) for r in rows} == {("torch-cpu-fp32", "1"), ("torch-cpu-fp32", "4"),
                                                          ("onnxruntime-cpu-fp32", "1"), ("onnxruntime-cpu-fp32", "4")}
    assert all(float(r["PER %"]) >= 0 and float(r["utt/s"]) > 0 for r in rows)
    for name in ("latency_vs_batch.png", "throughput_vs_batch.png", "per_by_variant.png"):
        image = plt.imread(first_sweep_dir / name)
        assert image.ndim == 3 and image.shape[0] > 200, name
    (job0,) = first_sweep_dir.glob("0_*/report.json")
    report = json.loads(job0.read_text())
    assert rows[0]["job"] == "0" and rows[0]["variant"] == report["variant"]
    assert rows[0]["PER %"] == f"{report['accuracy']['per']:.2f}" and rows[0]["run"] == report["run_id"]


def test_report_cli_rebuilds_the_table_from_the_store_alone(sweep_dir, first_sweep_dir, mlflow_server, tmp_path):
    proc = _run(tmp_path, "--tracking-uri", mlflow_server, "--out", str(tmp_path / "rep"), module="lstm_exp.report")
    assert proc.stdout.strip() == (first_sweep_dir / "summary.md").read_text().strip()
    assert (tmp_path / "rep" / "summary.csv").read_text() == (first_sweep_dir / "summary.csv").read_text()
    assert (tmp_path / "rep" / "latency_vs_batch.png").stat().st_size > 1000


def test_run_experiment_from_python_without_hydra(sweep_dir, tmp_path):
    from lstm_exp.experiment import load_config, run_experiment
    from lstm_exp.report import JobReport

    cfg = load_config("experiment=smoke", "backend=onnxruntime", "batch=4", "tracking=none", "progress=false",
                      root=sweep_dir)
    report = run_experiment(cfg, tmp_path / "job")
    assert report.status == "FINISHED" and report.variant == "onnxruntime-cpu-fp32" and report.batch == 4
    assert JobReport.from_json(tmp_path / "job" / "report.json") == report
    assert set(report.stage_keys) >= {"corpus", "prepare", "train", "export"}
    earlier = next(r for r in _job_runs(sweep_dir) if r.info.run_name == "onnxruntime-cpu-fp32-b4-dev")
    assert report.accuracy.per == pytest.approx(earlier.data.metrics["per"], abs=1e-9)
    assert report.fingerprint == earlier.data.tags["lstm_exp.fingerprint"]


def test_rerunning_the_sweep_computes_no_job_again(sweep_dir):
    before = {r.info.run_id for r in _job_runs(sweep_dir)}
    proc = _run(sweep_dir, *SWEEP)
    skips = [line for line in proc.stdout.splitlines() if line.startswith("lstm_exp: skip job")]
    assert len(skips) == 4 and all("identical config FINISHED as run" in line for line in skips)
    assert {r.info.run_id for r in _job_runs(sweep_dir)} == before
    latest = _sweeps(sweep_dir)[0]
    # each reused job is a child of the new parent that points at the measurement it carries
    children = _children(sweep_dir, latest.info.run_id)
    assert len(children) == 4 and {c.data.tags["lstm_exp.status"] for c in children} == {"REUSED"}
    assert {c.data.tags["lstm_exp.reused_from"] for c in children} == before
    sweep_folder = Path(latest.data.tags["lstm_exp.sweep_dir"])
    rows = list(csv.DictReader((sweep_folder / "summary.csv").open()))
    assert len(rows) == 4 and {r["status"] for r in rows} == {"REUSED"}
    assert {r["run"] for r in rows} == {c.info.run_id for c in children}


def test_sweep_makes_one_finished_run_per_job(sweep_dir):
    runs = _job_runs(sweep_dir)
    assert len(runs) == 4
    combos = {(r.data.params["backend"], r.data.params["batch"]) for r in runs}
    assert combos == {("torch", "1"), ("torch", "4"), ("onnxruntime", "1"), ("onnxruntime", "4")}
    for run in runs:
        assert run.info.status == "FINISHED"
        metrics = run.data.metrics
        for name in ("per", "cer", "per_recipe", "cer_recipe", "infer_ms_p50", "infer_ms_p90", "infer_ms_p99",
                     "e2e_ms_p50", "throughput_utt_s", "rtf"):
            assert name in metrics, name
        assert 0.0 <= metrics["per"] and metrics["throughput_utt_s"] > 0
    # torch and onnxruntime decode the same posteriors up to float noise: the same PER
    per = {(r.data.params["backend"], r.data.params["batch"]): r.data.metrics["per"] for r in runs}
    assert per[("torch", "1")] == pytest.approx(per[("onnxruntime", "1")], abs=1e-9)
    assert per[("torch", "4")] == pytest.approx(per[("onnxruntime", "4")], abs=1e-9)


def test_sweep_trains_and_prepares_once(sweep_dir):
    cache = sweep_dir / "cache"
    for stage in ("corpus", "prepare", "train", "export"):
        entries = [p for p in (cache / stage).iterdir() if not p.name.startswith(".")]
        assert len(entries) == 1, (stage, entries)


def test_rerun_uses_the_cache(sweep_dir):
    train_entry = next(p for p in (sweep_dir / "cache" / "train").iterdir() if not p.name.startswith("."))
    before = (train_entry / "_stage.json").stat().st_mtime_ns
    proc = _run(sweep_dir, "experiment=smoke", "backend=onnxruntime", "batch=4", "progress=false")
    assert (train_entry / "_stage.json").stat().st_mtime_ns == before
    assert "PER" in proc.stdout and "mlflow ui --backend-store-uri sqlite:///" in proc.stdout


def test_bad_input_fails_with_one_line_and_a_failed_run(sweep_dir):
    missing = sweep_dir / "no-such-timit"
    proc = _run(sweep_dir, "data=timit", f"data.root={missing}", "progress=false", check=False)
    assert proc.returncode != 0
    errors = [line for line in proc.stderr.splitlines() if line.startswith("lstm_exp: error:")]
    assert len(errors) == 1 and str(missing) in errors[0], proc.stderr[-2000:]
    failed = [r for r in _runs(sweep_dir) if r.info.status == "FAILED" and r.data.params.get("data.kind") == "timit"]
    assert len(failed) == 1


def test_failing_jobs_fail_the_sweep_and_the_others_finish(sweep_dir):
    proc = _run(sweep_dir, "experiment=smoke", "batch=0,2,-1", "progress=false", "-m", check=False)
    assert proc.returncode != 0
    assert "2 job(s) failed" in proc.stderr
    assert "batch=0" in proc.stderr and "batch=-1" in proc.stderr
    parent = _sweeps(sweep_dir)[0]
    assert parent.info.status == "FAILED" and parent.data.tags["lstm_exp.failed_jobs"] == "2"
    statuses = sorted((r.data.params["batch"], r.info.status) for r in _children(sweep_dir, parent.info.run_id))
    assert statuses == [("-1", "FAILED"), ("0", "FAILED"), ("2", "FINISHED")]


def test_joblib_sweep_nests_every_child_and_reports_the_failed_job(sweep_dir):
    """Two jobs at once in other processes on one SQLite store: no run lost, one parent, and
    the failed job listed on it and in a non-zero exit."""
    pytest.importorskip("hydra_plugins.hydra_joblib_launcher")
    proc = _run(sweep_dir, "experiment=smoke", "backend=torch", "batch=2,0,3", "progress=false",
                "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "-m", check=False)
    assert proc.returncode != 0, proc.stdout[-2000:]
    assert "concurrent" in proc.stderr or "at once" in proc.stderr
    parent = _sweeps(sweep_dir)[0]
    assert parent.data.tags["lstm_exp.launcher"] == "JoblibLauncher" and parent.data.tags["lstm_exp.concurrent_jobs"] == "2"
    children = _children(sweep_dir, parent.info.run_id)
    assert sorted((r.data.params["batch"], r.info.status) for r in children) == [
        ("0", "FAILED"), ("2", "FINISHED"), ("3", "FINISHED")]
    assert all(r.data.tags["lstm_exp.concurrent_jobs"] == "2" for r in children)
    assert "batch=0" in parent.data.tags["lstm_exp.failures"] and parent.info.status == "FAILED"
    assert "1 job(s) failed" in proc.stderr


def test_acl_backend_end_to_end_through_the_simulator(sweep_dir):
    """backend=acl: static opset-11 ONNX -> (stand-in) atc -> OM -> pyacl (simulated), scored
    like the others: the same PER as onnxruntime on the same 390-frame batches (an fp32 OM: ATC's
    default precision is fp16, which the simulator rounds to)."""
    common = ["experiment=smoke", "batch=4", "infer.pad_to=390", "progress=false"]
    _run(sweep_dir, *common, "backend=onnxruntime", "tracking.run_name=ort-390")
    _run(sweep_dir, *common, "backend=acl", f"backend.atc.atc_path={ACL_SIM / 'fake_atc'}", "backend.atc.precision_mode=force_fp32",
         "tracking.run_name=acl-390", pythonpath=os.pathsep.join([str(ACL_SIM), str(ACL_SIM.parents[1])]))
    runs = {r.info.run_name: r for r in _runs(sweep_dir)}
    assert runs["acl-390"].info.status == "FINISHED"
    assert runs["acl-390"].data.params["backend"] == "acl"
    assert runs["acl-390"].data.metrics["per"] == pytest.approx(runs["ort-390"].data.metrics["per"], abs=1e-9)
    convert = [p for p in (sweep_dir / "cache" / "convert").iterdir() if not p.name.startswith(".")]
    assert len(convert) == 1 and (convert[0] / "model.om").is_file()
    assert "--soc_version=Ascend310" in (convert[0] / "atc_command.txt").read_text()


def test_acl_without_pyacl_says_what_to_install(sweep_dir):
    proc = _run(sweep_dir, "experiment=smoke", "backend=acl", "progress=false", check=False)
    assert proc.returncode != 0
    assert "pyacl" in proc.stderr and "CANN" in proc.stderr


def test_real_timit_layout_goes_through_the_same_stages(tmp_path):
    """data=timit through the app (stage=prepare): an LDC-layout tree, lower case, SPHERE audio."""
    sys.path.insert(0, str(Path(__file__).resolve().parent / "data"))
    from timit_fixtures import build_timit_tree, write_speaker_list

    info = build_timit_tree(tmp_path / "TIMIT", upper=False)
    dev_list = write_speaker_list(tmp_path / "dev.list", info.dev_speakers)
    test_list = write_speaker_list(tmp_path / "test.list", info.test_speakers)
    proc = _run(tmp_path, "data=timit", f"data.root={info.root}", f"data.dev_speakers_list={dev_list}",
                f"data.test_speakers_list={test_list}", "stage=prepare", "tracking=none", "progress=false")
    assert "stage prepare done" in proc.stdout
    prepared = next(p for p in (tmp_path / "cache" / "prepare").iterdir() if not p.name.startswith("."))
    assert set(info.expected_ids) == {"train", "dev", "test"}
    for split, ids in info.expected_ids.items():
        listed = [line.split()[0] for line in (prepared / split / "text").read_text().splitlines()]
        assert listed == sorted(ids), split


def test_original_npu_layout_checkpoint_gives_the_trained_models_results(sweep_dir):
    """model=pretrained: the trained weights rewritten as the Ascend ModelZoo's NPU-layout
    `ctc_best_model.pth` (DataParallel prefix, training metadata, separate units file) give the
    same PER as the model they came from."""
    import torch

    from lstm_exp.model import load_checkpoint

    train_entry = next(p for p in (sweep_dir / "cache" / "train").iterdir() if not p.name.startswith("."))
    model = load_checkpoint(train_entry / "model.pt")
    npu_state = {}
    for key, value in model.state_dict().items():
        key = key.replace(".rnn.weight_ih_l0_reverse", ".rnn_w.weight_ih_l0").replace(
            ".rnn.weight_hh_l0_reverse", ".rnn_w.weight_hh_l0")
        npu_state[f"module.{key}"] = value
    original = sweep_dir / "ctc_best_model.pth"
    torch.save({"state_dict": npu_state, "epoch": 7, "best_loss": 0.5}, original)
    units = sweep_dir / "units"
    units.write_text("".join(f"{name} {i}\n" for i, name in enumerate(model.units)))
    _run(sweep_dir, "experiment=smoke", "model=pretrained", f"model.checkpoint={original}",
         f"model.units_file={units}", "backend=torch", "batch=4", "progress=false", "tracking.run_name=npu-original")
    runs = _runs(sweep_dir)
    by_name = {r.info.run_name: r for r in runs}
    reference = next(r for r in runs if r.data.params.get("backend") == "torch" and r.data.params.get("batch") == "4"
                     and r.data.params.get("model.name") == "ctc_small" and r.data.params.get("infer.pad_to") == "null")
    assert by_name["npu-original"].info.status == "FINISHED"
    assert by_name["npu-original"].data.metrics["per"] == pytest.approx(reference.data.metrics["per"], abs=1e-9)
