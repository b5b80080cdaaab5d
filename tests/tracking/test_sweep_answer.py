"""The sweep's answer in the store (issue 18): a 4-job smoke sweep, then the same sweep with one
more batch size. The second parent holds all 6 jobs (4 REUSED copies that point at the earlier
measurement, 2 new), every run name is unique within its sweep, the parent carries its
description, headline metrics and per-variant series, and the saved view's tag decodes to a filter
that selects exactly the sweep's runs with the swept params and the answer's metrics as columns.
``python -m lstm_exp.report`` lists and compares the sweeps and refuses an empty one."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lstm_exp.tracking import views

CHECKOUT = Path(__file__).resolve().parents[2]
SMOKE = ("experiment=smoke", "progress=false", "backend=torch,onnxruntime")
FIRST, SECOND = "batch=1,4", "batch=1,4,2"


def cli_env() -> dict[str, str]:
    """The environment of a user's shell in a fresh folder: the default store, this checkout."""
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env["PYTHONPATH"] = os.pathsep.join([str(CHECKOUT), *filter(None, [env.get("PYTHONPATH")])])
    return env


def _run(cwd: Path, module: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, env=cli_env(), capture_output=True,
                          text=True, timeout=900)
    if check and proc.returncode != 0:
        raise AssertionError(f"{module} {' '.join(args)} exited {proc.returncode}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """Two sweeps in one folder; returns (folder, client, [first parent, second parent], stdout of the second)."""
    from mlflow.tracking import MlflowClient

    root = tmp_path_factory.mktemp("sweep_answer")
    _run(root, "lstm_exp", *SMOKE, FIRST, "-m")
    second = _run(root, "lstm_exp", *SMOKE, SECOND, "-m")
    client = MlflowClient(f"sqlite:///{root / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("lstm_exp")
    parents = client.search_runs([experiment.experiment_id], "tags.`lstm_exp.role` = 'sweep'",
                                 order_by=["attributes.start_time ASC"])
    return root, client, parents, second.stdout


def _children(client, parent):
    return client.search_runs([parent.info.experiment_id], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")


def test_the_second_parent_holds_every_job_reused_ones_as_children(store):
    _, client, (first, second), _ = store
    earlier = {r.info.run_id for r in _children(client, first)}
    children = _children(client, second)
    assert len(earlier) == 4 and len(children) == 6
    reused = [c for c in children if c.data.tags.get("lstm_exp.status") == "REUSED"]
    new = [c for c in children if "lstm_exp.reused_from" not in c.data.tags]
    assert len(reused) == 4 and len(new) == 2 and {c.data.params["batch"] for c in new} == {"2"}
    assert {c.data.tags["lstm_exp.reused_from"] for c in reused} == earlier
    original = {r.info.run_id: r for r in _children(client, first)}
    for child in reused:
        source = original[child.data.tags["lstm_exp.reused_from"]]
        assert child.info.run_name == source.info.run_name + " (reused)"
        assert child.data.metrics["per"] == source.data.metrics["per"]
        assert child.data.params["variant"] == source.data.params["variant"]
        assert child.data.tags["lstm_exp.measured_at"].startswith("20")
        assert {f.path for f in client.list_artifacts(child.info.run_id)} >= {"report.json"}
    for child in children:
        assert child.info.status == "FINISHED"
        assert {"per", "infer_ms_p50", "throughput_utt_s"} <= set(child.data.metrics)
        assert child.data.tags["lstm_exp.sweep"] == second.info.run_id


def test_run_names_are_unique_within_each_sweep(store):
    _, client, parents, _ = store
    for parent in parents:
        names = [c.info.run_name for c in _children(client, parent)]
        assert len(set(names)) == len(names), names


def test_a_batching_sweep_names_each_job_after_every_swept_axis():
    from lstm_exp.tracking.sweep import job_run_name, parent_run_name, swept_keys

    swept = swept_keys(["backend=torch", "batch=16", "infer.batching=longest,sorted,fixed", "decode=greedy,beam"])
    assert swept == ["infer.batching", "decode"]
    identity = {"variant": "onnxruntime-cpu-fp32", "batch": 16, "split": "dev"}
    names = {job_run_name(identity, swept, ["batch=16", f"infer.batching={b}", f"decode={d}"])
             for b in ("longest", "sorted", "fixed") for d in ("greedy", "beam")}
    assert len(names) == 6 and "onnxruntime-cpu-fp32-b16-sorted-beam-dev" in names
    assert parent_run_name(["backend", "batch"]).startswith("sweep backend x batch 20")


def test_the_parent_carries_the_answer(store):
    _, client, (_, second), stdout = store
    tags = second.data.tags
    assert second.info.run_name.startswith("sweep backend x batch ")
    description = tags["mlflow.note.content"]
    assert "| variant |" in description and "fastest" in description and "against torch-cpu-fp32" in description
    assert second.data.metrics["best_utt_s"] > 0
    assert tags["lstm_exp.best_variant"] in ("torch-cpu-fp32", "onnxruntime-cpu-fp32")
    series = client.get_metric_history(second.info.run_id, views.series_key("throughput_utt_s", "torch-cpu-fp32"))
    assert sorted(m.step for m in series) == [1, 2, 4]
    # the terminal: a table within 120 columns, the conclusions and the view's URL
    table = stdout[stdout.index("sweep backend x batch"):stdout.index("lstm_exp: sweep summary")]
    assert max(len(line) for line in table.splitlines()) <= 120 and "fastest" in table
    assert f"viewStateShareKey={second.info.run_id}" in stdout and "workflowType=machine_learning" in stdout


def test_the_saved_view_selects_exactly_the_sweeps_runs_with_the_answers_columns(store):
    _, client, (first, second), _ = store
    experiment = client.get_experiment(second.info.experiment_id)
    name, state = views.read_view(experiment.tags[views.VIEW_TAG_PREFIX + second.info.run_id])
    assert name == second.info.run_name
    assert experiment.tags[views.VIEW_TAG_PREFIX + second.info.run_id].count('"state": "deflate;') == 1
    selected = client.search_runs([experiment.experiment_id], state["searchFilter"])
    expected = {c.info.run_id for c in _children(client, second)} | {second.info.run_id}
    assert {r.info.run_id for r in selected} == expected
    assert {r.info.run_id for r in selected}.isdisjoint(c.info.run_id for c in _children(client, first))
    columns = state["selectedColumns"]
    assert {"params.`variant`", "params.`batch`", "metrics.`per`", "metrics.`infer_ms_p50`",
            "metrics.`infer_ms_p99`", "metrics.`throughput_utt_s`"} <= set(columns)
    charts = state["compareRunCharts"]
    assert [c["type"] for c in charts] == ["LINE", "LINE", "BAR"]
    assert set(charts[0]["selectedMetricKeys"]) == {views.series_key("throughput_utt_s", v)
                                                    for v in ("torch-cpu-fp32", "onnxruntime-cpu-fp32")}
    # the experiment-wide view; writing a view again updates it (one tag, same creation time)
    all_name, all_state = views.read_view(experiment.tags[views.VIEW_TAG_PREFIX + views.ALL_SWEEPS_VIEW])
    assert all_state["searchFilter"] == "tags.`lstm_exp.role` = 'job'" and "all sweeps" in all_name
    before = experiment.tags[views.VIEW_TAG_PREFIX + views.ALL_SWEEPS_VIEW]
    views.write_view(client, experiment.experiment_id, views.ALL_SWEEPS_VIEW, all_name, all_state)
    after = client.get_experiment(experiment.experiment_id).tags[views.VIEW_TAG_PREFIX + views.ALL_SWEEPS_VIEW]
    assert json.loads(after)["createdAt"] == json.loads(before)["createdAt"]


def test_report_lists_compares_and_refuses_an_empty_sweep(store):
    root, client, (first, second), _ = store
    listing = _run(root, "lstm_exp.report", "--list").stdout
    assert second.info.run_id in listing and "2 FINISHED, 4 REUSED" in listing and "backend,batch" in listing
    compared = _run(root, "lstm_exp.report", "--compare", first.info.run_id, "latest").stdout
    assert compared.count("| torch-cpu-fp32 |") == 2 and "only in B: onnxruntime-cpu-fp32 batch=2" in compared
    empty = client.create_run(first.info.experiment_id, run_name="sweep stopped early",
                              tags={"lstm_exp.role": "sweep"})
    client.set_terminated(empty.info.run_id, "KILLED")
    latest = _run(root, "lstm_exp.report", "--out", str(root / "rep")).stdout
    # latest: the newest sweep with a finished job, not the empty one started after it
    assert "| 5 | onnxruntime-cpu-fp32 | 2 |" in latest and second.info.run_name in latest
    proc = _run(root, "lstm_exp.report", "--sweep", empty.info.run_id, check=False)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.strip().splitlines() == [
        f"lstm_exp.report: error: sweep {empty.info.run_id} (sweep stopped early) has no job at all: it was stopped "
        "before any job started; pick another with --sweep (see --list)"]


def test_a_baseline_the_sweep_does_not_have_is_one_line_and_a_failed_parent(store):
    root, client, parents, _ = store
    before = set(p.info.run_id for p in parents)
    proc = _run(root, "lstm_exp", *SMOKE, SECOND, "report.baseline=tpu-fp8", "-m", check=False)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("lstm_exp: error:")]
    assert errors == ["lstm_exp: error: report.baseline=tpu-fp8 is not a variant of this sweep: write one of "
                      "torch-cpu-fp32, onnxruntime-cpu-fp32, or leave it null (the first variant)"]
    experiment_id = parents[0].info.experiment_id
    (parent,) = [p for p in client.search_runs([experiment_id], "tags.`lstm_exp.role` = 'sweep'")
                 if p.info.run_id not in before and p.info.run_name != "sweep stopped early"]
    assert parent.info.status == "FAILED"
    assert len(_children(client, parent)) == 6  # every job still ran (reused): nothing earlier is lost
