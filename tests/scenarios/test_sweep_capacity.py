"""A sweep over scenario.target_qps in the sweep summary: the scenario columns, the server
capacity conclusion (the highest target whose p99 met the bound) and the latency-vs-QPS plot;
a sweep of offline_batches jobs keeps its columns."""
from __future__ import annotations

from lstm_exp.report.job import JobReport
from lstm_exp.report.sweep import SweepSummary


def _server(job: int, target: float, scheduled: float, p99: float, bound: float = 1000.0) -> JobReport:
    report = JobReport.from_metrics({
        "per": 20.0, "throughput_utt_s": 100.0, "infer_ms_p50": 5.0, "loadgen_target_qps": target,
        "loadgen_scheduled_qps": scheduled, "loadgen_samples_s": scheduled, "loadgen_p50_ms": p99 / 3,
        "loadgen_p99_ms": p99, "loadgen_latency_bound_ms": bound, "loadgen_bound_met": float(p99 <= bound),
        "loadgen_queries": 100.0}, variant="onnxruntime-cpu-fp32", batch=16, split="dev", scenario="server")
    report.job_num = job
    return report


def test_server_capacity_is_the_highest_target_meeting_the_bound(tmp_path):
    summary = SweepSummary(reports=[_server(0, 10, 9.8, 120.0), _server(1, 20, 20.3, 450.0),
                                    _server(2, 40, 39.1, 5200.0)])
    (line,) = [c for c in summary.conclusions() if c.startswith("server capacity")]
    assert "highest passing target 20.0 QPS" in line and "40.0 missed it (p99 5200.00 ms)" in line
    assert "p99 <= 1000 ms" in line
    header = summary.to_csv().splitlines()[0].split(",")
    assert {"scenario", "target QPS", "LG QPS", "LG p99 ms", "bound met"} <= set(header)
    assert "NO" in summary.to_terminal() and max(len(l) for l in summary.to_terminal().splitlines()) <= 120
    written = {p.name for p in summary.write(tmp_path)}
    assert {"latency_vs_qps.png", "latency_vs_qps.svg"} <= written


def test_no_passing_target_is_said(tmp_path):
    summary = SweepSummary(reports=[_server(0, 10, 9.8, 1500.0), _server(1, 20, 20.3, 2500.0)])
    (line,) = [c for c in summary.conclusions() if c.startswith("server capacity")]
    assert "no target QPS met the bound" in line


def test_offline_batches_sweep_has_no_scenario_columns(tmp_path):
    reports = [JobReport.from_metrics({"per": 20.0, "throughput_utt_s": v}, variant="torch-cpu-fp32", batch=b,
                                      split="dev") for b, v in ((1, 10.0), (4, 30.0))]
    summary = SweepSummary(reports=reports)
    assert "scenario" not in summary.to_csv().splitlines()[0]
    assert not [c for c in summary.conclusions() if c.startswith("server capacity")]
    assert "latency_vs_qps.png" not in {p.name for p in summary.write(tmp_path)}


def test_a_capacity_sweeps_saved_view_shows_the_target_qps_axis_and_loadgen_metrics(tmp_path):
    """The sweep's saved view in a real (SQLite) store: the swept target QPS is a column beside
    variant and batch, and LoadGen's figures are metric columns; offline_batches sweeps keep theirs."""
    from mlflow.tracking import MlflowClient

    from lstm_exp.tracking import views
    from lstm_exp.tracking.sweep import _write_views

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    parent = client.create_run(client.create_experiment("capacity"), run_name="sweep target_qps")
    summary = SweepSummary(reports=[_server(0, 10, 9.8, 120.0), _server(1, 20, 20.3, 450.0)])
    view_id = _write_views(client, parent, summary)
    tag = client.get_experiment(parent.info.experiment_id).tags[views.VIEW_TAG_PREFIX + view_id]
    _, state = views.read_view(tag)
    columns = state["selectedColumns"]
    assert views.column("params", "scenario.target_qps") in columns
    assert {views.column("metrics", m) for m in ("loadgen_p99_ms", "loadgen_scheduled_qps", "loadgen_bound_met")} \
        <= set(columns)
    _, every_job = views.read_view(client.get_experiment(parent.info.experiment_id).tags[
        views.VIEW_TAG_PREFIX + views.ALL_SWEEPS_VIEW])
    assert views.column("params", "scenario") in every_job["selectedColumns"]
