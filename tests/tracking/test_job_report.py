"""JobReport: typed parts from flat metrics, unknown keys kept, missing keys None, JSON round trip;
SweepSummary: table, failures, plots with the guide's reference points; config fingerprints."""
from __future__ import annotations

import csv
import io

import pytest

from lstm_exp.report import JobReport, SweepSummary
from lstm_exp.report.plots import matching_reference, write_plots

METRICS = {
    "per": 5.5, "cer": 4.25, "per_recipe": 5.6, "cer_recipe": 6.0, "substitutions": 10, "deletions": 3,
    "insertions": 2, "ref_phones": 300, "utterances": 12, "batches": 3,
    "infer_ms_mean": 3.0, "infer_ms_p50": 2.5, "infer_ms_p90": 4.0, "infer_ms_p99": 5.0, "infer_ms_min": 2.0,
    "infer_ms_max": 5.1, "infer_ms_std": 0.5, "e2e_ms_p50": 2.7, "decode_ms_total": 40.0,
    "throughput_utt_s": 123.0, "rtf": 0.01, "host_peak_rss_mb": 512.0, "cold_start_ms": 80.0,
    "parity_per_delta": 0.0, "brand_new_metric": 7.0,
}


def _report(**kw) -> JobReport:
    identity = dict(variant="onnxruntime-cpu-fp32", backend="onnxruntime", batch=4, split="dev", decode="greedy",
                    batching="longest", precision="fp32")
    identity.update(kw)
    return JobReport.from_metrics(METRICS, **identity)


def test_known_keys_go_to_typed_parts_and_unknown_ones_to_extra():
    r = _report()
    assert r.accuracy.per == 5.5 and r.accuracy.cer_recipe == 6.0
    assert r.errors.substitutions == 10 and r.errors.unk_ref_phones is None
    assert (r.infer_ms.p50, r.infer_ms.p99, r.infer_ms.max) == (2.5, 5.0, 5.1)
    assert r.e2e_ms.p50 == 2.7 and r.e2e_ms.p99 is None
    assert r.decode_ms.total == 40.0
    assert r.throughput.utt_s == 123.0 and r.memory.host_peak_rss_mb == 512.0 and r.memory.device_peak_mem_mb is None
    assert r.timing.cold_start_ms == 80.0
    assert r.extra == {"parity_per_delta": 0.0, "brand_new_metric": 7.0}
    # every metric goes back out, new ones included
    assert r.metrics() == {k: float(v) for k, v in METRICS.items()}


def test_json_round_trip(tmp_path):
    r = _report(run_id="abc", stage_keys={"train": "k1"}, stage_summaries={"train": {"epochs": 1}})
    path = r.write(tmp_path / "report.json")
    assert JobReport.from_json(path) == r
    assert JobReport.from_json(r.to_json()) == r


def test_missing_optional_metrics_do_not_crash_the_summary():
    r = JobReport.from_metrics({"per": 10.0}, variant="torch-cpu-fp32", batch=1)
    text = "\n".join(r.summary_lines())
    assert "PER 10.00%" in text and "n/a" in text and "WER" in text
    failed = JobReport(variant="x", status="FAILED", error="batch=0 is impossible")
    assert "FAILED: batch=0 is impossible" in failed.summary_lines()[-1]


def test_sweep_summary_table_and_failures(tmp_path):
    ok = [_report(job_num=i, batch=b, run_id=f"r{i}") for i, b in enumerate((1, 4))]
    bad = JobReport(variant="torch-cpu-fp32", batch=0, status="FAILED", error="batch=0 is impossible", job_num=2,
                    overrides="batch=0")
    summary = SweepSummary(reports=[bad, *ok])
    rows = list(csv.DictReader(io.StringIO(summary.to_csv())))
    assert [r["job"] for r in rows] == ["0", "1", "2"]
    assert rows[0]["variant"] == "onnxruntime-cpu-fp32" and rows[0]["PER %"] == "5.50" and rows[0]["utt/s"] == "123.0"
    assert rows[2]["status"] == "FAILED"
    assert summary.failed and summary.failures == ["job 2: batch=0: batch=0 is impossible"]
    md = summary.to_markdown()
    assert "| 2 | torch-cpu-fp32 | 0 |" in md and "1 job(s) failed" in md and "batch=0 is impossible" in md
    written = summary.write(tmp_path)
    assert {p.name for p in written} == {"summary.csv", "summary.md"} | {
        f"{plot}.{fmt}" for plot in ("latency_vs_batch", "throughput_vs_batch", "per_by_variant") for fmt in ("png", "svg")}


