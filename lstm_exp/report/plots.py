"""Plots of a sweep (matplotlib, Agg backend), each as PNG (150 dpi) and SVG:

* ``latency_vs_<axis>``: ms per batch, model execute, one line per variant: p50 with a band to
  p99; ``throughput_vs_<axis>``: utterances per second.  ``<axis>`` is ``batch`` when the sweep
  varies the batch size, else the axis it does vary (batching, decode, precision, model), else
  ``variant``.  A y axis whose values span more than 10x is log-scaled.
* ``per_by_variant``: PER per variant and decode type, each bar labelled with its value, the
  whiskers the spread over the other axes (or the 95% interval where runs carry
  ``per_ci95_low``/``per_ci95_high``), the y axis zoomed to the data.

Published figures are drawn as grey reference marks labelled "(guide's hardware)": other
machines, for scale only.  Each backend's plugin declares them as plot hints
(``BackendPlugin.plot_hints``: :class:`~lstm_exp.backends.plugin.GuideFigure`, e.g. the guide's
Ascend and T4 figures of shared/reference/RECIPE.md, "Performance figures reported"), with the
variants they compare like with like; :func:`matching_reference` draws those whose variants the
sweep ran.  Nothing here names a backend.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

from lstm_exp.report.job import JobReport

DPI = 150
FORMATS = ("png", "svg")
#: a y axis is log-scaled when its largest value is more than this times its smallest
LOG_SPAN = 10.0
#: the axes a sweep may vary besides the variant, in the order a plot prefers them
X_AXES = ("batch", "batching", "decode", "precision", "model")
DONE = ("FINISHED", "REUSED")
GUIDE = "(guide's hardware)"


@dataclass(frozen=True)
class ReferencePoint:
    label: str
    batch: int
    ms_per_batch: float
    utt_s: float
    #: which of our variants it compares with
    matches: Callable[[JobReport], bool]


def _matcher(backend: str, prefixes: tuple[str, ...]) -> Callable[[JobReport], bool]:
    return lambda r: r.backend == backend and r.variant.startswith(prefixes)


def _guide_reference() -> tuple[ReferencePoint, ...]:
    """Every registered backend's plot hints, as reference points."""
    from lstm_exp.backends.registry import PLUGINS

    return tuple(ReferencePoint(f"{hint.label} {GUIDE}", hint.batch, hint.ms_per_batch, hint.utt_s,
                                _matcher(plugin.name, hint.variant_prefixes))
                 for plugin in PLUGINS.values() for hint in plugin.plot_hints)


GUIDE_REFERENCE = _guide_reference()


def matching_reference(reports: Sequence[JobReport]) -> list[ReferencePoint]:
    """The published figures that compare like with like with some variant of the sweep."""
    return [p for p in GUIDE_REFERENCE if any(p.matches(r) for r in reports)]


def x_axis(reports: Sequence[JobReport]) -> str:
    """What the sweep varies besides the variant (batch first), else ``variant``."""
    for axis in X_AXES:
        if len({getattr(r, axis) for r in reports}) > 1:
            return axis
    return "variant"


def _label(r: JobReport, axes: Sequence[str]) -> str:
    """A line's name: the variant plus its value of each of ``axes``."""
    return " ".join([r.variant, *(str(getattr(r, a)) for a in axes)])


def _series(reports, x: str, value: Callable[[JobReport], Optional[float]]) -> dict[str, list[tuple]]:
    """Line label -> [(x value, report)] of the jobs with a measurement of ``value``: one line per
    variant and value of every other axis the sweep varies."""
    series: dict[str, list[tuple]] = defaultdict(list)
    others = [a for a in X_AXES if a != x and len({getattr(r, a) for r in reports}) > 1]
    for r in reports:
        if r.status in DONE and value(r) is not None and getattr(r, x) not in (None, ""):
            series[_label(r, others)].append((getattr(r, x), r))
    return {k: sorted(v, key=lambda p: (str(type(p[0])), p[0])) for k, v in sorted(series.items())}


def _log_if_wide(ax, values: Sequence[float]) -> bool:
    positive = [v for v in values if v and v > 0]
    if positive and max(positive) > LOG_SPAN * min(positive):
        ax.set_yscale("log")
        return True
    return False


def _figure():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt, *plt.subplots(figsize=(8, 5))


def _save(plt, fig, stem: Path) -> list[Path]:
    fig.tight_layout()
    paths = []
    for fmt in FORMATS:
        path = stem.with_suffix(f".{fmt}")
        fig.savefig(path, dpi=DPI)
        paths.append(path)
    plt.close(fig)
    return paths


