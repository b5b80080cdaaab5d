"""Reading and preparing the MLflow store: the experiment (created once, as a model-training
experiment), job reports read back from runs, earlier identical runs, the runs of a sweep.

Tags lstm_exp writes (besides MLflow's own ``mlflow.parentRunId`` / ``mlflow.runName``):

    lstm_exp.role            job | sweep
    lstm_exp.fingerprint     sha256 of the resolved config less run-only keys (resumable sweeps)
    lstm_exp.job_num         the Hydra job number within its sweep
    lstm_exp.overrides       the job's (or sweep's) overrides
    lstm_exp.error           one line, on a FAILED job
    lstm_exp.reused.<num>    on a sweep's parent: job <num> reused this earlier run id
    lstm_exp.sweep_dir / lstm_exp.launcher / lstm_exp.concurrent_jobs
"""
from __future__ import annotations

import fcntl
import logging
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Optional

from lstm_exp.report.job import Dataset, JobReport

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
        variant=params.get("variant", ""),
        backend=params.get("backend", ""),
        batch=_int(params.get("batch")),
        split=params.get("split", ""),
        decode=params.get("decode", ""),
        model=params.get("model", ""),
        data=params.get("data.kind", ""),
        batching=params.get("batching", ""),
        precision=params.get("precision", ""),
        stage=tags.get("stage", "all"),
        status=status or run.info.status,
        error=tags.get(ERROR_TAG),
        fingerprint=tags.get(FINGERPRINT_TAG, ""),
        overrides=tags.get(OVERRIDES_TAG, ""),
        job_num=job_num if job_num is not None else _int(tags.get(JOB_NUM_TAG)),
        run_id=run.info.run_id,
        run_name=run.info.run_name,
        stage_keys={k[len("cache."):]: v for k, v in tags.items() if k.startswith("cache.")},
    )
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
    """Every job of a sweep: its nested children, plus the earlier runs it reused."""
    experiment_id = parent_run.info.experiment_id
    children = _search_all(mlflow_client, experiment_id, f"tags.`{PARENT_TAG}` = '{parent_run.info.run_id}'")
    reports = []
    for run in children:
        status = run.info.status
        if status == "RUNNING" and parent_run.info.status != "RUNNING":
            status = "FAILED"  # the sweep is over: a job still RUNNING was killed
        report = report_from_run(run, status=status)
        if status == "FAILED" and not report.error:
            report.error = "the job's run did not finish (killed?)"
        reports.append(report)
    for key, run_id in parent_run.data.tags.items():
        if key.startswith(REUSED_PREFIX):
            earlier = mlflow_client.get_run(run_id)
            reports.append(report_from_run(earlier, status="REUSED", job_num=_int(key[len(REUSED_PREFIX):])))
            reports[-1].reused_from = run_id
    return reports


def _search_all(mlflow_client, experiment_id: str, filter_string: str) -> list:
    runs, token = [], None
    while True:
        page = mlflow_client.search_runs([experiment_id], filter_string=filter_string, max_results=1000,
                                         page_token=token)
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def latest_sweep(mlflow_client, experiment_name: str):
    """The most recent sweep parent run of an experiment, or None."""
    experiment = mlflow_client.get_experiment_by_name(experiment_name)
    if experiment is None:
        return None
    runs = mlflow_client.search_runs([experiment.experiment_id], filter_string=f"tags.`{ROLE_TAG}` = 'sweep'",
                                     order_by=["attributes.start_time DESC"], max_results=1)
    return runs[0] if runs else None
