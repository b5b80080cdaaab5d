"""Schema of the ``tracking`` group: which sinks a job's report goes to, and MLflow's settings.

``sinks`` maps a name to a Hydra ``_target_`` spec of a :class:`lstm_exp.tracking.sink.Sink`
(``configs/tracking/*.yaml``); ``tracking=none`` has none.  The other fields are the MLflow
sink's, kept at the top of the group so that ``tracking.tracking_uri=`` reads as it always did
(``configs/tracking/mlflow.yaml`` passes them to the sink by interpolation).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, Optional

from lstm_exp.errors import ConfigError


@dataclass
class TrackingConfig:
    """Where job reports go.

    ``tracking_uri`` null means: ``$MLFLOW_TRACKING_URI`` if set, else
    ``sqlite:///<paths.root>/mlflow.db`` (absolute, so every job of a sweep shares one store).
    """

    #: name -> {_target_: <module.Class>, <its arguments>}; empty: no sink (tracking=none)
    sinks: Dict[str, Any] = field(default_factory=dict)
    tracking_uri: Optional[str] = None
    experiment_name: str = "lstm_exp"
    #: null: "<variant>-b<batch>-<split>", e.g. onnxruntime-cpu-fp32-b16-dev
    run_name: Optional[str] = None
    #: per-utterance table and composed config as artefacts
    log_artifacts: bool = True

    def __post_init__(self) -> None:
        if not self.experiment_name.strip():
            raise ConfigError("tracking.experiment_name is empty: write tracking.experiment_name=<name>")
        for name, spec in self.sinks.items():
            if not isinstance(spec, dict) or not spec.get("_target_"):
                raise ConfigError(f"tracking.sinks.{name} has no _target_: write tracking.sinks.{name}._target_="
                                  "<module.Class> (a lstm_exp.tracking.sink.Sink), or remove the entry")
