"""The top-level schema: one experiment = corpus -> prepare -> train -> export -> [convert]
-> infer -> score -> track, plus the small groups that have no library of their own
(``split``, ``infer``, ``paths``).

``configs/config.yaml`` names :class:`ExperimentConfig` as its base, so a key that is not here
is an error at composition time and a value of the wrong type is an error before any work.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from omegaconf import MISSING

from conf_schemas.data import DataConfig
from conf_schemas.decode import DecodeConfig
from conf_schemas.model import ExportConfig, ModelConfig, TrainConfig
from conf_schemas.tracking import TrackingConfig
from lstm_exp.errors import ConfigError

#: every stage in pipeline order; ``stage=X`` runs X and what it needs, ``all`` the whole chain
STAGES = ("corpus", "prepare", "train", "export", "convert", "preprocess", "infer")
SPLITS = ("dev", "test")


@dataclass
class SplitConfig:
    """Which prepared split is evaluated: dev (50 speakers in TIMIT) or test (the 24-speaker core test)."""

    name: str = "dev"

    def __post_init__(self) -> None:
        if self.name not in SPLITS:
            raise ConfigError(f"split.name={self.name!r} is not a split: write split=dev or split=test")


@dataclass
class InferConfig:
    """How batches are formed and timed."""

    #: frames after skipping that every batch is padded to: 390 (the recipe's static shape) or
    #: null (each batch's longest utterance)
    pad_to: Optional[int] = None
    #: untimed runs of the first batch before timing starts
    warmup: int = 3
    #: evaluate only the first N utterances of the split (null: all)
    max_utterances: Optional[int] = None
    #: keep log-probs of every utterance as an .npz in the job folder
    save_log_probs: bool = False

    def __post_init__(self) -> None:
        if self.pad_to is not None and self.pad_to < 2:
            raise ConfigError(f"infer.pad_to={self.pad_to} is too small: write infer.pad_to=390 (recipe) or null (longest)")
        if self.pad_to is not None and self.pad_to % 2:
            raise ConfigError(f"infer.pad_to={self.pad_to} must be even (the recipe pads to an even length): write 390")
        if self.warmup < 0:
            raise ConfigError(f"infer.warmup={self.warmup} must be >= 0")
        if self.max_utterances is not None and self.max_utterances < 1:
            raise ConfigError(f"infer.max_utterances={self.max_utterances} must be >= 1 or null (all)")


@dataclass
class PathsConfig:
    """Absolute paths, resolved from the launch directory, so that every job of a sweep shares one
    stage cache and one MLflow store whatever its own working directory is."""

    root: str = MISSING
    cache_dir: str = MISSING


@dataclass
class ExperimentConfig:
    """Everything one Hydra job needs."""

    data: DataConfig = MISSING
    split: SplitConfig = field(default_factory=SplitConfig)
    model: ModelConfig = MISSING
    train: TrainConfig = MISSING
    export: ExportConfig = field(default_factory=ExportConfig)
    #: one of conf_schemas.backend.TorchBackendConfig / OnnxRuntimeBackendConfig / conf_schemas.acl.AclBackendConfig
    backend: Any = MISSING
    decode: DecodeConfig = field(default_factory=DecodeConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    infer: InferConfig = field(default_factory=InferConfig)
    paths: PathsConfig = field(default_factory=PathsConfig)
    #: utterances per inference batch (the recipe sweeps 1, 4, 8, 16, 32)
    batch: int = 16
    #: all | corpus | prepare | train | export | convert | preprocess | infer
    stage: str = "all"
    #: recompute the selected stage even when its cache entry exists
    force: bool = False
    seed: int = 0
    #: show progress bars
    progress: bool = True

    def __post_init__(self) -> None:
        if self.batch < 1:
            raise ConfigError(f"batch={self.batch} is impossible: write a batch size >= 1, e.g. batch=16")
        if self.stage != "all" and self.stage not in STAGES:
            raise ConfigError(f"stage={self.stage!r} is not a stage: write stage=all or one of {', '.join(STAGES)}")
        backend_name = getattr(self.backend, "name", None)
        if self.stage in ("convert", "preprocess") and backend_name != "acl":
            raise ConfigError(f"stage={self.stage} is only part of backend=acl: add backend=acl")
        if backend_name == "acl" and self.infer.pad_to not in (None, self.backend.atc.frames):
            frames = self.backend.atc.frames
            raise ConfigError(
                f"infer.pad_to={self.infer.pad_to}: the OM's input has backend.atc.frames={frames} frames; "
                f"write infer.pad_to={frames} or null"
            )
