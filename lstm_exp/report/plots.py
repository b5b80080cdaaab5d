"""PNG plots of a sweep (matplotlib, Agg backend): latency and throughput against batch size,
one line per variant, with the guide's own figures as labelled reference points where the
configuration matches; PER per variant and decode type.

The guide's figures (shared/reference/RECIPE.md, "Performance figures reported"):

* Ascend 310, one chip, model execute only, ms per batch at batch 1/4/8/16/32:
  179.183 / 187.361 / 202.751 / 195.763 / 260.119 (5.6 / 21.3 / 39.5 / 81.7 / 123.0 utt/s).
  Drawn when the sweep has an ``acl`` variant, against ``infer_ms`` (model execute only).
* NVIDIA T4, onnxruntime-gpu, batch 16: 92.33 ms, 173.3 utt/s, session.run on numpy inputs
  (copies included). Drawn when the sweep has an onnxruntime variant on CUDA.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

from lstm_exp.report.job import JobReport


@dataclass(frozen=True)
class ReferencePoint:
    label: str
    batch: int
    ms_per_batch: float
    utt_s: float
    #: which of our variants it compares with
    matches: Callable[[JobReport], bool]


def _is_acl(r: JobReport) -> bool:
    return r.backend == "acl" or r.variant.startswith("acl")


def _is_ort_cuda(r: JobReport) -> bool:
    return r.variant.startswith("onnxruntime-cuda") or r.variant.startswith("onnxruntime-tensorrt")


GUIDE_REFERENCE = tuple(
    ReferencePoint("guide: Ascend 310 (model execute)", b, ms, ups, _is_acl)
    for b, ms, ups in ((1, 179.183, 5.6), (4, 187.361, 21.3), (8, 202.751, 39.5), (16, 195.763, 81.7),
                       (32, 260.119, 123.0))
) + (ReferencePoint("guide: T4 onnxruntime-gpu (copies incl.)", 16, 92.33, 173.3, _is_ort_cuda),)


def matching_reference(reports: Sequence[JobReport]) -> list[ReferencePoint]:
    return [p for p in GUIDE_REFERENCE if any(p.matches(r) for r in reports)]


def _lines(reports: Sequence[JobReport], value: Callable[[JobReport], Optional[float]]) -> dict[str, list[tuple[int, float]]]:
    series: dict[str, list[tuple[int, float]]] = defaultdict(list)
    for r in reports:
        v = value(r)
        if r.status in ("FINISHED", "REUSED") and r.batch is not None and v is not None:
            label = r.variant + (f" {r.batching}" if r.batching else "") + (f" {r.decode}" if r.decode else "")
            series[label].append((int(r.batch), float(v)))
    return {k: sorted(v) for k, v in sorted(series.items())}


def _against_batch(reports, value, ref_value, ylabel: str, title: str, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=100)
    series = _lines(reports, value)
    for label, points in series.items():
        xs, ys = zip(*points)
        ax.plot(xs, ys, marker="o", label=label)
    refs = matching_reference(reports)
    by_label: dict[str, list[ReferencePoint]] = defaultdict(list)
    for p in refs:
        by_label[p.label].append(p)
    for label, points in by_label.items():
        xs = [p.batch for p in points]
        ys = [ref_value(p) for p in points]
        ax.scatter(xs, ys, marker="*", s=120, zorder=5, label=label)
        for x, y in zip(xs, ys):
            ax.annotate(f"{y:g}", (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
    ax.set_xscale("log", base=2)
    batches = sorted({x for points in series.values() for x, _ in points} | {p.batch for p in refs})
    if batches:
        ax.set_xticks(batches)
        ax.set_xticklabels([str(b) for b in batches])
        ax.minorticks_off()
    ax.set_xlabel("batch size (utterances)")
    ax.set_ylabel(ylabel)
    note = "" if refs else " (no guide figure matches these variants)"
    ax.set_title(title + note, fontsize=10)
    ax.grid(True, alpha=0.3)
    if series or refs:
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def _per_bars(reports: Sequence[JobReport], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups: dict[tuple[str, str], list[float]] = defaultdict(list)
    for r in reports:
        if r.status in ("FINISHED", "REUSED") and r.accuracy.per is not None:
            groups[(r.variant, r.decode)].append(r.accuracy.per)
    variants = sorted({v for v, _ in groups})
    decodes = sorted({d for _, d in groups})
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=100)
    width = 0.8 / max(len(decodes), 1)
    for j, decode in enumerate(decodes):
        xs, heights, lo, hi = [], [], [], []
        for i, variant in enumerate(variants):
            values = groups.get((variant, decode))
            if values:
                mean = sum(values) / len(values)
                xs.append(i + j * width)
                heights.append(mean)
                lo.append(mean - min(values))
                hi.append(max(values) - mean)
        ax.bar(xs, heights, width, yerr=[lo, hi], capsize=3, label=f"decode={decode}")
    ax.set_xticks([i + width * (len(decodes) - 1) / 2 for i in range(len(variants))])
    ax.set_xticklabels(variants, rotation=15, fontsize=8)
    ax.set_ylabel("PER % (the guide's \"WER\")")
    ax.set_title("phone error rate per variant and decode type\n(bar: mean over batch sizes; whiskers: min to max)",
                 fontsize=10)
    ax.grid(True, axis="y", alpha=0.3)
    if groups:
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def write_plots(reports: Sequence[JobReport], out_dir: Path) -> list[Path]:
    """latency_vs_batch.png, throughput_vs_batch.png, per_by_variant.png under ``out_dir``."""
    out_dir = Path(out_dir)
    return [
        _against_batch(reports, lambda r: r.infer_ms.p50, lambda p: p.ms_per_batch,
                       "ms per batch, model execute, p50", "latency against batch size",
                       out_dir / "latency_vs_batch.png"),
        _against_batch(reports, lambda r: r.throughput.utt_s, lambda p: p.utt_s,
                       "utterances / s (model execute time)", "throughput against batch size",
                       out_dir / "throughput_vs_batch.png"),
        _per_bars(reports, out_dir / "per_by_variant.png"),
    ]
