"""SweepSummary: the answer of a sweep, one row per job (a :class:`JobReport`), as CSV, Markdown,
a terminal table that fits 120 columns, conclusion lines and plots.  Built either from the job
reports the store holds (the sweep callback, and ``python -m lstm_exp.report``) or from
``report.json`` files in job folders (tracking=none).

Adding a column is one entry in :data:`COLUMNS` (``TERMINAL`` names those the terminal shows);
adding a conclusion is one function in :data:`CONCLUSIONS` (``summary -> lines``).  Columns whose
metric no job carries (the PER interval before runs record one) are left out."""
from __future__ import annotations

import csv
import io
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

from lstm_exp.report.job import JobReport

#: (header, how to get the cell from a report)
COLUMNS = (
    ("job", lambda r: "" if r.job_num is None else r.job_num),
    ("variant", lambda r: r.variant),
    ("batch", lambda r: "" if r.batch is None else r.batch),
    ("batching", lambda r: r.batching),
    ("precision", lambda r: r.precision),
    ("decode", lambda r: r.decode),
    ("PER %", lambda r: _num(r.accuracy.per)),
    ("PER 95% CI", lambda r: _interval(*_per_interval(r))),
    ("CER %", lambda r: _num(r.accuracy.cer)),
    ("infer_ms p50", lambda r: _num(r.infer_ms.p50)),
    ("infer_ms p99", lambda r: _num(r.infer_ms.p99)),
    ("utt/s", lambda r: _num(r.throughput.utt_s, 1)),
    ("RTF", lambda r: _num(r.throughput.rtf, 4)),
    ("timing", lambda r: "" if r.noise.noisy is None else "NOISY" if r.noise.noisy else "steady"),
    ("status", lambda r: r.status),
    ("run", lambda r: r.run_id or ""),
)


#: metric columns left out when no job has a value for them
OPTIONAL_METRIC_COLUMNS = ("PER 95% CI", "timing")

# issue 23: LoadGen scenarios; these columns (before ``status``) appear when a job ran one
LOADGEN_COLUMNS = (
    ("scenario", lambda r: r.scenario),
    ("target QPS", lambda r: _num(r.loadgen.target_qps, 1) if r.scenario == "server" else ""),
    ("LG QPS", lambda r: _num(r.loadgen.scheduled_qps if r.scenario == "server" else r.loadgen.samples_s, 1)
     if r.scenario in ("server", "offline") else ""),
    ("LG p90 ms", lambda r: _num(r.loadgen.p90_ms)),
    ("LG p99 ms", lambda r: _num(r.loadgen.p99_ms)),
    ("bound met", lambda r: "" if r.loadgen.bound_met is None else "yes" if r.loadgen.bound_met else "NO"),
)

#: the columns of the terminal table (it must fit 120 columns: run ids are in the CSV); of these,
#: batching, precision and decode appear only when they vary within the sweep
TERMINAL = ("job", "variant", "batch", "batching", "precision", "decode", "scenario", "target QPS", "PER %",
            "PER 95% CI", "PER vs baseline", "infer_ms p50", "infer_ms p99", "utt/s", "LG QPS", "LG p99 ms", "bound met",
            "timing", "status")
OPTIONAL_AXES = ("batching", "precision", "decode", "scenario")
#: what the terminal table leaves out, in this order, when it would be wider than TERMINAL_WIDTH
TERMINAL_DROPS = ("infer_ms p99", "job", "timing", "PER vs baseline", "precision", "utt/s", "PER 95% CI")
TERMINAL_WIDTH = 120
#: two PER values closer than this (percentage points) are "the same PER"
SAME_PER = 0.005
DONE = ("FINISHED", "REUSED")
#: precisions narrower than fp32: flagged in the table when their PER is worse with 95 % confidence
LOW_PRECISIONS = ("fp16", "bf16", "int8")


def sweep_title(parent_name: str, overrides: str) -> str:
    """The table's heading: the same from the sweep callback and from ``python -m lstm_exp.report``."""
    name = parent_name if parent_name.startswith("sweep") else f"sweep {parent_name}"
    return f"{name}: {overrides}"


def _num(value: Optional[float], digits: int = 2) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def _per_interval(r: JobReport) -> tuple[Optional[float], Optional[float]]:
    """The job's PER 95% interval, from the flat metrics (wherever JobReport keeps them)."""
    metrics = r.metrics()
    return metrics.get("per_ci95_low"), metrics.get("per_ci95_high")


