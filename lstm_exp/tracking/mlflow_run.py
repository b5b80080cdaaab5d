"""One MLflow run per Hydra job, nested under its sweep's parent run when there is one.

Params are a whitelist of flattened config keys (MLflow limits params; the whole tree goes in
as the ``config.yaml`` artefact).  A run that raises is ended FAILED.  The default store is
``sqlite:///<paths.root>/mlflow.db`` (absolute, so every job of a sweep shares it);
``MLFLOW_TRACKING_URI`` or ``tracking.tracking_uri`` override it.  Processes that share one SQLite
store open it under a lock (:func:`lstm_exp.tracking.store.client`), so none fails while another
creates its tables; SQLite suits a few concurrent jobs, a server or PostgreSQL many
(docs/RELIABILITY.md, "Concurrency and outputs").
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Optional

if TYPE_CHECKING:
    from lstm_exp.report.job import Dataset

log = logging.getLogger(__name__)

#: flattened config keys logged as params (prefix match on dotted keys)
PARAM_WHITELIST = (
    "data.kind", "data.root", "split.name", "batch", "backend.", "decode.", "model.", "train.",
    "export.opset", "infer.pad_to", "infer.max_utterances", "infer.batching", "infer.repeats", "infer.min_seconds",
    "infer.warmup", "infer.parity", "data.synth.snr_db", "data.synth.seed", "seed",
)
_SKIP_SUFFIXES = ("._target_",)


def default_tracking_uri(root: str | os.PathLike) -> str:
    """``$MLFLOW_TRACKING_URI`` if set, else an absolute sqlite store in ``root``."""
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env:
        return env
    return f"sqlite:///{Path(root).resolve() / 'mlflow.db'}"


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, dotted + "."))
        else:
            flat[dotted] = value
    return flat


def select_params(tree: Mapping[str, Any]) -> dict[str, str]:
    """The whitelisted params of a resolved config tree, as strings."""
    params = {}
    flat = flatten(tree)
    for key, value in flat.items():
        if key.endswith(_SKIP_SUFFIXES):
            continue
        if any(key == w or (w.endswith(".") and key.startswith(w)) for w in PARAM_WHITELIST):
            params[key] = "null" if value is None else str(value)
    # short aliases that users filter on in the UI
    params["backend"] = str(flat.get("backend.name"))
    params["decode"] = str(flat.get("decode.type"))
    params["split"] = str(flat.get("split.name"))
    params["model"] = str(flat.get("model.name"))
    return params


class MlflowRun:
    """A thin wrapper that also works when tracking is disabled (every call is then a no-op)."""

    def __init__(self, enabled: bool, tracking_uri: str, experiment_name: str) -> None:
        self.enabled = enabled
        self.tracking_uri = tracking_uri
        self.experiment_name = experiment_name
        self.run_id: Optional[str] = None
        self._mlflow = None

    def start(self, run_name: str, params: Mapping[str, str], tags: Mapping[str, str],
              parent_run_id: Optional[str] = None) -> None:
        if not self.enabled:
            return
        import mlflow

        from lstm_exp.tracking.store import PARENT_TAG, client, ensure_experiment

        self._mlflow = mlflow
        mlflow.set_tracking_uri(self.tracking_uri)
        experiment_id = ensure_experiment(client(self.tracking_uri), self.experiment_name)
        tags = dict(tags)
        if parent_run_id:
            tags[PARENT_TAG] = parent_run_id
        run = mlflow.start_run(run_name=run_name, experiment_id=experiment_id, tags=tags)
        self.run_id = run.info.run_id
        mlflow.log_params(dict(params))

    def log_params(self, params: Mapping[str, str]) -> None:
        if self._mlflow:
            self._mlflow.log_params(dict(params))

    def log_dataset(self, dataset: "Dataset") -> None:
        """The evaluated split as an MLflow dataset input (the UI's Dataset column)."""
        if not self._mlflow:
            return
        import json

        from mlflow.entities import Dataset as MlflowDataset
        from mlflow.entities import DatasetInput, InputTag

        entity = MlflowDataset(
            name=f"{dataset.corpus}-{dataset.split}", digest=dataset.digest, source_type="local",
            source=json.dumps({"uri": dataset.source}),
            profile=json.dumps({"utterances": dataset.utterances, "corpus": dataset.corpus, "split": dataset.split}),
        )
        self._mlflow.tracking.MlflowClient(self.tracking_uri).log_inputs(
            self.run_id, datasets=[DatasetInput(entity, tags=[InputTag("mlflow.data.context", "eval")])])

    def set_tags(self, tags: Mapping[str, str]) -> None:
        if self._mlflow:
            self._mlflow.set_tags(dict(tags))

    def log_metrics(self, metrics: Mapping[str, float], step: Optional[int] = None) -> None:
        if self._mlflow:
            self._mlflow.log_metrics({k: float(v) for k, v in metrics.items()}, step=step)

    def log_artifact(self, path: str | os.PathLike, subdir: Optional[str] = None) -> None:
        if self._mlflow:
            self._mlflow.log_artifact(str(path), artifact_path=subdir)

    def end(self, status: str) -> None:
        """``status``: FINISHED or FAILED."""
        if self._mlflow and self.run_id:
            self._mlflow.end_run(status=status)
            self._mlflow = None

    def ui_command(self) -> str:
        return f"mlflow ui --backend-store-uri {self.tracking_uri}"
