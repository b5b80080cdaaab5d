"""Plots a reader trusts (issue 18): log axes where values span more than 10x, the axis the sweep
varies when it varies no batch size, the guide's figures always drawn, PNG at 150 dpi plus SVG;
conclusions and the 120-column terminal table of SweepSummary."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from lstm_exp.report import JobReport, SweepSummary  # noqa: E402
from lstm_exp.report.plots import GUIDE, _log_if_wide, write_plots, x_axis  # noqa: E402


def _job(variant: str, batch: int, p50: float, utt_s: float, per: float = 4.0, decode: str = "greedy", **extra):
    metrics = {"per": per, "infer_ms_p50": p50, "infer_ms_p99": p50 * 1.5, "throughput_utt_s": utt_s, **extra}
    return JobReport.from_metrics(metrics, variant=variant, backend=variant.split("-")[0], batch=batch,
                                  split="dev", decode=decode, batching="longest", precision="fp32")


def test_log_scale_only_where_values_span_more_than_tenfold():
    fig, ax = plt.subplots()
    assert _log_if_wide(ax, [0.5, 200.0]) and ax.get_yscale() == "log"
    fig2, ax2 = plt.subplots()
    assert not _log_if_wide(ax2, [10.0, 90.0]) and ax2.get_yscale() == "linear"
    plt.close("all")


def test_a_sweep_without_batch_plots_against_the_axis_it_varies(tmp_path):
    jobs = [_job("onnxruntime-cpu-fp32", 16, 5.0, 300.0, decode=d) for d in ("greedy", "beam")]
    assert x_axis(jobs) == "decode"
    written = {p.name for p in write_plots(jobs, tmp_path)}
    assert {"latency_vs_decode.png", "latency_vs_decode.svg", "throughput_vs_decode.svg",
            "per_by_variant.png"} <= written
    assert x_axis([_job("torch-cpu-fp32", b, 1.0, 1.0) for b in (1, 4)]) == "batch"
    assert x_axis([_job("torch-cpu-fp32", 4, 1.0, 1.0)]) == "variant"


def test_pngs_are_150_dpi_and_every_plot_has_an_svg(tmp_path):
    jobs = [_job(v, b, p50, utt) for v, b, p50, utt in (("torch-cpu-fp32", 1, 100.0, 10.0),
                                                         ("onnxruntime-cpu-fp32", 4, 0.5, 2000.0))]
    paths = write_plots(jobs, tmp_path)
    pngs = [p for p in paths if p.suffix == ".png"]
    assert len(pngs) == 3 and {p.with_suffix(".svg") for p in pngs} <= set(paths)
    for png in pngs:
        height, width = plt.imread(png).shape[:2]
        assert (width, height) == (1200, 750)  # 8 x 5 inches at 150 dpi
    # the guide's figures are drawn although no acl or CUDA variant ran
    assert GUIDE in (tmp_path / "latency_vs_batch.svg").read_text()


def test_conclusions_name_the_fastest_the_speedups_and_whether_per_differs():
    jobs = [_job("torch-cpu-fp32", 1, 100.0, 10.0, per=4.0), _job("onnxruntime-cpu-fp32", 1, 10.0, 100.0, per=4.0),
            _job("torch-cpu-fp32", 4, 200.0, 20.0, per=4.5, per_ci95_low=4.0, per_ci95_high=5.0),
            _job("onnxruntime-cpu-fp32", 4, 20.0, 200.0, per=4.2, per_ci95_low=3.8, per_ci95_high=4.6)]
    for i, job in enumerate(jobs):
        job.job_num = i
    summary = SweepSummary(reports=jobs)
    lines = summary.conclusions()
    assert "batch 1: fastest onnxruntime-cpu-fp32, 100.0 utt/s (p50 10.00 ms per batch)" in lines
    assert "onnxruntime-cpu-fp32 against torch-cpu-fp32 (throughput): 10.00x at b1, 10.00x at b4" in lines
    assert lines[-1].startswith("PER 4.00-4.50 %; PER differs by up to 0.30 points at batch 4") and \
        "within their 95% intervals" in lines[-1]
    assert [name for name, _ in summary.columns()].count("PER 95% CI") == 1
    against_ort = SweepSummary(reports=jobs, baseline="onnxruntime-cpu-fp32").conclusions()
    assert "torch-cpu-fp32 against onnxruntime-cpu-fp32 (throughput): 0.10x at b1, 0.10x at b4" in against_ort
    assert max(len(line) for line in summary.to_terminal().splitlines()) <= 120


def test_the_terminal_table_of_a_sweep_over_every_axis_fits_120_columns():
    jobs = [_job(v, 16, 5.0, 300.0, decode=d, per_ci95_low=3.5, per_ci95_high=4.5)
            for v in ("onnxruntime-cpu-fp32", "onnxruntime-cpu-int8") for d in ("greedy", "beam_lm")]
    for i, job in enumerate(jobs):
        job.job_num, job.batching, job.precision = i, ("longest", "sorted")[i % 2], ("fp32", "int8")[i // 2]
    text = SweepSummary(reports=jobs, title="sweep x").to_terminal()
    assert max(len(line) for line in text.splitlines()) <= 120
    header = text.splitlines()[1]
    assert all(name in header for name in ("variant", "batching", "decode", "PER 95% CI", "utt/s", "status"))
