"""SweepSummary: the answer of a sweep, one row per job (a :class:`JobReport`), as CSV, Markdown
and PNG plots.  Built either from the job reports the store holds (the sweep callback, and
``python -m lstm_exp.report``) or from ``report.json`` files in job folders (tracking=none)."""
from __future__ import annotations

import csv
import io
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
    ("CER %", lambda r: _num(r.accuracy.cer)),
    ("infer_ms p50", lambda r: _num(r.infer_ms.p50)),
    ("infer_ms p99", lambda r: _num(r.infer_ms.p99)),
    ("utt/s", lambda r: _num(r.throughput.utt_s, 1)),
    ("RTF", lambda r: _num(r.throughput.rtf, 4)),
    ("status", lambda r: r.status),
    ("run", lambda r: r.run_id or ""),
)


def sweep_title(parent_name: str, overrides: str) -> str:
    """The table's heading: the same from the sweep callback and from ``python -m lstm_exp.report``."""
    return f"sweep {parent_name}: {overrides}"


def _num(value: Optional[float], digits: int = 2) -> str:
    return "" if value is None else f"{value:.{digits}f}"


@dataclass
class SweepSummary:
    """The jobs of one sweep, ordered by job number."""

    reports: list[JobReport]
    #: the parent run (None without tracking) and what the sweep was
    parent_run_id: Optional[str] = None
    title: str = "lstm_exp sweep"
    #: jobs that left no report at all (killed, crashed before tracking): one line each
    missing: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.reports = sorted(self.reports, key=lambda r: (r.job_num is None, r.job_num or 0, r.variant, r.batch or 0))

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
        return [{name: get(r) for name, get in COLUMNS} for r in self.reports]

    def to_csv(self) -> str:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=[name for name, _ in COLUMNS], lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.rows())
        return buffer.getvalue()

    def to_markdown(self) -> str:
        names = [name for name, _ in COLUMNS]
        lines = [f"## {self.title}", "", "| " + " | ".join(names) + " |", "|" + "---|" * len(names)]
        for row in self.rows():
            lines.append("| " + " | ".join(str(row[n]) for n in names) + " |")
        lines += ["", "PER is the phone error rate (the guide's \"WER\"); infer_ms is model execute only, per batch; "
                      "utt/s = utterances per second of model execute time; RTF = model seconds per second of audio."]
        failures = self.failures
        if failures:
            lines += ["", f"**{len(failures)} job(s) failed:**", ""] + [f"- {line}" for line in failures]
        return "\n".join(lines) + "\n"

    def write(self, out_dir: Path) -> list[Path]:
        """summary.csv, summary.md and the plots under ``out_dir``; returns the paths written."""
        from lstm_exp.report.plots import write_plots

        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "summary.csv").write_text(self.to_csv())
        (out_dir / "summary.md").write_text(self.to_markdown())
        return [out_dir / "summary.csv", out_dir / "summary.md", *write_plots(self.reports, out_dir)]

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