def _draw_guide(ax, x: str, ref_value: Callable[[ReferencePoint], float]) -> list[float]:
    """The guide's figures: points against batch, else dashed horizontal marks; returns their values."""
    by_label: dict[str, list[ReferencePoint]] = defaultdict(list)
    for p in GUIDE_REFERENCE:
        by_label[p.label].append(p)
    values = []
    for (label, points), marker in zip(by_label.items(), ("*", "P")):
        ys = [ref_value(p) for p in points]
        values += ys
        if x == "batch":
            ax.plot([p.batch for p in points], ys, linestyle=":", marker=marker, markersize=9, color="0.45",
                    label=label)
            for p, y in zip(points, ys):
                ax.annotate(f"{y:g}", (p.batch, y), textcoords="offset points", xytext=(5, 3), fontsize=7,
                            color="0.35")
        else:
            for y in ys:
                ax.axhline(y, linestyle=":", color="0.55", linewidth=1)
            ax.plot([], [], linestyle=":", color="0.55", label=f"{label}: {', '.join(f'{y:g}' for y in ys)}")
    return values


def _against(reports, x: str, value, band, ref_value, ylabel: str, title: str, stem: Path) -> list[Path]:
    plt, fig, ax = _figure()
    series = _series(reports, x, value)
    categories = sorted({p[0] for pts in series.values() for p in pts}, key=str) if x != "batch" else []
    position = (lambda v: v) if x == "batch" else (lambda v: categories.index(v))
    values = []
    for label, points in series.items():
        xs = [position(p[0]) for p in points]
        ys = [value(p[1]) for p in points]
        values += ys
        line, = ax.plot(xs, ys, marker="o", label=label)
        noisy = [(x_, y_) for x_, y_, p in zip(xs, ys, points) if p[1].noise.noisy]
        if noisy:  # a measurement tagged lstm_exp.timing_noisy is drawn hollow
            ax.scatter(*zip(*noisy), s=42, facecolors="white", edgecolors=line.get_color(), linewidths=1.5, zorder=4)
        if band is not None:
            tops = [band(p[1]) if band(p[1]) is not None else value(p[1]) for p in points]
            values += tops
            ax.fill_between(xs, ys, tops, color=line.get_color(), alpha=0.15, linewidth=0)
    values += _draw_guide(ax, x, ref_value)
    log = _log_if_wide(ax, values)
    _x_ticks(ax, x, series, categories)
    ax.set_ylabel(ylabel + (" (log scale)" if log else ""))
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    if any(p[1].noise.noisy for points in series.values() for p in points):
        ax.scatter([], [], s=42, facecolors="white", edgecolors="0.3", label="hollow: timing noisy (see its run)")
    ax.legend(fontsize=7, loc="best")
    return _save(plt, fig, stem)


def _x_ticks(ax, x: str, series, categories) -> None:
    if x == "batch":
        ax.set_xscale("log", base=2)
        batches = sorted({p[0] for pts in series.values() for p in pts} | {p.batch for p in GUIDE_REFERENCE})
        ax.set_xticks(batches)
        ax.set_xticklabels([str(b) for b in batches])
        ax.minorticks_off()
        ax.set_xlabel("batch size (utterances)")
    else:
        ax.set_xticks(range(len(categories)))
        ax.set_xticklabels([str(c) for c in categories], rotation=15, fontsize=8)
        ax.set_xlim(-0.5, max(len(categories) - 0.5, 0.5))
        ax.set_xlabel(x)


def _per_groups(reports) -> dict[tuple[str, str], list[JobReport]]:
    groups: dict[tuple[str, str], list[JobReport]] = defaultdict(list)
    for r in reports:
        if r.status in DONE and r.accuracy.per is not None:
            groups[(r.variant, r.decode)].append(r)
    return groups


def _per_whisker(jobs: list[JobReport], mean: float) -> tuple[float, float]:
    """Down and up from ``mean``: the 95% interval when every job has one, else min to max."""
    lows = [r.metrics().get("per_ci95_low") for r in jobs]
    highs = [r.metrics().get("per_ci95_high") for r in jobs]
    if all(v is not None for v in lows + highs):
        return mean - min(lows), max(highs) - mean
    pers = [r.accuracy.per for r in jobs]
    return mean - min(pers), max(pers) - mean


