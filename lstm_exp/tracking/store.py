"""Reading and preparing the MLflow store: the experiment (created once, as a model-training
experiment), job reports read back from runs, earlier identical runs, the runs of a sweep.

Tags lstm_exp writes (besides MLflow's own ``mlflow.parentRunId`` / ``mlflow.runName``):

    lstm_exp.role            job | sweep
    lstm_exp.fingerprint     sha256 of the resolved config less run-only keys (resumable sweeps)
    lstm_exp.job_num         the Hydra job number within its sweep
    lstm_exp.overrides       the job's (or sweep's) overrides
    lstm_exp.error           one line, on a FAILED job
    lstm_exp.sweep           on a sweep's parent and every job of it: the parent's run id (the
                             saved view's filter)
    lstm_exp.swept           on a sweep's parent: the config keys its overrides sweep, comma-separated
    lstm_exp.status          REUSED on a job copied from an earlier measurement
    lstm_exp.reused_from     on a REUSED job: the run id of the original measurement
    lstm_exp.measured_at     on a REUSED job: when the original measurement ended (ISO 8601, UTC)
    lstm_exp.reused.<num>    on a parent of an older version: job <num> reused this earlier run id
                             (still read; sweeps now copy a reused job under their parent instead)
    lstm_exp.sweep_dir / lstm_exp.launcher / lstm_exp.concurrent_jobs
"""
from __future__ import annotations

import fcntl
import logging
import os
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator, Optional

from lstm_exp.report.job import Dataset, JobReport
from lstm_exp.tracking.params import identity_from_params

log = logging.getLogger(__name__)

#: MLflow 3's experiment-kind tag: the UI opens a custom_model_development experiment on its runs
#: table rather than the GenAI overview (enum in mlflow/server/js; mlflow/demo sets genai_development)
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"
PARENT_TAG = "mlflow.parentRunId"
ROLE_TAG = "lstm_exp.role"
FINGERPRINT_TAG = "lstm_exp.fingerprint"
JOB_NUM_TAG = "lstm_exp.job_num"
OVERRIDES_TAG = "lstm_exp.overrides"
ERROR_TAG = "lstm_exp.error"
#: MLflow's run description (Markdown), shown at the top of the run page
DESCRIPTION_TAG = "mlflow.note.content"
REUSED_PREFIX = "lstm_exp.reused."
SWEEP_TAG = "lstm_exp.sweep"
SWEPT_TAG = "lstm_exp.swept"
STATUS_TAG = "lstm_exp.status"
REUSED_FROM_TAG = "lstm_exp.reused_from"
MEASURED_AT_TAG = "lstm_exp.measured_at"
REUSED = "REUSED"
#: what a reused job's run name ends with
REUSED_SUFFIX = " (reused)"
#: the job artefact that a reused job carries over from the original measurement
REPORT_ARTIFACT = "report.json"


def quiet_alembic() -> None:
    logging.getLogger("alembic").setLevel(logging.WARNING)


def sqlite_file(tracking_uri: str) -> Optional[Path]:
    """The database file of a ``sqlite:///`` store (None for other stores and in-memory ones)."""
    prefix = "sqlite:///"
    if not tracking_uri.startswith(prefix) or tracking_uri[len(prefix):] in ("", ":memory:"):
        return None
    return Path(tracking_uri[len(prefix):].split("?", 1)[0])


@contextmanager
def _store_lock(tracking_uri: str) -> Iterator[None]:
    """Hold ``<db>.lock`` beside a SQLite store: MLflow creates (or upgrades) a store's tables when
    a process first opens it, and processes doing that at once on a fresh file fail (two shells
    started together in a new folder; a sweep's jobs are safe, its callback opens the store first)."""
    db = sqlite_file(tracking_uri)
    if db is None:
        yield
        return
    db.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(f"{db}.lock", os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX)
        except OSError as exc:  # a file system without locks: open unserialised, as MLflow itself does
            log.debug("cannot lock %s.lock (%s); opening the store unserialised", db, exc)
        yield
    finally:
        os.close(fd)  # closing drops the lock


def client(tracking_uri: str):
    """An MlflowClient of the store, which this process opens (creates) under :func:`_store_lock`;
    MLflow caches the opened store per URI, so the fluent API reuses it."""
    from mlflow.tracking import MlflowClient

    quiet_alembic()
    with _store_lock(tracking_uri):
        return MlflowClient(tracking_uri=tracking_uri)