def _interval(low: Optional[float], high: Optional[float]) -> str:
    return "" if low is None or high is None else f"{low:.2f}-{high:.2f}"


@dataclass
class SweepSummary:
    """The jobs of one sweep, ordered by job number."""

    reports: list[JobReport]
    #: the parent run (None without tracking) and what the sweep was
    parent_run_id: Optional[str] = None
    title: str = "lstm_exp sweep"
    #: jobs that left no report at all (killed, crashed before tracking): one line each
    missing: list[str] = field(default_factory=list)
    #: the variant speed-ups are measured against (None: the sweep's first variant)
    baseline: Optional[str] = None
    #: the store the jobs' runs are in: a REUSED job's per-utterance rows are read from its original run
    tracking_uri: Optional[str] = None
    _comparisons: Optional[dict] = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.reports = sorted(self.reports, key=lambda r: (r.job_num is None, r.job_num or 0, r.variant, r.batch or 0))

    # -- what the sweep is -------------------------------------------------------------------
    @property
    def done(self) -> list[JobReport]:
        """The jobs with a measurement (finished now or reused)."""
        return [r for r in self.reports if r.status in DONE]

    @property
    def variants(self) -> list[str]:
        """The variants in job order."""
        return list(dict.fromkeys(r.variant for r in self.reports if r.variant))

    def varies(self, axis: str) -> bool:
        """Whether the jobs differ in ``axis`` (a JobReport field: batch, batching, decode, ...)."""
        return len({getattr(r, axis) for r in self.reports}) > 1

    def baseline_variant(self) -> Optional[str]:
        """``baseline`` if set, else the first variant; raises ConfigError for a variant the sweep
        does not have."""
        from lstm_exp.errors import ConfigError

        if self.baseline and self.baseline not in self.variants:
            raise ConfigError(f"report.baseline={self.baseline} is not a variant of this sweep: write one of "
                              f"{', '.join(self.variants) or '(none ran)'}, or leave it null (the first variant)")
        return self.baseline or (self.variants[0] if self.variants else None)

    def best(self) -> Optional[JobReport]:
        """The job with the highest throughput."""
        timed = [r for r in self.done if r.throughput.utt_s is not None]
        return max(timed, key=lambda r: r.throughput.utt_s) if timed else None

    def conclusions(self) -> list[str]:
        """The sweep's answer in a few lines (every function of :data:`CONCLUSIONS`)."""
        return [line for conclude in CONCLUSIONS for line in conclude(self)]

    def comparisons(self) -> dict:
        """``id(report)`` -> the paired comparison (:mod:`lstm_exp.report.compare`) of that job with the
        baseline variant's job at the same batch, batching, decode and split; computed once."""
        if self._comparisons is None:
            self._comparisons = _compare_to_baseline(self)
        return self._comparisons

    def columns(self) -> list[tuple]:
        """COLUMNS less those no job has a value for among the optional metric columns, plus the
        paired comparison with the baseline (before ``status``) when the sweep has one."""
        columns = [(name, get) for name, get in COLUMNS if name not in OPTIONAL_METRIC_COLUMNS
                   or any(get(r) for r in self.reports)]
        if any(r.scenario != "offline_batches" for r in self.reports):  # issue 23
            at = [name for name, _ in columns].index("status")
            columns[at:at] = [(name, get) for name, get in LOADGEN_COLUMNS
                              if name == "scenario" or any(get(r) for r in self.reports)]
        paired = self.comparisons()
        if paired:
            at = [name for name, _ in columns].index("status")
            columns[at:at] = [("PER vs baseline", lambda r: _per_verdict_cell(r, paired.get(id(r)))),
                              ("speed-up vs baseline", lambda r: _speedup_cell(paired.get(id(r))))]
        return columns

    @property
    def failures(self) -> list[str]:
        """One line per job that did not finish: its overrides (or variant) and its error."""
        lines = []
        for r in self.reports:
            if r.status not in ("FINISHED", "REUSED"):
                what = r.overrides or f"{r.variant} batch={r.batch}"
                lines.append(f"job {r.job_num}: {what}: {r.error or r.status}")
        return lines + list(self.missing)

    @property
    def failed(self) -> bool:
        return bool(self.failures)

    def rows(self) -> list[dict[str, object]]:
        columns = self.columns()
        return [{name: get(r) for name, get in columns} for r in self.reports]

    def to_csv(self) -> str:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=[name for name, _ in self.columns()], lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.rows())
        return buffer.getvalue()

    def to_markdown(self, names: Optional[Sequence[str]] = None) -> str:
        """The table (``names``: these columns only), the conclusions and the failed jobs."""
        rows = self.rows()
        names = [n for n in (names or [name for name, _ in self.columns()]) if not rows or n in rows[0]]
        lines = [f"## {self.title}", "", "| " + " | ".join(names) + " |", "|" + "---|" * len(names)]
        for row in rows:
            lines.append("| " + " | ".join(str(row[n]) for n in names) + " |")
        lines += ["", "PER is the phone error rate (the guide's \"WER\"); infer_ms is model execute only, per batch; "
                      "utt/s = utterances per second of model execute time; RTF = model seconds per second of audio."]
        conclusions = self.conclusions()
        if conclusions:
            lines += ["", "**Conclusions:**", ""] + [f"- {line}" for line in conclusions]
        failures = self.failures
        if failures:
            lines += ["", f"**{len(failures)} job(s) failed:**", ""] + [f"- {line}" for line in failures]
        return "\n".join(lines) + "\n"

    def terminal_names(self) -> list[str]:
        present = {name for name, _ in self.columns()}
        return [n for n in TERMINAL if n in present and (n not in OPTIONAL_AXES or self.varies(n))]

    def to_terminal(self) -> str:
        """A plain-text table that fits :data:`TERMINAL_WIDTH` columns (dropping the columns of
        :data:`TERMINAL_DROPS` in turn when it would not), then the conclusions and the failed
        jobs (run ids are in summary.csv)."""
        names, table = self.terminal_names(), self.rows()
        while True:
            rows = [[str(row[n]) for n in names] for row in table]
            widths = [max([len(n), *(len(r[i]) for r in rows)]) for i, n in enumerate(names)]
            droppable = [n for n in TERMINAL_DROPS if n in names]
            if sum(widths) + 2 * (len(widths) - 1) <= TERMINAL_WIDTH or not droppable:
                break
            names.remove(droppable[0])
        line = lambda cells: "  ".join(c.ljust(w) if i < 2 else c.rjust(w)
                                       for i, (c, w) in enumerate(zip(cells, widths)))[:TERMINAL_WIDTH].rstrip()
        out = [self.title[:TERMINAL_WIDTH], line(names), line(["-" * w for w in widths]), *(line(r) for r in rows)]
        out += [textwrap.fill(c, TERMINAL_WIDTH, initial_indent="- ", subsequent_indent="  ")
                for c in self.conclusions()]
        if self.failures:
            out += [f"{len(self.failures)} job(s) failed:"] + [f"  {f}" for f in self.failures]
        return "\n".join(out) + "\n"

    def write(self, out_dir: Path) -> list[Path]:
        """summary.csv, summary.md and the plots under ``out_dir``; returns the paths written."""
        from lstm_exp.report.plots import write_plots

        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "summary.csv").write_text(self.to_csv())
        (out_dir / "summary.md").write_text(self.to_markdown())
        return [out_dir / "summary.csv", out_dir / "summary.md", *write_plots(self.reports, out_dir)]

    def description(self, view_url: Optional[str] = None) -> str:
        """The parent run's description (Markdown, the first thing its MLflow page shows): the
        conclusions first (what the page shows before "Show more"), then the table."""
        lines = [f"**{self.title}**", ""] + [f"- {line}" for line in self.conclusions()]
        if view_url:
            lines += ["", f"The sweep's saved view (table and charts): {view_url}"]
        table = self.to_markdown(names=[*self.terminal_names(), "RTF"])
        table = table.split("\n", 2)[2].split("\n**Conclusions:**")[0]  # without its heading and conclusions
        return "\n".join(lines) + "\n\n" + table.rstrip() + "\n"

    @classmethod
    def from_job_dirs(cls, job_dirs: Sequence[Path], **kwargs) -> "SweepSummary":
        """From the ``report.json`` each job wrote into its folder (a folder without one is listed
        as missing)."""
        reports, missing = [], []
        for job_dir in job_dirs:
            path = Path(job_dir) / "report.json"
            if path.is_file():
                reports.append(JobReport.from_json(path))
            else:
                missing.append(f"{job_dir}: the job left no report.json (killed or crashed; see its log)")
        return cls(reports=reports, missing=missing, **kwargs)


