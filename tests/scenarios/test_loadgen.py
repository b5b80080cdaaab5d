"""LoadGen scenarios on the smoke model (one tiny training per module): each scenario through
LoadGen for torch and onnxruntime, single-stream accuracy mode's PER against offline_batches at
batch=1, the acl simulator in single_stream, the batcher's grouping, LoadGen's logs as parsed."""
from __future__ import annotations

import importlib
import importlib.util
import json
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

pytest.importorskip("espeakng_loader")
pytest.importorskip("mlperf_loadgen")

from lstm_exp.experiment import run_experiment  # noqa: E402
from lstm_exp.scenarios.batcher import LengthBatcher  # noqa: E402
from lstm_exp.scenarios.loadgen import LOG_FILES, loadgen_metrics, read_detail_log  # noqa: E402

ACL_SIM = Path(__file__).resolve().parents[1] / "acl_sim"
#: LoadGen's minimums cut to a few tenths of a second: the tests check the plumbing, not the numbers
QUICK = ["experiment=smoke", "progress=false", "scenario.min_duration_ms=300", "scenario.min_query_count=8"]
#: the headline figure of each scenario
HEADLINE = {"single_stream": "p90_ms", "multi_stream": "p99_ms", "server": "p99_ms", "offline": "samples_s"}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("scenarios")


@pytest.fixture
def job(compose_config, workdir, tmp_path):
    """``job(*overrides)`` -> (JobReport, job folder): one job through run_experiment, cache shared by the module."""
    def _job(*overrides):
        job_dir = tmp_path / f"job{len(list(tmp_path.iterdir()))}"
        report = run_experiment(compose_config(*QUICK, f"paths.root={workdir}", *overrides), job_dir=job_dir)
        return report, job_dir
    return _job


@pytest.mark.parametrize("backend", ["torch", "onnxruntime"])
@pytest.mark.parametrize("scenario", ["single_stream", "multi_stream", "server", "offline"])
def test_each_scenario_runs_the_smoke_model_through_loadgen(job, backend, scenario):
    report, job_dir = job(f"scenario={scenario}", f"backend={backend}", "batch=4", "scenario.samples_per_query=4")
    lg = report.loadgen
    assert report.scenario == scenario and report.variant.startswith(backend)
    assert getattr(lg, HEADLINE[scenario]) > 0 and lg.queries >= 1
    assert report.accuracy.per is not None and report.errors.utterances == 12  # accuracy mode: every utterance
    assert report.metrics()[f"loadgen_{HEADLINE[scenario]}"] == getattr(lg, HEADLINE[scenario])  # an MLflow metric
    for name in LOG_FILES:
        assert (job_dir / name).stat().st_size > 0, name
    assert len(json.loads((job_dir / "mlperf_log_accuracy.json").read_text())) >= 12
    timings = (job_dir / "timings.tsv").read_text().splitlines()
    assert len(timings) - 1 == report.noise.timed_batches and report.infer_ms.p50 > 0
    if scenario == "server":
        assert lg.target_qps == 20.0 and lg.scheduled_qps > 0 and lg.latency_bound_ms == 1000.0
        assert lg.bound_met == float(lg.p99_ms <= 1000.0)
    if scenario == "single_stream":  # every utterance alone
        assert {row.split("\t")[2] for row in timings[1:]} == {"1"}


def test_single_stream_accuracy_per_equals_offline_batches_at_batch_1(job):
    offline, offline_dir = job("batch=1")
    single, single_dir = job("scenario=single_stream", "scenario.mode=accuracy", "batch=8")
    assert single.scenario == "single_stream" and offline.scenario == "offline_batches"
    assert single.accuracy.per == offline.accuracy.per and single.accuracy.cer == offline.accuracy.cer
    assert (single_dir / "hyp.trn").read_text() == (offline_dir / "hyp.trn").read_text()
    assert single.loadgen.queries is None  # accuracy mode only: no performance figures


def test_server_reports_a_missed_bound_in_performance_mode(job):
    report, job_dir = job("scenario=server", "scenario.mode=performance", "scenario.target_qps=50",
                          "scenario.latency_bound_ms=0.001")
    assert report.loadgen.bound_met == 0.0 and report.loadgen.target_qps == 50.0  # no batch answers in 1 us
    assert report.accuracy.per is None and not (job_dir / "mlperf_log_accuracy.json").read_text().strip("[]\n ")