def _per_bars(reports: Sequence[JobReport], stem: Path) -> list[Path]:
    plt, fig, ax = _figure()
    groups = _per_groups(reports)
    variants = sorted({v for v, _ in groups})
    decodes = sorted({d for _, d in groups})
    width = 0.8 / max(len(decodes), 1)
    tops, bottoms = [], []
    for j, decode in enumerate(decodes):
        for i, variant in enumerate(variants):
            jobs = groups.get((variant, decode))
            if not jobs:
                continue
            mean = sum(r.accuracy.per for r in jobs) / len(jobs)
            down, up = _per_whisker(jobs, mean)
            x = i + j * width
            ax.bar(x, mean, width, yerr=[[down], [up]], capsize=3, color=f"C{j}", label=f"decode={decode}")
            ax.annotate(f"{mean:.2f}", (x, mean + up), textcoords="offset points", xytext=(0, 3), ha="center",
                        fontsize=8)
            tops.append(mean + up)
            bottoms.append(mean - down)
    if tops:
        span = max(max(tops) - min(bottoms), 0.05 * max(tops), 0.1)
        ax.set_ylim(max(min(bottoms) - span, 0), max(tops) + span * 0.6)
    ax.set_xticks([i + width * (len(decodes) - 1) / 2 for i in range(len(variants))])
    ax.set_xticklabels(variants, rotation=15, fontsize=8)
    ax.set_ylabel("PER % (the guide's \"WER\"; y axis zoomed to the data)")
    ax.set_title("phone error rate per variant and decode type\n(bar: mean over the sweep's other axes; "
                 "whiskers: min to max, or the 95% interval where recorded)", fontsize=10)
    ax.grid(True, axis="y", alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        ax.legend(dict(zip(labels, handles)).values(), dict(zip(labels, handles)).keys(), fontsize=8)
    return _save(plt, fig, stem)


def write_plots(reports: Sequence[JobReport], out_dir: Path) -> list[Path]:
    """latency_vs_<axis>, throughput_vs_<axis> and per_by_variant, as .png and .svg, under ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    x = x_axis(reports)
    against = "batch size" if x == "batch" else x
    return [
        *_against(reports, x, lambda r: r.infer_ms.p50, lambda r: r.infer_ms.p99, lambda p: p.ms_per_batch,
                  "ms per batch, model execute", f"latency against {against}: line p50, band to p99",
                  out_dir / f"latency_vs_{x}"),
        *_against(reports, x, lambda r: r.throughput.utt_s, None, lambda p: p.utt_s,
                  "utterances / s (model execute time)", f"throughput against {against}",
                  out_dir / f"throughput_vs_{x}"),
        *_per_bars(reports, out_dir / "per_by_variant"),
        *latency_vs_qps(reports, out_dir / "latency_vs_qps"),  # issue 23
    ]


# issue 23: a server sweep over scenario.target_qps: p99 against the scheduled QPS, the bound drawn
def latency_vs_qps(reports: Sequence[JobReport], stem: Path) -> list[Path]:
    """LoadGen server jobs' p99 (band from p50) against scheduled QPS, one line per variant and
    batch, the latency bound as a dashed line, a missed bound as a cross; nothing without two."""
    server = [r for r in reports if r.status in DONE and r.scenario == "server" and r.loadgen.p99_ms is not None
              and r.loadgen.scheduled_qps is not None]
    if len(server) < 2:
        return []
    plt, fig, ax = _figure()
    groups: dict[str, list[JobReport]] = defaultdict(list)
    for r in server:
        groups[f"{r.variant} b{r.batch}"].append(r)
    values = []
    for label, jobs in groups.items():
        jobs.sort(key=lambda r: r.loadgen.scheduled_qps)
        xs, p99 = [r.loadgen.scheduled_qps for r in jobs], [r.loadgen.p99_ms for r in jobs]
        p50 = [r.loadgen.p50_ms if r.loadgen.p50_ms is not None else y for r, y in zip(jobs, p99)]
        line, = ax.plot(xs, p99, marker="o", label=f"{label}: p99 (band from p50)")
        ax.fill_between(xs, p50, p99, color=line.get_color(), alpha=0.15, linewidth=0)
        missed = [(x, y) for x, y, r in zip(xs, p99, jobs) if not r.loadgen.bound_met]
        if missed:
            ax.scatter(*zip(*missed), marker="x", s=80, color="red", zorder=5)
        values += p99 + p50
    for bound in sorted({r.loadgen.latency_bound_ms for r in server if r.loadgen.latency_bound_ms}):
        ax.axhline(bound, linestyle="--", color="0.3", linewidth=1, label=f"bound p99 <= {bound:g} ms")
        values.append(bound)
    if any(not r.loadgen.bound_met for r in server):
        ax.scatter([], [], marker="x", s=80, color="red", label="bound missed")
    log = _log_if_wide(ax, values)
    ax.set_xlabel("scheduled queries / s (LoadGen server, one utterance per query)")
    ax.set_ylabel("latency per query, ms" + (" (log scale)" if log else ""))
    ax.set_title("server: latency against offered load", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    return _save(plt, fig, stem)