# -- conclusions: each takes the summary and gives zero or more lines ------------------------
def _by_batch(summary: SweepSummary) -> dict[Optional[int], list[JobReport]]:
    groups: dict[Optional[int], list[JobReport]] = {}
    for r in summary.done:
        if r.throughput.utt_s is not None:
            groups.setdefault(r.batch, []).append(r)
    return dict(sorted(groups.items(), key=lambda kv: kv[0] or 0))


def _label(r: JobReport, summary: SweepSummary) -> str:
    extra = [getattr(r, axis) for axis in OPTIONAL_AXES if summary.varies(axis)]
    return " ".join([r.variant, *extra])


def fastest_per_batch(summary: SweepSummary) -> list[str]:
    lines = []
    for batch, jobs in _by_batch(summary).items():
        best = max(jobs, key=lambda r: r.throughput.utt_s)
        lines.append(f"batch {batch}: fastest {_label(best, summary)}, {best.throughput.utt_s:.1f} utt/s "
                     f"(p50 {_num(best.infer_ms.p50)} ms per batch)")
    return lines


def speedups(summary: SweepSummary) -> list[str]:
    """Throughput of each other variant over the baseline's, at the batches both ran."""
    baseline = summary.baseline_variant()
    if baseline is None or len(summary.variants) < 2:
        return []
    lines = []
    for variant in summary.variants:
        if variant == baseline:
            continue
        ratios = []
        for batch, jobs in _by_batch(summary).items():
            base = [r.throughput.utt_s for r in jobs if r.variant == baseline]
            other = [r.throughput.utt_s for r in jobs if r.variant == variant]
            if base and other and base[0] > 0:
                ratios.append(f"{other[0] / base[0]:.2f}x at b{batch}")
        if ratios:
            lines.append(f"{variant} against {baseline} (throughput): " + ", ".join(ratios))
    return lines


