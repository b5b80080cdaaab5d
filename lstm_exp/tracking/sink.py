"""Where a job's report goes: the sinks that ``tracking.sinks`` names.

``tracking.sinks`` maps a name to a Hydra ``_target_`` spec (``configs/tracking/*.yaml``, like
lightning-hydra-template's loggers): ``tracking=mlflow`` gives one MLflow sink
(:class:`lstm_exp.tracking.mlflow_sink.MlflowSink`), ``tracking=jsonl`` a local JSON-lines file
(:class:`lstm_exp.tracking.jsonl_sink.JsonLinesSink`), ``tracking=mlflow_jsonl`` both, and
``tracking=none`` none (nothing is instantiated, so nothing imports MLflow).  The job folder's
``report.json`` and the printed summary are the app's own and do not depend on any sink.

A sink's life in one job (``lstm_exp.app.run_job``), every method a no-op unless it overrides it:

``check()``                     before any work: raise ``StoreError`` when it cannot be used
``find_earlier(job)``           in a sweep: the report of an earlier identical measurement, or None
``start(job)``                  the job begins (its :class:`JobRun`)
``set_tags(tags)``              facts learnt on the way (the backend's), any time after ``start``
``record(report, job_dir)``     the job's :class:`~lstm_exp.report.JobReport` (FINISHED or REUSED)
``fail(message)``               the job failed with this ``LstmExpError`` message
``end(status)``                 FINISHED, FAILED or KILLED; always called once ``start`` was
``closing_line()``              a line for the printed summary (where to look), or None

A sink that cannot record raises :class:`~lstm_exp.tracking.store_check.TrackingError` (one line
naming where it writes); the job's ``report.json`` is on disk before ``record`` is called.
A new sink is a class here in ``lstm_exp/tracking/`` and one YAML under ``configs/tracking/``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional

from lstm_exp.errors import ConfigError
from lstm_exp.report.job import JobReport


@dataclass
class JobRun:
    """What a sink learns about a job when it starts: its name, params, tags and place."""

    run_name: str
    params: dict[str, str]
    tags: dict[str, str]
    job_dir: Path
    fingerprint: str
    overrides: str
    job_num: Optional[int] = None
    #: the sweep's ``parent_run.json`` (:class:`lstm_exp.tracking.sweep.SweepParent`), None for a single run
    parent: Any = None
    #: the JobReport identity fields (variant, backend, batch, ...)
    identity: dict[str, Any] = field(default_factory=dict)


class Sink:
    """Base of every sink: each method does nothing until a sink overrides it."""

    #: the run id this sink gave the job (written into the report), None if it has none
    run_id: Optional[str] = None
    #: a sweep's job is refused when it cannot find its sweep's ``parent_run.json`` (it runs where
    #: the sweep's folder is not): :func:`lstm_exp.tracking.sweep.require_sweep_record`
    needs_sweep_record: bool = False

    def check(self) -> None:
        """Raise ``StoreError`` (one line) when the sink cannot be used; called before any work."""

    def bind(self, parent: Any) -> None:
        """The job runs in a sweep whose ``parent_run.json`` says this (None: a single run)."""

    def swept_keys(self, parent: Any) -> list[str]:
        """The config keys the job's sweep sweeps, when this sink knows them (run names)."""
        return []

    def find_earlier(self, job: JobRun) -> Optional[JobReport]:
        """The report of an earlier identical measurement (status REUSED), or None."""
        return None

    def start(self, job: JobRun) -> None:
        """The job begins."""

    def set_tags(self, tags: Mapping[str, str]) -> None:
        """Facts about the job learnt while it runs (the backend's tags)."""

    def record(self, report: JobReport, job_dir: Path) -> None:
        """The job's report (FINISHED, or REUSED from an earlier measurement)."""

    def fail(self, message: str) -> None:
        """The job failed with this message (an ``LstmExpError``'s, first line first)."""

    def end(self, status: str) -> None:
        """The job ended: FINISHED, FAILED or KILLED."""

    def closing_line(self) -> Optional[str]:
        """Where to look at what the sink recorded (a line of the printed summary)."""
        return None


def make_sinks(specs: Optional[Mapping[str, Any]]) -> list[Sink]:
    """The sinks of ``tracking.sinks`` (name -> ``_target_`` spec), in their order; none for ``{}``
    or null (``tracking=none``).  A spec that is not a sink is a ``ConfigError`` naming it."""
    if not specs:
        return []
    from hydra.utils import instantiate

    sinks = []
    for name, spec in specs.items():
        target = spec.get("_target_") if isinstance(spec, Mapping) else None
        if not target:
            raise ConfigError(f"tracking.sinks.{name} has no _target_: write tracking.sinks.{name}._target_="
                              "<module.Class> (a lstm_exp.tracking.sink.Sink), or remove the entry")
        try:
            sink = instantiate(spec)
        except Exception as exc:  # a target that does not import, an argument it does not take
            cause = exc.__cause__ or exc
            raise ConfigError(f"tracking.sinks.{name}: cannot instantiate {target} ({str(cause).splitlines()[0]}): "
                              "fix its _target_ or arguments in configs/tracking/") from None
        if not isinstance(sink, Sink):
            raise ConfigError(f"tracking.sinks.{name}: {target} is not a lstm_exp.tracking.sink.Sink")
        sinks.append(sink)
    return sinks
