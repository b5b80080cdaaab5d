"""Interrupting a job (docs/RELIABILITY.md, "Interrupting a job").

SIGTERM during feature extraction (the prepare stage, over ``data.workers`` processes) or during
training: the job exits 130 with one line, its MLflow run ends KILLED (never left RUNNING), no
partial entry is cached, no worker process outlives it, and a plain rerun of the same command
continues from the last complete stage (training from its last finished epoch) to the same
results as an uninterrupted run.  Both compare with one uninterrupted reference run.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from conf_schemas.model import ModelConfig, TrainConfig
from lstm_exp.data.batching import Example
from lstm_exp.model.train import fit

CHECKOUT = Path(__file__).resolve().parent.parent
ARGS = ["experiment=smoke", "train.epochs=4", "progress=false"]
SPLITS = ("train", "dev", "test")


def _env() -> dict:
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env["PYTHONPATH"] = os.pathsep.join([str(CHECKOUT), *filter(None, [env.get("PYTHONPATH")])])
    return env


def _run(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "lstm_exp", *args], cwd=cwd, env=_env(), capture_output=True,
                          text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def _weights_digest(cwd: Path) -> str:
    (model,) = list((cwd / "cache" / "train").glob("[0-9a-f]*/model.pt"))
    state = torch.load(model, weights_only=True)["state_dict"]
    digest = hashlib.sha256()
    for key in sorted(state):
        digest.update(key.encode())
        digest.update(state[key].numpy().tobytes())
    return digest.hexdigest()


def _prepared(cwd: Path) -> tuple[str, dict]:
    """(prepare key, split -> sha256 of its feats.ark)."""
    (entry,) = [p.parent for p in (cwd / "cache" / "prepare").glob("[0-9a-f]*/_stage.json")]
    return entry.name, {s: hashlib.sha256((entry / s / "feats.ark").read_bytes()).hexdigest() for s in SPLITS}


def _per(cwd: Path) -> float:
    reports = sorted((cwd / "outputs").glob("*/*/report.json"))
    return json.loads(reports[-1].read_text())["accuracy"]["per"]


def _statuses(cwd: Path) -> list[str]:
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{cwd / 'mlflow.db'}")
    return sorted(r.info.status for r in mlflow.search_runs(experiment_names=["lstm_exp"], output_format="list"))


def _procs() -> dict[int, tuple[int, str, str]]:
    """pid -> (parent pid, command line, working folder) of every process we may inspect."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            cwd = os.readlink(entry / "cwd")
        except (OSError, IndexError, ValueError):
            continue  # gone, or not ours
        found[int(entry.name)] = (ppid, cmdline, cwd)
    return found


def _workers_of(pid: int) -> list[int]:
    return [p for p, (ppid, cmdline, _) in _procs().items() if ppid == pid and "spawn_main" in cmdline]


def _left_running_in(folder: Path, wait_s: float = 10.0) -> list[str]:
    """Processes still running in ``folder`` (their working directory) after ``wait_s``."""
    deadline = time.monotonic() + wait_s
    while True:
        left = [f"{p}: {c}" for p, (_, c, cwd) in _procs().items() if cwd == str(folder)]
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.1)


