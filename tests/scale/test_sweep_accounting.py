"""What the sweep's end counts (lstm_exp/tracking/sweep.py): jobs launched against results that
came back (jobs run by a Ray head in its own folder left none: the sweep printed an empty table
and exited 0), and how many jobs really ran at once (measured from the runs' times, whichever
launcher ran them)."""
from __future__ import annotations

from types import SimpleNamespace

import pytest
from omegaconf import OmegaConf

from lstm_exp.tracking.sweep import SweepCallback, concurrent_jobs_measured, launched_jobs, unreturned_jobs

BASIC = "hydra._internal.core_plugins.basic_sweeper.BasicSweeper"


def _config(sweep_dir, task, sweeper=BASIC, params=None):
    return OmegaConf.create({
        "tracking": {"enabled": False},
        "hydra": {"sweep": {"dir": str(sweep_dir)}, "overrides": {"task": task},
                  "sweeper": {"_target_": sweeper, "params": params}},
    })


@pytest.mark.parametrize("task, params, expected", [
    (["batch=1,4,8,16,32", "backend=torch,onnxruntime"], None, 10),
    (["batch=1,2"], {"backend": "torch,onnxruntime,acl"}, 6),
    (["batch=4"], None, 1),
])
def test_launched_jobs_counts_the_basic_sweepers_jobs(tmp_path, task, params, expected):
    assert launched_jobs(_config(tmp_path, task, params=params)) == expected


def test_another_sweeper_is_not_counted(tmp_path):
    config = _config(tmp_path, ["batch=1,2"], sweeper="hydra_plugins.hydra_optuna_sweeper.optuna_sweeper.OptunaSweeper")
    assert launched_jobs(config) is None and unreturned_jobs(config, 0, tmp_path) == []


def test_a_sweep_whose_jobs_left_nothing_here_fails(tmp_path, capsys):
    """Jobs that ran elsewhere (another working directory, another store): no run, no job folder."""
    config = _config(tmp_path, ["batch=1,2,4"])
    assert unreturned_jobs(config, 3, tmp_path) == []
    with pytest.raises(SystemExit) as exit_info:
        SweepCallback(plots=False).on_multirun_end(config)
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert f"3 of 3 launched job(s) returned no result (no MLflow run under the parent, no job folder under {tmp_path})" in err


def _run(start, end):
    return SimpleNamespace(info=SimpleNamespace(start_time=start, end_time=end))


@pytest.mark.parametrize("intervals, expected", [
    ([(0, 10), (10, 20), (20, 30)], "1"),  # one after another (an end and a start at the same ms)
    ([(0, 10), (5, 15), (12, 20)], "2"),
    ([(0, 10), (1, 9), (2, 8), (20, 30)], "3"),
    ([(0, None)], ""),  # still running: unknown
])
def test_concurrent_jobs_is_measured_from_the_runs_times(intervals, expected):
    runs = [_run(s, e) for s, e in intervals]

    class Client:
        def search_runs(self, experiment_ids, max_results, filter_string):
            assert "p1" in filter_string
            return runs
    parent = SimpleNamespace(info=SimpleNamespace(experiment_id="0", run_id="p1"))
    assert concurrent_jobs_measured(Client(), parent) == expected


def _tracked_config(tmp_path, task):
    config = _config(tmp_path / "multirun" / "sweep", task)
    config.tracking = {"enabled": True, "tracking_uri": f"sqlite:///{tmp_path / 'mlflow.db'}",
                       "experiment_name": "lstm_exp"}
    config.hydra.launcher = {"_target_": "hydra_plugins.hydra_ray_launcher.ray_launcher.RayLauncher"}
    return config


def test_a_tracked_sweep_whose_jobs_left_nothing_fails_and_ends_its_parent_failed(tmp_path, monkeypatch, capsys):
    """A Ray head's jobs that ran in the head's folder and store: the parent has no child. The
    sweep's answer on the parent (its saved view had a chart without series) raised, Hydra turned
    it into a warning, and the sweep printed an empty table and exited 0."""
    from lstm_exp.tracking.store import client

    monkeypatch.setattr("lstm_exp.sweep_checks.check_sweep_start", lambda config, sweep_dir: None)
    config = _tracked_config(tmp_path, ["batch=1,2"])
    callback = SweepCallback(plots=True)
    callback.on_multirun_start(config)
    with pytest.raises(SystemExit) as exit_info:
        callback.on_multirun_end(config)
    assert exit_info.value.code == 1
    assert "2 of 2 launched job(s) returned no result" in capsys.readouterr().err
    parent = client(config.tracking.tracking_uri).get_run(callback.parent_run_id)
    assert parent.info.status == "FAILED"


def test_a_summary_that_fails_is_one_line_and_exit_1_not_a_warning(tmp_path, monkeypatch, capsys):
    config = _config(tmp_path, ["batch=1,2"])
    callback = SweepCallback(plots=False)

    def broken(config):
        raise IndexError("tuple index out of range")
    monkeypatch.setattr(callback, "_end_sweep", broken)
    with pytest.raises(SystemExit) as exit_info:
        callback.on_multirun_end(config)
    assert exit_info.value.code == 1
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("lstm_exp: error:")]
    assert lines == [f"lstm_exp: error: the sweep's summary failed (IndexError: tuple index out of range); the jobs' "
                     f"folders are under {tmp_path}; python -m lstm_exp.report rebuilds the table from the store"]
