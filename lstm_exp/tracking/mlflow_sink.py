"""The MLflow sink: one run per job, nested under its sweep's parent run (``tracking=mlflow``).

What it does for a job (:class:`MlflowSink`, the :class:`~lstm_exp.tracking.sink.Sink` contract):
the store checked before any work (:func:`~lstm_exp.tracking.store_check.check_store`); in a sweep,
the store and experiment of the sweep's ``parent_run.json`` (never the environment of the process
that runs the job) and the reuse of an earlier FINISHED run with the same fingerprint
(:func:`_reuse_earlier`, a REUSED copy under the parent); the run started with the job's params
and tags, ``tracking_pending.json`` (:class:`~lstm_exp.tracking.mlflow_run.PendingUpload`) kept
beside the job's ``report.json`` until the run ended, so that ``python -m lstm_exp.sync`` uploads a
job whose store failed; the report's metrics, dataset input and artefacts
(:func:`~lstm_exp.tracking.mlflow_run.upload_report`); a failure's tag and Description.
No MLflow import until a method needs it: ``tracking=none`` never imports MLflow.
"""
from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any, Mapping, Optional

from lstm_exp.report.job import JobReport
from lstm_exp.tracking.mlflow_run import MlflowRun, PendingUpload, default_tracking_uri, upload_report
from lstm_exp.tracking.sink import JobRun, Sink
from lstm_exp.tracking.store_check import TrackingError, check_store, store_calls

#: the ``_target_`` of this sink in ``configs/tracking/*.yaml`` (how the sweep callback finds it)
TARGET = "lstm_exp.tracking.mlflow_sink.MlflowSink"


class MlflowSink(Sink):
    """One MLflow run per job (see the module docstring)."""

    #: a sweep's job records under the parent of its sweep's ``parent_run.json``, so it must find it
    needs_sweep_record = True

    def __init__(self, tracking_uri: Optional[str] = None, experiment_name: str = "lstm_exp",
                 log_artifacts: bool = True, root: str = ".") -> None:
        self.tracking_uri = tracking_uri or default_tracking_uri(root)
        self.experiment_name = experiment_name
        self.log_artifacts = bool(log_artifacts)
        self.run = MlflowRun(True, self.tracking_uri, experiment_name)
        self.pending: Optional[PendingUpload] = None
        self.job_dir: Optional[Path] = None
        #: a failed set_tags while the job ran: raised at record, once the report is on disk
        self.deferred: Optional[TrackingError] = None

    @property
    def run_id(self) -> Optional[str]:
        return self.run.run_id

    def bind(self, parent: Any) -> None:
        """In a sweep: the sweep's store and experiment."""
        if parent is not None and parent.tracking_uri:
            self.tracking_uri = parent.tracking_uri
            self.experiment_name = parent.experiment_name or self.experiment_name
            self.run = MlflowRun(True, self.tracking_uri, self.experiment_name)

    def check(self) -> None:
        check_store(self.tracking_uri)

    def swept_keys(self, parent: Any) -> list[str]:
        from lstm_exp.tracking.sweep import swept_keys_of

        return swept_keys_of(self.run, parent)

    def find_earlier(self, job: JobRun) -> Optional[JobReport]:
        return _reuse_earlier(self, job.fingerprint, job.parent, job.job_num, job.job_dir, job.run_name, job.tags)

    def start(self, job: JobRun) -> None:
        """The pending upload written, the run started, the pending upload given its run id."""
        self.job_dir = job.job_dir
        parent_run_id = job.parent.run_id if job.parent is not None else None
        self.pending = PendingUpload(job.run_name, job.params, job.tags, parent_run_id, self.tracking_uri,
                                     self.experiment_name, log_artifacts=self.log_artifacts)
        self.pending.write(job.job_dir)
        self.run.start(job.run_name, job.params, job.tags, parent_run_id=parent_run_id)
        self.pending.run_id = self.run.run_id
        self.pending.write(job.job_dir)

    def set_tags(self, tags: Mapping[str, str]) -> None:
        """Into the run; if the store fails meanwhile, the tags are kept for ``sync`` and the
        failure is raised by :meth:`record`, after the job reached its result."""
        try:
            self.run.set_tags(tags)
        except TrackingError as err:
            self.deferred = self.deferred or err
            if self.pending is not None and self.job_dir is not None:
                self.pending.tags.update({k: str(v) for k, v in tags.items()})
                self.pending.write(self.job_dir)

    def record(self, report: JobReport, job_dir: Path) -> None:
        if self.deferred is not None:
            raise self.deferred
        upload_report(self.run, report, job_dir, self.log_artifacts)

    def fail(self, message: str) -> None:
        """The first line as the tag that tables and the sweep summary keep; the run's Description
        (what MLflow's run page shows first) holds the whole message, every listed fault included."""
        from lstm_exp.tracking.store import DESCRIPTION_TAG, ERROR_TAG

        line = message.splitlines()[0] if message else ""
        self.run.set_tags({ERROR_TAG: line[:5000], DESCRIPTION_TAG: failure_description(message)})

    def end(self, status: str) -> None:
        """End the run; once it ended, nothing is left for ``sync`` to upload."""
        try:
            self.run.end(status)
        except TrackingError as err:
            print(f"lstm_exp: error: {err}; when the store is back: python -m lstm_exp.sync {self.job_dir}",
                  file=sys.stderr)
            return
        if not self.run.lost and self.job_dir is not None:
            PendingUpload.remove(self.job_dir)

    def closing_line(self) -> Optional[str]:
        if not self.run.run_id:
            return None
        return f"MLflow run {self.run.run_id} ({self.experiment_name});  open the UI: {self.run.ui_command()}"