def per_differs(summary: SweepSummary) -> list[str]:
    """Whether PER differs between variants run on the same batch (and, with intervals, whether
    the difference is larger than they are)."""
    pers = [r for r in summary.done if r.accuracy.per is not None]
    if not pers:
        return []
    low, high = min(r.accuracy.per for r in pers), max(r.accuracy.per for r in pers)
    spread = f"PER {low:.2f} %" if high - low < SAME_PER else f"PER {low:.2f}-{high:.2f} %"
    gaps = []
    for batch in {r.batch for r in pers}:
        same_batch = [r for r in pers if r.batch == batch]
        if len(same_batch) > 1:
            low, high = min(same_batch, key=lambda r: r.accuracy.per), max(same_batch, key=lambda r: r.accuracy.per)
            gaps.append((high.accuracy.per - low.accuracy.per, batch, low, high))
    if not gaps:
        return [f"{spread} over the sweep"]
    gap, batch, low, high = max(gaps, key=lambda g: g[0])
    if gap < SAME_PER:
        return [f"{spread}; at each batch size every variant gives the same PER"]
    overlap = _intervals_overlap(low, high)
    verdict = ("within their 95% intervals" if overlap else "beyond their 95% intervals" if overlap is False
               else "no intervals recorded")
    return [f"{spread}; PER differs by up to {gap:.2f} points at batch {batch} ({_label(low, summary)} "
            f"{low.accuracy.per:.2f} vs {_label(high, summary)} {high.accuracy.per:.2f}; {verdict})"]


def _intervals_overlap(a: JobReport, b: JobReport) -> Optional[bool]:
    bounds = [*_per_interval(a), *_per_interval(b)]
    if any(v is None for v in bounds):
        return None
    a_low, a_high, b_low, b_high = bounds
    return a_low <= b_high and b_low <= a_high