def test_plots_draw_the_guides_figures_only_where_the_configuration_matches(tmp_path):
    import matplotlib.pyplot as plt

    cpu = [_report(batch=b) for b in (1, 4)]
    assert matching_reference(cpu) == []
    acl = [_report(variant="acl-om-fp16", backend="acl", batch=b) for b in (1, 4, 8, 16, 32)]
    refs = matching_reference(cpu + acl)
    assert sorted(p.ms_per_batch for p in refs) == [179.183, 187.361, 195.763, 202.751, 260.119]
    gpu = matching_reference([_report(variant="onnxruntime-cuda-fp32", batch=16)])
    assert [(p.batch, p.ms_per_batch, p.utt_s) for p in gpu] == [(16, 92.33, 173.3)]
    for path in [p for p in write_plots(cpu + acl, tmp_path) if p.suffix == ".png"]:
        image = plt.imread(path)
        assert image.ndim == 3 and image.shape[0] > 200 and image.shape[1] > 300


def test_fingerprint_ignores_run_only_keys_and_sees_the_rest():
    from lstm_exp.tracking.fingerprint import config_fingerprint

    base = {"batch": 4, "backend": {"name": "torch"}, "tracking": {"run_name": None}, "progress": True,
            "force": False, "paths": {"root": "/a"}}
    same = {**base, "tracking": {"run_name": "mine"}, "progress": False, "paths": {"root": "/b"}}
    assert config_fingerprint(base) == config_fingerprint(same)
    assert config_fingerprint(base) != config_fingerprint({**base, "batch": 8})
    assert len(config_fingerprint(base)) == 64


@pytest.mark.parametrize("group,key", [("model", "checkpoint"), ("model", "units_file"), ("export", "onnx_file"),
                                       ("data", "cmvn"), ("data", "dev_speakers_list"), ("data", "test_speakers_list")])
def test_fingerprint_sees_a_named_file_replaced_at_the_same_path(tmp_path, group, key):
    """A sweep must not reuse a run after the file a config names was replaced."""
    import os

    from lstm_exp.tracking.fingerprint import config_fingerprint

    path = tmp_path / "file"
    path.write_bytes(b"one")
    config = {"batch": 4, group: {key: str(path)}}
    before = config_fingerprint(config)
    assert config_fingerprint(config) == before
    path.write_bytes(b"other content")
    os.utime(path, ns=(1, 1))
    assert config_fingerprint(config) != before


@pytest.mark.parametrize("target, n_jobs, expected", [
    ("hydra._internal.core_plugins.basic_launcher.BasicLauncher", None, "1"),
    ("hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher", 2, "2"),
    ("hydra_plugins.hydra_submitit_launcher.submitit_launcher.LocalLauncher", None, "all"),
    ("hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher", None, "16"),
    ("hydra_plugins.hydra_ray_launcher.ray_launcher.RayLauncher", None, "all"),
])
def test_launcher_info_counts_concurrent_jobs(target, n_jobs, expected):
    from omegaconf import OmegaConf

    from lstm_exp.tracking.sweep import launcher_info

    cfg = OmegaConf.create({"_target_": target, **({"n_jobs": n_jobs} if n_jobs else {}),
                            **({"array_parallelism": 16} if "Slurm" in target else {})})
    assert launcher_info(cfg)[1] == expected
