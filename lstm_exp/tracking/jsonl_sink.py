"""A local sink: one JSON line per ended job appended to a file (``tracking=jsonl``, or beside
MLflow with ``tracking=mlflow_jsonl``).

Each line is the job's :class:`~lstm_exp.report.JobReport` as ``report.json`` holds it (``to_dict``:
identity, status, metrics, intervals, host), plus ``"ended"`` (ISO 8601, UTC), ``"params"`` and
``"tags"`` (the job's, as the MLflow sink records them), so that ``pandas.read_json(path,
lines=True)`` or ``jq`` answer across runs and sweeps without a store.  A FAILED or KILLED job gets
a line too (``status``, ``error``).  Lines are appended with one ``write`` under an exclusive
``fcntl`` lock, so the jobs of a parallel sweep never interleave; nothing earlier in the file is
rewritten.  A file that cannot be written is one :class:`TrackingError` line naming it.
"""
from __future__ import annotations

import fcntl
import json
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Mapping, Optional

from lstm_exp.report.job import JobReport
from lstm_exp.tracking.sink import JobRun, Sink
from lstm_exp.tracking.store_check import StoreError, TrackingError


class JsonLinesSink(Sink):
    """Appends a job's report to ``path`` as one JSON line when the job ends."""

    def __init__(self, path: str) -> None:
        self.path = Path(path).expanduser()
        self.job: Optional[JobRun] = None
        self.tags: dict[str, str] = {}
        self.report: Optional[JobReport] = None
        self.error: Optional[str] = None

    def check(self) -> None:
        """The file's folder exists (or can be made) and the file can be appended to."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a"):
                pass
        except OSError as exc:
            raise StoreError(f"cannot append to the results file {self.path} ({exc.strerror}): set "
                             "tracking.sinks.jsonl.path= a writable file, or tracking=none") from None

    def start(self, job: JobRun) -> None:
        self.job, self.tags = job, dict(job.tags)

    def set_tags(self, tags: Mapping[str, str]) -> None:
        self.tags.update({k: str(v) for k, v in tags.items()})

    def record(self, report: JobReport, job_dir: Path) -> None:
        self.report = report

    def fail(self, message: str) -> None:
        self.error = message.splitlines()[0] if message else ""

    def end(self, status: str) -> None:
        """The job's line: its report (a FAILED or KILLED job's identity and error when it has none)."""
        if self.job is None:
            return
        self._append(self._line(status))

    def closing_line(self) -> Optional[str]:
        return f"results appended to {self.path} (one JSON line per job)"

    def _line(self, status: str) -> dict:
        job = self.job
        report = self.report or JobReport(**{k: v for k, v in job.identity.items() if k in _IDENTITY},
                                          fingerprint=job.fingerprint, overrides=job.overrides, job_num=job.job_num,
                                          run_name=job.run_name, job_dir=str(job.job_dir))
        line = report.to_dict()
        line["status"] = report.status if self.report is not None and status == "FINISHED" else status
        if self.error:
            line["error"] = self.error
        ended = datetime.now(timezone.utc).isoformat(timespec="seconds")
        return {**line, "ended": ended, "params": job.params, "tags": self.tags}

    def _append(self, line: dict) -> None:
        text = json.dumps(line, default=str, sort_keys=False) + "\n"
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
            try:
                fcntl.lockf(fd, fcntl.LOCK_EX)
                os.write(fd, text.encode())
            finally:
                os.close(fd)
        except OSError as exc:
            raise TrackingError(f"cannot append the job's line to {self.path} ({exc.strerror}); the job's "
                                "report.json holds it") from None


#: the JobReport fields a job's identity may fill
_IDENTITY = ("variant", "backend", "batch", "split", "decode", "model", "data", "batching", "precision", "stage")