def _per_verdict_cell(r: JobReport, c) -> str:
    """The table's PER comparison: ``=`` within noise, else worse/better by X [a, b] (points);
    ``!!`` marks a narrower precision whose PER is worse with 95 % confidence."""
    if c is None:
        return ""
    low, high = c.per_delta_ci95
    if not (c.worse or c.better):
        return f"= ({c.per_delta:+.2f} [{low:+.2f}, {high:+.2f}])"
    flag = "!! " if c.worse and r.precision in LOW_PRECISIONS else ""
    return f"{flag}{'worse' if c.worse else 'better'} {abs(c.per_delta):.2f} [{low:+.2f}, {high:+.2f}]"


def _speedup_cell(c) -> str:
    if c is None or c.speedup is None:
        return ""
    return f"x{c.speedup:.2f} [{c.speedup_ci95[0]:.2f}, {c.speedup_ci95[1]:.2f}]"


def _compare_to_baseline(summary: SweepSummary) -> dict:
    """Every job with a baseline job of the same batch, batching, decode and split: paired
    bootstrap of PER over utterances, speed-up over timed batches.  A job whose per-utterance rows
    cannot be read (tracking.log_artifacts=false, an older run) is left out with a warning."""
    import sys

    from lstm_exp.errors import LstmExpError
    from lstm_exp.report.compare import compare_jobs

    try:
        baseline = summary.baseline_variant()
    except LstmExpError:
        return {}
    key = lambda r: (r.batch, r.batching, r.decode, r.split)
    bases = {key(r): r for r in summary.done if r.variant == baseline and r.accuracy.per is not None}
    loaded: dict = {}
    paired = {}
    for r in summary.done:
        base = bases.get(key(r))
        if base is None or base is r or r.accuracy.per is None:
            continue
        try:
            paired[id(r)] = compare_jobs(_job_data(base, summary, loaded), _job_data(r, summary, loaded))
        except LstmExpError as err:
            print(f"lstm_exp: warning: no paired comparison for {r.variant} b{r.batch}: {err}", file=sys.stderr)
    return paired


def _job_data(r: JobReport, summary: SweepSummary, loaded: dict):
    """A job's per-utterance rows and timings: its folder, else the run that measured it."""
    from lstm_exp.errors import DataError
    from lstm_exp.report.compare import ROWS_FILE, load_job, load_run

    source = r.reused_from or r.run_id or r.job_dir
    if source not in loaded:
        folder = Path(r.job_dir) if r.job_dir else None
        if r.status != "REUSED" and folder is not None and (folder / ROWS_FILE).is_file():
            loaded[source] = load_job(folder)
        elif (r.reused_from or r.run_id) and summary.tracking_uri:
            loaded[source] = load_run(r.reused_from or r.run_id, summary.tracking_uri)
        else:
            raise DataError(f"job {r.job_num}: neither its folder nor a run holds its per-utterance rows")
    return loaded[source]


def paired_to_baseline(summary: SweepSummary) -> list[str]:
    """Each job against the baseline at its batch: PER delta with its paired-bootstrap interval
    and P(better) (Bisani & Ney), and the speed-up with its interval."""
    lines = []
    for r in summary.done:
        c = summary.comparisons().get(id(r))
        if c is not None:
            flag = " -- a narrower precision that costs accuracy" if c.worse and r.precision in LOW_PRECISIONS else ""
            lines.append(f"{_label(r, summary)} vs {c.baseline} (same batch): {c.verdict}, P(better) "
                         f"{c.p_better:.2f}; {c.speed_text()}{flag}")
    return lines


def measurement_provenance(summary: SweepSummary) -> list[str]:
    """What a reader must know before trusting the speeds: noisy timings, several hosts or days,
    REUSED measurements."""
    done, lines = summary.done, []
    noisy = [r for r in done if r.noise.noisy]
    if noisy:
        reasons = "; ".join(f"{_label(r, summary)} b{r.batch}: {r.noise.reason}" for r in noisy[:3])
        lines.append(f"{len(noisy)} of {len(done)} jobs were timed while the machine was busy or unsteady "
                     f"(lstm_exp.timing_noisy; drawn hollow): {reasons}{' ...' if len(noisy) > 3 else ''}")
    hosts = sorted({r.host.host for r in done if r.host.host})
    if len(hosts) > 1:
        lines.append(f"warning: the table mixes measurements from {len(hosts)} hosts ({', '.join(hosts)}): "
                     "compare speeds within one host")
    days = sorted({(r.measured_at or r.host.measured_at)[:10] for r in done if r.measured_at or r.host.measured_at})
    if len(days) > 1:
        lines.append(f"warning: the measurements were taken on {len(days)} days ({days[0]} to {days[-1]})")
    reused = [r for r in done if r.status == "REUSED"]
    if reused:
        when = sorted(r.measured_at or r.host.measured_at or "?" for r in reused)
        lines.append(f"{len(reused)} job(s) REUSED earlier measurements (measured {when[0]} to {when[-1]})")
    return lines