def ensure_experiment(mlflow_client, name: str) -> str:
    """The experiment's id; created (with the model-training kind tag) if it does not exist.
    Called once before a sweep's jobs start, so parallel jobs never race to create it."""
    experiment = mlflow_client.get_experiment_by_name(name)
    if experiment is None:
        try:
            return mlflow_client.create_experiment(name, tags={EXPERIMENT_KIND_TAG: EXPERIMENT_KIND})
        except Exception:  # another process created it in between
            experiment = mlflow_client.get_experiment_by_name(name)
            if experiment is None:
                raise
    if EXPERIMENT_KIND_TAG not in experiment.tags:
        mlflow_client.set_experiment_tag(experiment.experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)
    return experiment.experiment_id


def _int(value: Any) -> Optional[int]:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def report_from_run(run, status: Optional[str] = None, job_num: Optional[int] = None) -> JobReport:
    """A :class:`JobReport` rebuilt from a run's metrics, params and tags (the store alone)."""
    params, tags = run.data.params, run.data.tags
    report = JobReport.from_metrics(
        run.data.metrics,
        **identity_from_params(params),
        stage=tags.get("stage", "all"),
        status=status or run.info.status,
        error=tags.get(ERROR_TAG),
        fingerprint=tags.get(FINGERPRINT_TAG, ""),
        overrides=tags.get(OVERRIDES_TAG, ""),
        job_num=job_num if job_num is not None else _int(tags.get(JOB_NUM_TAG)),
        run_id=run.info.run_id,
        run_name=run.info.run_name,
        stage_keys={k[len("cache."):]: v for k, v in tags.items() if k.startswith("cache.")},
        job_dir=tags.get("hydra.job_dir"),
    )
    report.read_measurement_tags(tags)  # host, measured_at, the noise verdict (a REUSED copy keeps the original's)
    inputs = getattr(run, "inputs", None)
    for dataset_input in getattr(inputs, "dataset_inputs", None) or []:
        ds = dataset_input.dataset
        report.dataset = Dataset(corpus=ds.name.rsplit("-", 1)[0], split=ds.name.rsplit("-", 1)[-1],
                                 utterances=int(report.errors.utterances or 0), digest=ds.digest, source=ds.source)
    return report


def find_finished_run(mlflow_client, experiment_id: str, fingerprint: str):
    """The latest FINISHED job run with this fingerprint, or None."""
    runs = mlflow_client.search_runs(
        [experiment_id],
        filter_string=f"tags.`{FINGERPRINT_TAG}` = '{fingerprint}' and attributes.status = 'FINISHED' "
                      f"and tags.`{ROLE_TAG}` = 'job'",
        order_by=["attributes.start_time DESC"], max_results=1,
    )
    return runs[0] if runs else None


def sweep_reports(mlflow_client, parent_run) -> list[JobReport]:
    """Every job of a sweep: its nested children (reused ones are children too, status REUSED),
    plus, for parents written before reused jobs were copied, the earlier runs its
    ``lstm_exp.reused.<num>`` tags name (unless a child already stands for that job)."""
    experiment_id = parent_run.info.experiment_id
    children = _search_all(mlflow_client, experiment_id, f"tags.`{PARENT_TAG}` = '{parent_run.info.run_id}'")
    reports = [_child_report(run, parent_run) for run in children]
    seen = {r.job_num for r in reports}
    for key, run_id in parent_run.data.tags.items():
        job_num = _int(key[len(REUSED_PREFIX):]) if key.startswith(REUSED_PREFIX) else None
        if key.startswith(REUSED_PREFIX) and job_num not in seen:
            reports.append(report_from_run(mlflow_client.get_run(run_id), status=REUSED, job_num=job_num))
            reports[-1].reused_from = run_id
    return reports


def _child_report(run, parent_run) -> JobReport:
    status = run.info.status
    if status == "RUNNING" and parent_run.info.status != "RUNNING":
        status = "FAILED"  # the sweep is over: a job still RUNNING was killed
    if status == "FINISHED" and run.data.tags.get(STATUS_TAG) == REUSED:
        status = REUSED
    report = report_from_run(run, status=status)
    report.reused_from = run.data.tags.get(REUSED_FROM_TAG)
    report.measured_at = run.data.tags.get(MEASURED_AT_TAG)
    if status == "FAILED" and not report.error:
        report.error = "the job's run did not finish (killed?)"
    return report


def measured_at(run) -> str:
    """When a run's measurement was made (ISO 8601, UTC): its own ``lstm_exp.measured_at`` when it
    is itself a copy, else its end (or start) time."""
    if run.data.tags.get(MEASURED_AT_TAG):
        return run.data.tags[MEASURED_AT_TAG]
    millis = run.info.end_time or run.info.start_time or 0
    return datetime.fromtimestamp(millis / 1000, tz=timezone.utc).isoformat(timespec="seconds")


