"""Paired comparisons of two jobs: is the other job's PER really different, how much faster is it.

Pure functions over what a job leaves behind (``report.json``, ``utterances.tsv`` with one row
per utterance, ``timings.tsv`` with one row per timed batch), read from a job folder or from an
MLflow run's artefacts::

    from lstm_exp.report.compare import compare_jobs, load_job, load_run

    base = load_job("multirun/.../0")                       # or load_run(run_id, tracking_uri)
    other = load_job("multirun/.../1")
    c = compare_jobs(base, other)
    c.per_delta, c.per_delta_ci95, c.p_better, c.speedup, c.speedup_ci95, c.verdict

    # or with reports and rows at hand (rows: dicts with utt_id, errors, ref_phones; timings:
    # dicts with utterances, infer_ms):
    c = compare(base_report, other_report, base_rows, other_rows, base_timings, other_timings)

Contracts:

* The two jobs must have scored the same utterances (same split, same ids); otherwise a
  :class:`~lstm_exp.errors.DataError` names the utterances that differ.
* ``per_delta``: ``other - baseline`` PER in points; ``per_delta_ci95``: the paired bootstrap over
  utterances (Bisani & Ney; :func:`lstm_exp.metrics.intervals.paired_per_delta`, fixed seed);
  ``p_better``: the probability that ``other`` makes fewer errors, ties counted half (identical
  systems: 0.5).
* ``speedup``: ``throughput(other) / throughput(baseline)`` (utterances per model second) with a
  bootstrap interval over each job's timed batches; None when either job has no timings.
* ``verdict``: "PER equal within noise (delta +X [a, b])", "worse by X [a, b]" or "better by X
  [a, b]" (points), by whether the 95 % interval excludes 0; ``worse`` is True only for the second.
"""
from __future__ import annotations

import csv
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Optional, Sequence

from lstm_exp.errors import DataError
from lstm_exp.metrics.intervals import Interval, paired_per_delta, speedup_interval
from lstm_exp.report.job import JobReport

#: the files of a job folder (and of its MLflow run's artefacts) a comparison reads
REPORT_FILE, ROWS_FILE, TIMINGS_FILE = "report.json", "utterances.tsv", "timings.tsv"


@dataclass
class JobData:
    """One job as a comparison needs it."""

    report: JobReport
    rows: list[dict]
    timings: list[dict] = field(default_factory=list)
    source: str = ""


@dataclass(frozen=True)
class Comparison:
    """``other`` against ``baseline`` (see module doc)."""

    baseline: str
    other: str
    per_delta: float
    per_delta_ci95: tuple[float, float]
    p_better: float
    utterances: int
    speedup: Optional[float] = None
    speedup_ci95: Optional[tuple[float, float]] = None

    @property
    def worse(self) -> bool:
        """PER worse with 95 % confidence (the interval lies above 0)."""
        return self.per_delta_ci95[0] > 0

    @property
    def better(self) -> bool:
        return self.per_delta_ci95[1] < 0

    @property
    def verdict(self) -> str:
        low, high = self.per_delta_ci95
        span = f"[{low:+.2f}, {high:+.2f}]"
        if self.worse:
            return f"worse by {self.per_delta:.2f} {span}"
        if self.better:
            return f"better by {-self.per_delta:.2f} {span}"
        return f"PER equal within noise (delta {self.per_delta:+.2f} {span})"

    def speed_text(self) -> str:
        if self.speedup is None:
            return "speed-up n/a (no timings)"
        low, high = self.speedup_ci95
        return f"speed-up x{self.speedup:.2f} [{low:.2f}, {high:.2f}]"


