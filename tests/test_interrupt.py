"""SIGTERM during training: the job exits 130 with one line, its MLflow run ends KILLED (never left
RUNNING), no partial train entry is cached, and a rerun with ``train.resume=true`` continues from
the last finished epoch to the same weights as an uninterrupted run."""
from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("espeakng_loader")

CHECKOUT = Path(__file__).resolve().parent.parent
ARGS = ["experiment=smoke", "train.epochs=4", "progress=false"]


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
    import torch

    (model,) = list((cwd / "cache" / "train").glob("[0-9a-f]*/model.pt"))
    state = torch.load(model, weights_only=True)["state_dict"]
    digest = hashlib.sha256()
    for key in sorted(state):
        digest.update(key.encode())
        digest.update(state[key].numpy().tobytes())
    return digest.hexdigest()


def _statuses(cwd: Path) -> list[str]:
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{cwd / 'mlflow.db'}")
    return sorted(r.info.status for r in mlflow.search_runs(experiment_names=["lstm_exp"], output_format="list"))


def test_sigterm_during_training_ends_killed_and_resume_reaches_the_same_weights(tmp_path):
    reference, interrupted = tmp_path / "reference", tmp_path / "interrupted"
    reference.mkdir()
    interrupted.mkdir()
    _run(reference, *ARGS)

    proc = subprocess.Popen([sys.executable, "-m", "lstm_exp", *ARGS], cwd=interrupted, env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        logs = list((interrupted / "cache" / "train").glob(".work-*/train_log.jsonl"))
        if logs and logs[0].read_text().count("\n") >= 1:  # one epoch finished, more to go
            break
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=300)

    assert proc.returncode == 130, stderr[-3000:]
    assert "interrupted" in stderr and "Traceback" not in stderr, stderr[-3000:]
    assert _statuses(interrupted) == ["KILLED"]
    assert not list((interrupted / "cache" / "train").glob("[0-9a-f]*/model.pt"))  # no partial entry reused
    assert list((interrupted / "cache" / "prepare").glob("[0-9a-f]*/_stage.json"))  # complete stages stay

    resumed = _run(interrupted, *ARGS, "train.resume=true")
    assert "corpus: cached" in resumed.stderr + resumed.stdout
    assert _statuses(interrupted) == ["FINISHED", "KILLED"]
    (stage,) = list((interrupted / "cache" / "train").glob("[0-9a-f]*/_stage.json"))
    assert json.loads(stage.read_text())["summary"]["resumed_from"] >= 1  # continued, not restarted
    assert _weights_digest(interrupted) == _weights_digest(reference)