@pytest.fixture
def simulated_acl(monkeypatch):
    """The pyacl simulator (tests/acl_sim/helpers.py: the one fixture body tests/backends/test_acl.py uses too)."""
    spec = importlib.util.spec_from_file_location("acl_sim_helpers", ACL_SIM / "helpers.py")
    helpers = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(helpers)
    yield from helpers.simulated_acl(monkeypatch)


def test_acl_simulator_runs_single_stream(job, simulated_acl):
    onnx, _ = job("batch=1", "infer.pad_to=390")
    report, job_dir = job("scenario=single_stream", "backend=acl", f"backend.atc.atc_path={ACL_SIM / 'fake_atc'}",
                          "backend.atc.precision_mode=force_fp32", "batch=1")
    assert report.variant == "acl-om-fp32" and report.loadgen.p90_ms > 0
    assert report.accuracy.per == pytest.approx(onnx.accuracy.per, abs=1e-9)  # both padded to 390 frames, alone
    assert (job_dir / "mlperf_log_summary.txt").read_text().count("SingleStream") >= 1


def _samples(*indices):
    return [SimpleNamespace(index=i, id=100 + i) for i in indices]


def test_batcher_groups_the_oldest_with_its_nearest_lengths():
    batcher = LengthBatcher([10, 90, 12, 50, 11, 88], max_batch=3, timeout_s=0.0)
    batcher.put(_samples(0, 1, 2, 3, 4, 5))
    groups = [[s.index for s in batcher.next_group()] for _ in range(2)]
    assert groups == [[0, 2, 4], [1, 3, 5]]


def test_batcher_waits_up_to_its_timeout_for_a_fuller_batch():
    batcher = LengthBatcher([10, 10, 10], max_batch=2, timeout_s=0.5)
    batcher.put(_samples(0))
    threading.Timer(0.05, batcher.put, args=(_samples(1),)).start()
    assert [s.index for s in batcher.next_group()] == [0, 1]  # the second came within the timeout
    batcher.put(_samples(2))
    started = time.perf_counter()
    assert [s.index for s in batcher.next_group()] == [2]  # alone after the timeout
    assert time.perf_counter() - started >= 0.45
    batcher.close()
    assert batcher.next_group() is None


def test_detail_log_becomes_loadgen_metrics(tmp_path):
    lines = [{"key": "result_validity", "value": "VALID"}, {"key": "result_90.00_percentile_latency_ns", "value": 2500000},
             {"key": "result_scheduled_samples_per_sec", "value": 19.5}, {"key": "result_perf_constraints_met", "value": False},
             {"key": "early_stopping_latency_ss", "value": 3000000}]
    path = tmp_path / "mlperf_log_detail.txt"
    path.write_text("".join(f":::MLLOG {json.dumps(line)}\n" for line in lines))
    assert loadgen_metrics(read_detail_log(path)) == {
        "loadgen_p90_ms": 2.5, "loadgen_scheduled_qps": 19.5, "loadgen_early_stopping_ms": 3.0, "loadgen_valid": 1.0,
        "loadgen_constraints_met": 0.0}


def test_mlperf_rules_take_loadgens_official_minimums_and_say_so():
    import mlperf_loadgen as lg

    from conf_schemas.scenario import ScenarioConfig
    from lstm_exp.scenarios.server import Server

    job = SimpleNamespace(examples=[None] * 12, tags={}, batch=4, pad_to=None)
    official = Server(ScenarioConfig(name="server", mlperf_rules=True), job)
    settings = official._settings(lg.TestMode.PerformanceOnly)
    assert settings.min_duration_ms == 600000 and settings.min_query_count >= 100  # LoadGen's mlperf.conf for rnnt
    assert settings.performance_sample_count_override == 12 and settings.server_target_latency_ns == 1_000_000_000
    official._tag({"loadgen_valid": 0.0})
    assert job.tags["lstm_exp.mlperf_rules"] == "true" and job.tags["lstm_exp.loadgen_result"] == "INVALID"
    assert job.tags["lstm_exp.scenario_padding"].startswith("arrivals grouped by length into batches of up to 4")
    quick = Server(ScenarioConfig(name="server"), SimpleNamespace(examples=[None] * 12, tags={}))
    settings = quick._settings(lg.TestMode.PerformanceOnly)
    assert (settings.min_duration_ms, settings.min_query_count) == (2000, 64)