def _reuse_earlier(tracker: MlflowSink, fingerprint: str, parent: Any, job_num: Optional[int],
                   job_dir: Path, run_name: str, tags: dict[str, str]) -> Optional[JobReport]:
    """In a sweep: the report of an earlier FINISHED run with the same fingerprint, or None. Under
    a parent run the job becomes a child run of it that carries the earlier measurement (params,
    metrics, report.json), tagged REUSED (:func:`lstm_exp.tracking.store.copy_reused_run`)."""
    from lstm_exp.tracking.store import (OVERRIDES_TAG, REUSED, REUSED_FROM_TAG, REUSED_SUFFIX, client,
                                         copy_reused_run, ensure_experiment, find_finished_run, measured_at,
                                         report_from_run)

    with store_calls(tracker.tracking_uri):  # a store that dies now: one TrackingError line
        mlflow_client = client(tracker.tracking_uri)
        earlier = find_finished_run(mlflow_client, ensure_experiment(mlflow_client, tracker.experiment_name),
                                    fingerprint)
        if earlier is None:
            return None
        report = report_from_run(earlier, status=REUSED, job_num=job_num)
        report.reused_from = earlier.data.tags.get(REUSED_FROM_TAG) or earlier.info.run_id
        report.overrides, report.job_dir, report.measured_at = tags[OVERRIDES_TAG], str(job_dir), measured_at(earlier)
        if parent is not None:
            report.run_name = run_name + REUSED_SUFFIX
            report.run_id = copy_reused_run(mlflow_client, earlier, parent.run_id, report.run_name, tags)
    print(f"lstm_exp: skip job {job_num} ({tags[OVERRIDES_TAG] or 'defaults'}): identical config FINISHED as run "
          f"{report.reused_from} (measured {report.measured_at}); force=true recomputes")
    return report


def failure_description(message: str) -> str:
    """The run's Description (Markdown, shown first on its MLflow page): the error's first line
    and, for a listing error, each further fault as a list item; text escaped so that paths and
    values read literally and long lines wrap."""
    def literal(text: str) -> str:
        return re.sub(r"([\\`*_\[\]<>#|~])", r"\\\1", text)

    first, *rest = message.splitlines() or [""]
    return "\n".join([f"**Failed:** {literal(first)}", "", *(f"- {literal(line)}" for line in rest[:50])])[:20000]


def mlflow_spec(tracking: Any) -> Optional[Mapping]:
    """The MLflow sink's spec in a ``tracking`` config, or None when it has none (``tracking=none``,
    ``tracking=jsonl``).  A ``tracking`` group written before sinks existed (an older sweep's
    ``multirun.yaml``) means MLflow unless it says ``enabled: false``."""
    if tracking is None:
        return None
    if "sinks" not in tracking:
        return tracking if tracking.get("enabled", True) else None
    sinks = tracking.get("sinks") or {}
    return next((spec for spec in sinks.values() if str(spec.get("_target_", "")) == TARGET), None)