def _interrupt_when(cwd: Path, ready, what: str, args: tuple = tuple(ARGS), runs: tuple = ("KILLED",)) -> str:
    """Start ``python -m lstm_exp <args>`` in ``cwd``, send SIGTERM once ``ready(proc)``; check the
    interrupt's contract (``runs``: the MLflow statuses then) and return the job's stderr."""
    proc = subprocess.Popen([sys.executable, "-m", "lstm_exp", *args], cwd=cwd, env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 600
    while not ready(proc):
        assert proc.poll() is None, f"the job ended before {what}: {proc.communicate()[1][-3000:]}"
        assert time.monotonic() < deadline, f"no {what} within 600 s"
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 130, stderr[-3000:]
    assert "Traceback" not in stderr, stderr[-3000:]
    interrupted = [line for line in stderr.splitlines() if line.startswith("lstm_exp: interrupted")]
    assert len(interrupted) == 1 and "KILLED" in interrupted[0], stderr[-3000:]
    assert _statuses(cwd) == sorted(runs)
    assert not _left_running_in(cwd), f"processes left running: {_left_running_in(cwd, 0)}"
    return stderr


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> dict:
    """One uninterrupted run of ``ARGS``: its prepare key and archives, PER and weights."""
    pytest.importorskip("espeakng_loader")
    cwd = tmp_path_factory.mktemp("reference")
    _run(cwd, *ARGS)
    key, arks = _prepared(cwd)
    return {"cwd": cwd, "prepare_key": key, "arks": arks, "per": _per(cwd), "weights": _weights_digest(cwd)}


def test_sigterm_during_feature_extraction_ends_killed_and_a_rerun_gets_the_same_results(tmp_path, reference):
    prepare = tmp_path / "cache" / "prepare"
    seen_workers: list[int] = []

    def extracting(proc) -> bool:  # the prepare entry is being written and its worker pool runs
        if not list(prepare.glob(".tmp-*")):
            return False
        seen_workers[:] = _workers_of(proc.pid)
        return bool(seen_workers)

    _interrupt_when(tmp_path, extracting, "feature extraction")
    assert seen_workers  # there were workers to stop, and none is left (checked above)
    assert list((tmp_path / "cache" / "corpus").glob("[0-9a-f]*/_stage.json"))  # the complete stage stays
    assert not [p.name for p in prepare.iterdir() if not p.name.endswith(".lock")]  # no entry, no .tmp-

    rerun = _run(tmp_path, *ARGS)
    assert "corpus: cached" in rerun.stderr + rerun.stdout
    assert _statuses(tmp_path) == ["FINISHED", "KILLED"]
    key, arks = _prepared(tmp_path)
    assert (key, arks) == (reference["prepare_key"], reference["arks"])
    assert _per(tmp_path) == reference["per"]
    assert _weights_digest(tmp_path) == reference["weights"]


EXTRACT = """
import signal
import sys
from pathlib import Path

import numpy as np
import soundfile

from conf_schemas.features import FbankConfig
from lstm_exp.data.features import extract_features

root = Path(sys.argv[1])
rng = np.random.default_rng(0)
items = []
for index in range(300):
    path = root / f"u{index}.wav"
    soundfile.write(path, (rng.standard_normal(4 * 16000) * 1000).astype(np.int16), 16000)
    items.append((f"u{index}", path))


def terminate(signum, frame):  # SIGTERM as Ctrl-C, as lstm_exp.app does
    raise KeyboardInterrupt


signal.signal(signal.SIGTERM, terminate)
try:
    extract_features(items, FbankConfig(), root / "out", workers=2, progress=False)
except KeyboardInterrupt:
    print("interrupted")
    sys.exit(130)
print("finished")
"""


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
@pytest.mark.parametrize("delay_s", [0.0, 0.3])
def test_a_signal_to_the_process_group_during_extraction_stops_the_workers_cleanly(tmp_path, delay_s, signum):
    """Ctrl-C in a terminal (SIGINT), ``kill -- -<pgid>`` or a scheduler (SIGTERM) signal every
    process of the group, workers included, as they start (``delay_s`` 0) or while they import and
    work: only the parent handles it, stops the pool, and ends without a traceback or a hang."""
    proc = subprocess.Popen([sys.executable, "-c", EXTRACT, str(tmp_path)], cwd=tmp_path, env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.monotonic() + 120
    while not (workers := _workers_of(proc.pid)):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[1][-3000:]
        time.sleep(0.01)
    time.sleep(delay_s)
    os.killpg(proc.pid, signum)
    try:
        stdout, stderr = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        raise
    assert (proc.returncode, stdout.strip()) == (130, "interrupted"), stderr[-3000:]
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr, stderr[-3000:]
    assert workers and not _left_running_in(tmp_path), _left_running_in(tmp_path, 0)


def test_sigterm_during_training_ends_killed_and_a_rerun_resumes_to_the_same_weights(tmp_path, reference):
    def one_epoch_done(proc) -> bool:  # an epoch's state is saved (atomically), more epochs to go
        return bool(list((tmp_path / "cache" / "train").glob(".work-*/last.pt")))

    _interrupt_when(tmp_path, one_epoch_done, "finished epoch")
    assert not list((tmp_path / "cache" / "train").glob("[0-9a-f]*/model.pt"))  # no partial entry reused
    assert list((tmp_path / "cache" / "prepare").glob("[0-9a-f]*/_stage.json"))  # complete stages stay

    resumed = _run(tmp_path, *ARGS)  # the same command: train.resume is on by default
    assert "corpus: cached" in resumed.stderr + resumed.stdout
    assert _statuses(tmp_path) == ["FINISHED", "KILLED"]
    (stage,) = list((tmp_path / "cache" / "train").glob("[0-9a-f]*/_stage.json"))
    assert json.loads(stage.read_text())["summary"]["resumed_from"] >= 1  # continued, not restarted
    epochs = [json.loads(line)["epoch"] for line in (stage.parent / "train_log.jsonl").read_text().splitlines()]
    assert epochs == [1, 2, 3, 4]
    assert _weights_digest(tmp_path) == reference["weights"]
    assert _per(tmp_path) == reference["per"]


def test_sigterm_during_the_second_job_of_a_sweep_ends_the_job_and_the_parent_killed(reference):
    """In the reference workspace: job 0 is the reference run (its stages cached) and finishes,
    job 1 is interrupted after its first saved epoch."""
    import mlflow

    cwd = reference["cwd"]
    (cwd / "mlflow.db").rename(cwd / "reference.db")  # a store of its own for this sweep
    work = cwd / "cache" / "train"

    def second_job_trains(proc) -> bool:
        return bool(list(cwd.glob("multirun/*/*/1_*"))) and bool(list(work.glob(".work-*/last.pt")))

    sweep = ("experiment=smoke", "progress=false", "train.epochs=4,12", "-m")  # job 0: all stages cached
    _interrupt_when(cwd, second_job_trains, "second job training", args=sweep, runs=("FINISHED", "KILLED", "KILLED"))
    mlflow.set_tracking_uri(f"sqlite:///{cwd / 'mlflow.db'}")
    runs = mlflow.search_runs(experiment_names=["lstm_exp"], output_format="list")
    (parent,) = [r for r in runs if r.data.tags.get("lstm_exp.role") == "sweep"]
    jobs = {r.data.tags["lstm_exp.job_num"]: r for r in runs if r.data.tags.get("lstm_exp.role") == "job"}
    assert parent.info.status == "KILLED"
    assert {num: r.info.status for num, r in jobs.items()} == {"0": "FINISHED", "1": "KILLED"}
    assert all(r.data.tags["mlflow.parentRunId"] == parent.info.run_id for r in jobs.values())


# -- the work folder a rerun would resume from --------------------------------------------------
UNITS = ["blank", "UNK", "a", "b", "c"]
TINY = ModelConfig(name="tiny", conv_channels=[4, 4], lstm_layers=1, hidden=8, dropout=0.0)


def _examples(count: int, seed: int) -> list:
    rng = np.random.default_rng(seed)
    return [Example(f"u{i}", rng.standard_normal((12, 243)).astype(np.float32),
                    rng.integers(2, len(UNITS), size=3).astype(np.int64)) for i in range(count)]


def _train(epochs: int) -> TrainConfig:
    return TrainConfig(epochs=epochs, batch_size=4, patience=0, num_threads=1, device="cpu", seed=3)


def test_an_unreadable_training_state_is_reported_and_training_starts_afresh(tmp_path, caplog):
    train, dev = _examples(8, 0), _examples(4, 1)
    fresh, work = tmp_path / "fresh", tmp_path / "work"
    fit(TINY, _train(2), UNITS, train, dev, fresh, progress=False)
    fit(TINY, _train(1), UNITS, train, dev, work, progress=False)  # an earlier run's epoch 1 ...
    last = work / "last.pt"
    last.write_bytes(last.read_bytes()[: last.stat().st_size // 2])  # ... its state truncated

    with caplog.at_level(logging.WARNING, logger="lstm_exp.model.train"):
        summary = fit(TINY, _train(2), UNITS, train, dev, work, progress=False)  # resume is the default

    assert _train(2).resume
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(str(last) in w and "starts afresh" in w for w in warnings), warnings
    assert summary["resumed_from"] == 0 and summary["epochs"] == 2
    assert [json.loads(line)["epoch"] for line in (work / "train_log.jsonl").read_text().splitlines()] == [1, 2]
    a, b = (torch.load(d / "last.pt", weights_only=True)["model"] for d in (fresh, work))
    assert all(torch.equal(a[k], b[k]) for k in a)  # the same as training from nothing


@pytest.mark.parametrize("overrides, resumes", [
    ((), True),                                   # a plain rerun resumes (train.resume defaults to true)
    (("force=true",), False),                     # force=true (stage=all) trains afresh
    (("force=true", "stage=train"), False),
    (("force=true", "stage=export"), True),       # forcing a later stage keeps the training
    (("train.resume=false",), False),
])
def test_the_train_work_folder_is_resumed_unless_forced(compose_config, tmp_path, monkeypatch, overrides, resumes):
    from lstm_exp.experiment import validate
    from lstm_exp.pipeline import Pipeline, _plain, _without

    exp = validate(compose_config("experiment=smoke", *overrides))
    pipeline = Pipeline(exp)
    pipeline.__dict__["prepared_dir"] = tmp_path / "prepared"  # the train stage's input, not needed here
    pipeline.keys["prepare"] = "0" * 16
    config = {"model": _plain(exp.model), "train": _without(_plain(exp.train), "resume")}
    work = pipeline.cache.root / "train" / f".work-{pipeline._key('train', config, ['0' * 16])}"
    work.mkdir(parents=True)
    (work / "last.pt").write_bytes(b"an interrupted run's state")
    seen = {}

    def train_model(model_cfg, train_cfg, prepared_dir, out_dir, progress):
        seen["work"], seen["kept"] = out_dir, (out_dir / "last.pt").is_file()
        (out_dir / "model.pt").write_bytes(b"weights")
        return {}

    monkeypatch.setattr("lstm_exp.model.train.train_model", train_model)
    assert pipeline.checkpoint.read_bytes() == b"weights"
    assert seen == {"work": work, "kept": resumes}
    assert not work.exists()  # moved into the cache entry
