"""Where a sweep's job finds its folders and its store (issue #20: jobs run by a Ray head in the
head's working directory wrote into the wrong folder and recorded into the head's store).  The
folders are made absolute against the launch folder before any job starts (``new_folder``,
``cli_args.anchored``), so a job in another working directory writes where the sweep looks; a
tracked job that cannot find its sweep's ``parent_run.json`` is refused with one line
(``require_sweep_record``) instead of recording into its own environment's store; and the lookup
of an earlier measurement (``tracking.mlflow_sink._reuse_earlier``) that meets a dead or failing store is one
tracking line, also from the command (``services.FailingProxy`` answers 503 to the lookup alone)."""
from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

from lstm_exp.app import new_folder
from lstm_exp.cli_args import anchored, checked_argv
from lstm_exp.config_path import config_dir
from lstm_exp.tracking.mlflow_run import MlflowRun
from lstm_exp.tracking.mlflow_sink import _reuse_earlier
from lstm_exp.tracking.store_check import HTTP_SETTINGS, StoreError, TrackingError, store_calls
from lstm_exp.tracking.store import FINGERPRINT_TAG
from lstm_exp.tracking.sweep import PARENT_FILE, SweepParent, require_sweep_record

from services import SMOKE, FailingProxy, MlflowServer, error_lines, free_port, lstm_exp

#: the issue's bound for a store where nothing listens (MLflow's own retries took 253 s)
UNREACHABLE_S = 30


def test_the_default_run_folder_is_absolute_under_the_launch_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    folder = new_folder("multirun/2026-12-03/12-00-00")
    assert folder == str(tmp_path / "multirun" / "2026-12-03" / "12-00-00") and Path(folder).is_dir()


@pytest.mark.parametrize("override, expected", [
    ("hydra.sweep.dir=my_sweep", "hydra.sweep.dir={launch}/my_sweep"),
    ("hydra.run.dir=out/run1", "hydra.run.dir={launch}/out/run1"),
    ("paths.cache_dir=../cache2", "paths.cache_dir={launch}/../cache2"),
    ("paths.root=.", "paths.root={launch}"),
    ("hydra.sweep.dir=/abs/sweep", "hydra.sweep.dir=/abs/sweep"),
    ("hydra.sweep.dir=multirun/${now:%H-%M-%S}", "hydra.sweep.dir=multirun/${now:%H-%M-%S}"),  # Hydra's to resolve
    ("data.root=relative/timit", "data.root=relative/timit"),  # not a launch-folder key
    ("batch=1,4", "batch=1,4"),
])
def test_launch_relative_folders_are_made_absolute_before_hydra(tmp_path, override, expected):
    assert anchored(override, tmp_path) == expected.replace("{launch}", str(tmp_path))


def test_the_command_line_anchors_them_with_the_other_overrides(tmp_path):
    args = checked_argv(["batch=1,2", "-m", "hydra.sweep.dir=s"], config_dir(), tmp_path)
    assert args == ["batch=1,2", f"hydra.sweep.dir={tmp_path}/s", "-m"]


def test_a_tracked_job_without_its_sweeps_record_is_refused_naming_its_folder(tmp_path):
    job_dir = tmp_path / "head-cwd" / "multirun" / "0_batch=1"
    job_dir.mkdir(parents=True)
    with pytest.raises(StoreError) as refused:
        require_sweep_record(job_dir, SweepParent.find(job_dir))
    assert str(job_dir) in str(refused.value) and PARENT_FILE in str(refused.value)
    assert len(str(refused.value).splitlines()) == 1


def test_the_lookup_of_an_earlier_measurement_on_a_dead_store_is_one_tracking_line(tmp_path, monkeypatch):
    for name, value in HTTP_SETTINGS.items():  # what the job's store check (check_store) set before the lookup
        monkeypatch.setenv(name, value)
    uri = f"http://127.0.0.1:{free_port()}"  # nothing listens: the store died after the job's check
    tracker = MlflowRun(True, uri, "lstm_exp")
    start = time.monotonic()
    with pytest.raises(TrackingError) as failed:
        _reuse_earlier(tracker, "fingerprint", None, 0, tmp_path, "job", {"lstm_exp.overrides": "batch=1"})
    elapsed = time.monotonic() - start
    message = str(failed.value)
    assert uri in message and len(message.splitlines()) == 1, message
    assert elapsed < UNREACHABLE_S, f"{elapsed:.1f} s"
    print(f"[store] reuse lookup on a dead store: {elapsed:.1f} s: {message}")


def test_a_failure_while_the_store_answers_is_not_blamed_on_the_store(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    with pytest.raises(KeyError):
        with store_calls(uri):
            raise KeyError("a bug, not the store")


def test_a_store_that_fails_the_lookup_while_answering_probes_is_one_line_from_the_command(tmp_path, smoke_cache):
    """The lookup of an earlier identical measurement (a sweep's job, before it runs) gets HTTP 503
    from the store while the store's probe still answers: before, a raw traceback; now the job ends
    with one tracking line naming the store, and the basic launcher's sweep stops, exit 1."""
    server = MlflowServer(tmp_path, f"sqlite:///{tmp_path / 'server.db'}").start()
    lookup = FINGERPRINT_TAG.encode()
    try:
        shutil.copytree(smoke_cache, tmp_path / "cache")
        with FailingProxy(server.url, lambda method, path, body: path.endswith("runs/search") and lookup in body) as proxy:
            start = time.monotonic()
            proc = lstm_exp(tmp_path, *SMOKE, "batch=1,2", "-m", env={"MLFLOW_TRACKING_URI": proxy.url})
            elapsed = time.monotonic() - start
        output = proc.stdout + proc.stderr
        assert proc.returncode == 1 and "Traceback" not in output, output[-5000:]
        (line,) = error_lines(proc)
        assert proxy.url in line and "503" in line and "python -m lstm_exp.sync" in line, line
        assert proxy.failed >= 1
        print(f"[store] reuse lookup answered 503: sweep ended in {elapsed:.1f} s: {line}")
    finally:
        server.stop()