#: the conclusion lines, in order
# issue 23: the server's capacity from a sweep over scenario.target_qps
def server_capacity(summary: SweepSummary) -> list[str]:
    """Per variant and batch of server jobs: the highest target QPS whose p99 met the bound."""
    groups: dict[tuple, list[JobReport]] = {}
    for r in summary.done:
        if r.scenario == "server" and r.loadgen.target_qps is not None and r.loadgen.bound_met is not None:
            groups.setdefault((r.variant, r.batch, r.loadgen.latency_bound_ms), []).append(r)
    lines = []
    for (variant, batch, bound), jobs in groups.items():
        jobs.sort(key=lambda r: r.loadgen.target_qps)
        met = [r for r in jobs if r.loadgen.bound_met]
        missed = [r for r in jobs if not r.loadgen.bound_met]
        head = f"server capacity {variant} b{batch} (p99 <= {_num(bound, 0)} ms): "
        if not met:
            lines.append(head + f"no target QPS met the bound (lowest tried {_num(jobs[0].loadgen.target_qps, 1)}: "
                                f"p99 {_num(jobs[0].loadgen.p99_ms)} ms)")
            continue
        best = met[-1]
        above = [r for r in missed if r.loadgen.target_qps > best.loadgen.target_qps]
        miss = (f"; {_num(above[0].loadgen.target_qps, 1)} missed it (p99 {_num(above[0].loadgen.p99_ms)} ms)"
                if above else "; every target tried met it (try higher)")
        lines.append(head + f"highest passing target {_num(best.loadgen.target_qps, 1)} QPS (scheduled "
                            f"{_num(best.loadgen.scheduled_qps, 1)}, completed {_num(best.loadgen.samples_s, 1)}/s, "
                            f"p99 {_num(best.loadgen.p99_ms)} ms){miss}")
    return lines


CONCLUSIONS = (fastest_per_batch, speedups, per_differs, paired_to_baseline, measurement_provenance, server_capacity)


# -- two sweeps side by side -------------------------------------------------------------------
def _job_key(r: JobReport) -> tuple:
    return (r.variant, r.batch, r.batching, r.precision, r.decode, r.model)


def compare_markdown(a: SweepSummary, b: SweepSummary) -> str:
    """A table of the jobs two sweeps share (same variant, batch, batching, precision, decode,
    model): PER, p50 and utt/s of each, and B's throughput over A's; then the jobs only one has."""
    in_a = {_job_key(r): r for r in a.done}
    in_b = {_job_key(r): r for r in b.done}
    shared = [k for k in in_a if k in in_b]
    lines = [f"## A: {a.title}", f"## B: {b.title}", "",
             "| variant | batch | batching | decode | PER A | PER B | p50 ms A | p50 ms B | utt/s A | utt/s B | B/A utt/s |",
             "|" + "---|" * 11]
    for key in shared:
        ra, rb = in_a[key], in_b[key]
        ratio = (f"{rb.throughput.utt_s / ra.throughput.utt_s:.2f}x"
                 if ra.throughput.utt_s and rb.throughput.utt_s is not None else "")
        lines.append(f"| {key[0]} | {key[1]} | {key[2]} | {key[4]} | {_num(ra.accuracy.per)} | {_num(rb.accuracy.per)} "
                     f"| {_num(ra.infer_ms.p50)} | {_num(rb.infer_ms.p50)} | {_num(ra.throughput.utt_s, 1)} "
                     f"| {_num(rb.throughput.utt_s, 1)} | {ratio} |")
    only = [f"- only in {side}: {k[0]} batch={k[1]} {k[2]} {k[4]}".rstrip()
            for side, mine, other in (("A", in_a, in_b), ("B", in_b, in_a)) for k in mine if k not in other]
    if not shared:
        lines.append("| (no job in common) |" + " |" * 10)
    return "\n".join(lines + ([""] + only if only else [])) + "\n"
