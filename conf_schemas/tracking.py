"""Schema of the ``tracking`` group: where and how runs are recorded in MLflow."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from lstm_exp.errors import ConfigError


@dataclass
class TrackingConfig:
    """MLflow tracking.

    ``tracking_uri`` null means: ``$MLFLOW_TRACKING_URI`` if set, else
    ``sqlite:///<paths.root>/mlflow.db`` (absolute, so every job of a sweep shares one store).
    """

    enabled: bool = True
    tracking_uri: Optional[str] = None
    experiment_name: str = "lstm_exp"
    #: null: "<variant>-b<batch>-<split>", e.g. onnxruntime-cpu-fp32-b16-dev
    run_name: Optional[str] = None
    #: per-utterance table and composed config as artefacts
    log_artifacts: bool = True

    def __post_init__(self) -> None:
        if not self.experiment_name.strip():
            raise ConfigError("tracking.experiment_name is empty: write tracking.experiment_name=<name>")
