"""One MLflow run per Hydra job, nested under its sweep's parent run when there is one: the
client side of the MLflow sink (:mod:`lstm_exp.tracking.mlflow_sink`) and of ``python -m lstm_exp.sync``.

Params are the job's (:func:`lstm_exp.tracking.params.job_params`: a whitelist of flattened
config keys; the whole tree goes in as the ``config.yaml`` artefact).  A run that raises is ended FAILED.  The default store is
``sqlite:///<paths.root>/mlflow.db`` (absolute, so every job of a sweep shares it);
``MLFLOW_TRACKING_URI`` or ``tracking.tracking_uri`` override it.  Processes that share one SQLite
store open it under a lock (:func:`lstm_exp.tracking.store.client`), so none fails while another
creates its tables; SQLite suits a few concurrent jobs, a server or PostgreSQL many
(docs/RELIABILITY.md, "Concurrency and outputs").

A tracking call that fails is one ``TrackingError`` line naming the URI
(:mod:`lstm_exp.tracking.store_check`), after the job's ``report.json`` is on disk; the job's
``tracking_pending.json`` (:class:`PendingUpload`) then lets ``python -m lstm_exp.sync`` upload it
later.  The dataset input is logged idempotently (:func:`log_dataset_input`).
"""
from __future__ import annotations

import json
import logging
import os
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Iterator, Mapping, Optional

if TYPE_CHECKING:
    from lstm_exp.report.job import Dataset

log = logging.getLogger(__name__)

def default_tracking_uri(root: str | os.PathLike) -> str:
    """``$MLFLOW_TRACKING_URI`` if set, else an absolute sqlite store in ``root``."""
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env:
        return env
    return f"sqlite:///{Path(root).resolve() / 'mlflow.db'}"