#: tags of the earlier run that a copy does not carry over (MLflow's bookkeeping, the old parent)
_NOT_COPIED = (PARENT_TAG, "mlflow.runName", "mlflow.user", "mlflow.source.", "mlflow.note.content", SWEEP_TAG,
               JOB_NUM_TAG, OVERRIDES_TAG, "hydra.job_dir", "sweep_dir")


def copy_reused_run(mlflow_client, earlier, parent_run_id: str, run_name: str, tags: dict[str, str]) -> str:
    """A new FINISHED child of ``parent_run_id`` standing for a job whose identical configuration
    ``earlier`` measured: its params, latest metrics, dataset inputs and ``report.json``, tagged
    REUSED with ``lstm_exp.reused_from`` (the original measurement, through earlier copies) and
    ``lstm_exp.measured_at``; ``tags`` are the new job's own (job number, overrides, sweep).
    Returns the new run's id."""
    from mlflow.entities import Metric, Param

    original = earlier.data.tags.get(REUSED_FROM_TAG) or earlier.info.run_id
    copied = {k: v for k, v in earlier.data.tags.items() if not k.startswith(_NOT_COPIED)}
    copied.update(tags)
    copied.update({PARENT_TAG: parent_run_id, STATUS_TAG: REUSED, REUSED_FROM_TAG: original,
                   MEASURED_AT_TAG: measured_at(earlier)})
    run = mlflow_client.create_run(earlier.info.experiment_id, run_name=run_name, tags=copied)
    run_id = run.info.run_id
    try:
        stamp = earlier.info.end_time or earlier.info.start_time or 0
        mlflow_client.log_batch(
            run_id,
            metrics=[Metric(k, float(v), stamp, 0) for k, v in earlier.data.metrics.items()],
            params=[Param(k, v) for k, v in earlier.data.params.items()],
        )
        _copy_inputs(mlflow_client, earlier, run_id)
        _copy_report(mlflow_client, earlier, run_id)
    except Exception:
        mlflow_client.set_terminated(run_id, "FAILED")
        raise
    mlflow_client.set_terminated(run_id, "FINISHED")
    return run_id


def _copy_inputs(mlflow_client, earlier, run_id: str) -> None:
    inputs = getattr(getattr(earlier, "inputs", None), "dataset_inputs", None) or []
    if inputs:
        mlflow_client.log_inputs(run_id, datasets=list(inputs))


def _copy_report(mlflow_client, earlier, run_id: str) -> None:
    """The earlier run's ``report.json`` artefact, when it has one (tracking.log_artifacts=false
    leaves none)."""
    import tempfile

    if not any(f.path == REPORT_ARTIFACT for f in mlflow_client.list_artifacts(earlier.info.run_id)):
        return
    with tempfile.TemporaryDirectory() as tmp:
        local = mlflow_client.download_artifacts(earlier.info.run_id, REPORT_ARTIFACT, tmp)
        mlflow_client.log_artifact(run_id, local)


def _search_all(mlflow_client, experiment_id: str, filter_string: str) -> list:
    runs, token = [], None
    while True:
        page = mlflow_client.search_runs([experiment_id], filter_string=filter_string, max_results=1000,
                                         page_token=token)
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def sweep_parents(mlflow_client, experiment_name: str) -> list:
    """The sweep parent runs of an experiment, newest first (empty if there is no such experiment)."""
    experiment = mlflow_client.get_experiment_by_name(experiment_name)
    if experiment is None:
        return []
    runs = _search_all(mlflow_client, experiment.experiment_id, f"tags.`{ROLE_TAG}` = 'sweep'")
    return sorted(runs, key=lambda r: r.info.start_time or 0, reverse=True)


def has_finished_job(mlflow_client, parent_run) -> bool:
    """Whether at least one job of the sweep finished (measured now or reused)."""
    finished = mlflow_client.search_runs(
        [parent_run.info.experiment_id], max_results=1,
        filter_string=f"tags.`{PARENT_TAG}` = '{parent_run.info.run_id}' and attributes.status = 'FINISHED'")
    return bool(finished) or any(k.startswith(REUSED_PREFIX) for k in parent_run.data.tags)


def latest_sweep(mlflow_client, experiment_name: str):
    """The most recent sweep of an experiment with at least one finished job, or None (a sweep that
    is still starting, or whose every job failed, is not "the latest result")."""
    return next((run for run in sweep_parents(mlflow_client, experiment_name)
                 if has_finished_job(mlflow_client, run)), None)