def _aligned_errors(base_rows: Sequence[Mapping], other_rows: Sequence[Mapping], names: tuple[str, str]):
    base = {str(r["utt_id"]): r for r in base_rows}
    other = {str(r["utt_id"]): r for r in other_rows}
    if base.keys() != other.keys() or not base:
        only_base, only_other = sorted(base.keys() - other.keys()), sorted(other.keys() - base.keys())
        raise DataError(f"cannot compare {names[1]} with {names[0]}: they scored different utterances "
                        f"({len(only_base)} only in the baseline, e.g. {only_base[:3]}; {len(only_other)} only in the "
                        f"other, e.g. {only_other[:3]}); compare jobs of the same split and infer.max_utterances")
    ids = list(base)
    return ([int(base[u]["errors"]) for u in ids], [int(other[u]["errors"]) for u in ids],
            [int(base[u]["ref_phones"]) for u in ids])


def _ms_and_sizes(timings: Sequence[Mapping]) -> tuple[list[float], list[int]]:
    return [float(t["infer_ms"]) for t in timings], [int(t["utterances"]) for t in timings]


def compare(baseline: JobReport, other: JobReport, baseline_rows: Sequence[Mapping], other_rows: Sequence[Mapping],
            baseline_timings: Sequence[Mapping] = (), other_timings: Sequence[Mapping] = ()) -> Comparison:
    """The paired comparison of ``other`` against ``baseline`` (see module doc)."""
    names = (_name(baseline), _name(other))
    base_err, other_err, refs = _aligned_errors(baseline_rows, other_rows, names)
    paired = paired_per_delta(base_err, other_err, refs)
    speedup: Optional[Interval] = None
    if baseline_timings and other_timings:
        speedup = speedup_interval(*_ms_and_sizes(baseline_timings), *_ms_and_sizes(other_timings))
    return Comparison(
        baseline=names[0], other=names[1], per_delta=paired.delta.value,
        per_delta_ci95=(paired.delta.low, paired.delta.high), p_better=paired.p_better, utterances=paired.utterances,
        speedup=None if speedup is None else speedup.value,
        speedup_ci95=None if speedup is None else (speedup.low, speedup.high))


def compare_jobs(baseline: JobData, other: JobData) -> Comparison:
    return compare(baseline.report, other.report, baseline.rows, other.rows, baseline.timings, other.timings)


def _name(report: JobReport) -> str:
    return f"{report.variant} b{report.batch}" if report.variant else (report.run_id or "job")


def _read_tsv(path: Path) -> list[dict]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle, delimiter="\t"))


def load_job(job_dir: str | Path) -> JobData:
    """A job folder's report, per-utterance rows and (when written) per-batch timings."""
    folder = Path(job_dir)
    missing = [name for name in (REPORT_FILE, ROWS_FILE) if not (folder / name).is_file()]
    if missing:
        raise DataError(f"{folder}: no {' or '.join(missing)}; point at the folder of a job that ran stage=all "
                        "(a sweep's multirun/<date>/<time>/<job number>)")
    timings = folder / TIMINGS_FILE
    return JobData(JobReport.from_json(folder / REPORT_FILE), _read_tsv(folder / ROWS_FILE),
                   _read_tsv(timings) if timings.is_file() else [], str(folder))


def load_run(run_id: str, tracking_uri: Optional[str] = None) -> JobData:
    """The same from an MLflow run's artefacts (downloaded into a temporary folder)."""
    from mlflow.artifacts import download_artifacts
    from mlflow.exceptions import MlflowException

    with tempfile.TemporaryDirectory(prefix="lstm_exp-compare-") as tmp:
        for name in (REPORT_FILE, ROWS_FILE, TIMINGS_FILE):
            try:
                download_artifacts(run_id=run_id, artifact_path=name, dst_path=tmp, tracking_uri=tracking_uri)
            except (MlflowException, OSError) as err:
                if name != TIMINGS_FILE:
                    raise DataError(f"MLflow run {run_id}: cannot read its artefact {name} ({str(err).splitlines()[0]}); "
                                    "compare runs of jobs that ran stage=all with tracking.log_artifacts=true") from err
        data = load_job(tmp)
    data.source = f"runs:/{run_id}"
    return data
