"""`python -m lstm_exp` end to end on a tiny embedded corpus: a sweep over two backends and two
batch sizes makes one FINISHED MLflow run per job from one cached training; a bad input fails
with one line, a non-zero exit and a FAILED run."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("espeakng_loader")


ACL_SIM = Path(__file__).resolve().parent / "acl_sim"


def _run(cwd: Path, *args: str, check: bool = True, pythonpath: str | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    proc = subprocess.run(
        [sys.executable, "-m", "lstm_exp", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=900
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}\nstdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-5000:]}")
    return proc


def _runs(cwd: Path):
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{cwd / 'mlflow.db'}")
    return mlflow.search_runs(experiment_names=["lstm_exp"], output_format="list")


@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("e2e")
    _run(cwd, "experiment=smoke", "backend=torch,onnxruntime", "batch=1,4", "progress=false", "-m")
    return cwd


def test_sweep_makes_one_finished_run_per_job(sweep_dir):
    runs = _runs(sweep_dir)
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


def test_config_error_in_a_sweep_fails_every_job_but_runs_them(sweep_dir):
    proc = _run(sweep_dir, "experiment=smoke", "batch=0,-1", "progress=false", "-m", check=False)
    assert proc.returncode != 0
    assert "2 job(s) failed" in proc.stderr
    assert "batch=0" in proc.stderr and "batch=-1" in proc.stderr


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