class MlflowRun:
    """One job's run through an ``MlflowClient`` bound to its run id (no process-global active run).

    Every call is a no-op when tracking is disabled.  A call that fails (the store went away, a
    server error) raises one :class:`~lstm_exp.tracking.store_check.TrackingError` line naming the
    URI, and the run is then *lost*: later calls do nothing, so a dead store costs one failed call,
    not one per metric and artefact (the job's ``report.json`` is already on disk for
    ``python -m lstm_exp.sync``).
    """

    def __init__(self, enabled: bool, tracking_uri: str, experiment_name: str) -> None:
        self.enabled = enabled
        self.tracking_uri = tracking_uri
        self.experiment_name = experiment_name
        self.run_id: Optional[str] = None
        self._client = None
        self.lost = False

    def start(self, run_name: str, params: Mapping[str, str], tags: Mapping[str, str],
              parent_run_id: Optional[str] = None) -> None:
        if not self.enabled:
            return
        from mlflow.tracking.context.registry import resolve_tags

        from lstm_exp.tracking.store import PARENT_TAG, client, ensure_experiment

        tags = dict(tags)
        if parent_run_id:
            tags[PARENT_TAG] = parent_run_id
        with self._failing_as_one_line():
            mlflow_client = client(self.tracking_uri)
            experiment_id = ensure_experiment(mlflow_client, self.experiment_name)
            run = mlflow_client.create_run(experiment_id, run_name=run_name, tags=resolve_tags(tags))
            self._client, self.run_id = mlflow_client, run.info.run_id
            if params:
                from mlflow.entities import Param

                mlflow_client.log_batch(self.run_id, params=[Param(k, str(v)) for k, v in params.items()])

    def resume(self, run_id: str) -> None:
        """Record into an existing run (``python -m lstm_exp.sync``)."""
        from lstm_exp.tracking.store import client

        with self._failing_as_one_line():
            self._client, self.run_id = client(self.tracking_uri), run_id

    @property
    def active(self) -> bool:
        return self._client is not None and self.run_id is not None and not self.lost

    @contextmanager
    def _failing_as_one_line(self) -> Iterator[None]:
        from lstm_exp.tracking.store_check import TrackingError, tracking_error

        try:
            yield
        except TrackingError:
            raise
        except Exception as exc:  # MlflowException, requests / urllib3, SQLAlchemy: the store failed
            self.lost = True
            raise tracking_error(self.tracking_uri, exc) from None

    def log_dataset(self, dataset: "Dataset") -> None:
        """The evaluated split as an MLflow dataset input (the UI's Dataset column)."""
        if not self.active:
            return
        with self._failing_as_one_line():
            log_dataset_input(self._client, self.run_id, dataset)

    def set_tags(self, tags: Mapping[str, str]) -> None:
        if self.active:
            from mlflow.entities import RunTag

            with self._failing_as_one_line():
                self._client.log_batch(self.run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def log_metrics(self, metrics: Mapping[str, float], step: Optional[int] = None) -> None:
        if self.active:
            from mlflow.entities import Metric

            now = int(time.time() * 1000)
            with self._failing_as_one_line():
                self._client.log_batch(self.run_id, metrics=[Metric(k, float(v), now, step or 0)
                                                             for k, v in metrics.items()])

    def log_artifact(self, path: str | os.PathLike, subdir: Optional[str] = None) -> None:
        if self.active:
            with self._failing_as_one_line():
                self._client.log_artifact(self.run_id, str(path), artifact_path=subdir)

    def end(self, status: str) -> None:
        """``status``: FINISHED, FAILED or KILLED (nothing when the run was lost)."""
        if self.active:
            with self._failing_as_one_line():
                self._client.set_terminated(self.run_id, status)
            self._client = None

    def ui_command(self) -> str:
        return f"mlflow ui --backend-store-uri {self.tracking_uri}"


#: what MLflow's stores raise when two processes insert the same dataset at once
_UNIQUE_VIOLATION = ("unique constraint", "uniqueviolation", "duplicate key", "duplicate entry")


def log_dataset_input(mlflow_client, run_id: str, dataset: "Dataset") -> None:
    """Log ``dataset`` as the run's eval input, idempotently under races: MLflow inserts a dataset
    (per experiment, name and digest) unless it finds it, so two jobs logging the same new dataset
    at once make one of them fail on the unique key; a second try then finds the row."""
    from mlflow.entities import Dataset as MlflowDataset
    from mlflow.entities import DatasetInput, InputTag

    entity = MlflowDataset(
        name=f"{dataset.corpus}-{dataset.split}", digest=dataset.digest, source_type="local",
        source=json.dumps({"uri": dataset.source}),
        profile=json.dumps({"utterances": dataset.utterances, "corpus": dataset.corpus, "split": dataset.split}),
    )
    inputs = [DatasetInput(entity, tags=[InputTag("mlflow.data.context", "eval")])]
    try:
        mlflow_client.log_inputs(run_id, datasets=inputs)
    except Exception as exc:
        if not any(marker in str(exc).lower() for marker in _UNIQUE_VIOLATION):
            raise
        log.debug("dataset %s raced another job (%s); logging it again", entity.name, exc)
        mlflow_client.log_inputs(run_id, datasets=inputs)


#: files of a job folder logged as the run's artefacts (when ``tracking.log_artifacts``)
JOB_ARTIFACTS = ("config.yaml", "report.json", "utterances.tsv", "stages.json", "confusions.json", "ref.trn", "hyp.trn",
                 "per_speaker.tsv", "timings.tsv",
                 "mlperf_log_summary.txt", "mlperf_log_detail.txt", "mlperf_log_accuracy.json")  # LoadGen scenarios


def upload_report(tracker: MlflowRun, report, job_dir: Path, log_artifacts: bool = True) -> None:
    """A finished job's :class:`~lstm_exp.report.JobReport` into its run: metrics, dataset input,
    the stage keys (a run that stopped before inference), the job folder's artefacts.  The one
    upload of a job, whether it runs right after the job or later (``python -m lstm_exp.sync``)."""
    tracker.log_metrics(report.metrics())
    if report.dataset is not None:
        tracker.log_dataset(report.dataset)
    if report.accuracy.per is None:  # stage=<not infer>
        tracker.set_tags({f"cache.{k}": v for k, v in report.stage_keys.items()})
    if not log_artifacts:
        return
    for name in JOB_ARTIFACTS:
        if (job_dir / name).is_file():
            tracker.log_artifact(job_dir / name)
    overrides = job_dir / ".hydra" / "overrides.yaml"
    if overrides.is_file():
        tracker.log_artifact(overrides, "hydra")


@dataclass
class PendingUpload:
    """What a job has still to record: ``<job dir>/tracking_pending.json``, written before its run
    starts and removed once the run ended.  A job whose store failed keeps it (next to its
    ``report.json``), and ``python -m lstm_exp.sync`` uploads the job from it: into the run it
    started (``run_id``) or, when the store was gone before that, into a new run under its parent."""

    run_name: str
    params: dict
    tags: dict
    parent_run_id: Optional[str]
    tracking_uri: str
    experiment_name: str
    log_artifacts: bool = True
    run_id: Optional[str] = None

    FILE: ClassVar[str] = "tracking_pending.json"

    def write(self, job_dir: Path) -> None:
        job_dir.mkdir(parents=True, exist_ok=True)
        tmp = job_dir / f".{self.FILE}.tmp"
        tmp.write_text(json.dumps(asdict(self), indent=2, default=str) + "\n")
        os.replace(tmp, job_dir / self.FILE)

    @classmethod
    def read(cls, job_dir: Path) -> "PendingUpload":
        return cls(**json.loads((job_dir / cls.FILE).read_text()))

    @classmethod
    def remove(cls, job_dir: Path) -> None:
        (job_dir / cls.FILE).unlink(missing_ok=True)
