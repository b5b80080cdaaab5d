"""The top-level schema: one experiment = corpus -> prepare -> train -> export -> [convert]
-> infer -> score -> track, plus the small groups that have no library of their own
(``split``, ``infer``, ``paths``).

``configs/config.yaml`` names :class:`ExperimentConfig` as its base, so a key that is not here
is an error at composition time and a value of the wrong type is an error before any work.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from omegaconf import MISSING

from conf_schemas.data import DataConfig
from conf_schemas.decode import DecodeConfig
from conf_schemas.model import ExportConfig, ModelConfig, TrainConfig
from conf_schemas.report import ReportConfig
from conf_schemas.scenario import ScenarioConfig
from conf_schemas.tracking import TrackingConfig
from lstm_exp.backends.base import BackendConfig
from lstm_exp.errors import ConfigError
from lstm_exp.recipe import RECIPE_FRAMES  # with infer.batching=fixed and infer.pad_to=null

#: the pipeline's own stages in order; the backends add theirs (:func:`all_stages`)
CORE_STAGES = ("corpus", "prepare", "train", "export")
#: infer.batching modes (lstm_exp.data.batching.plan_batches)
BATCHING_MODES = ("fixed", "longest", "sorted")
SPLITS = ("dev", "test")


def all_stages() -> tuple[str, ...]:
    """Every stage in pipeline order, the registered backends' own included; ``stage=X`` runs X and
    what it needs, ``all`` the whole chain."""
    from lstm_exp.backends.registry import PLUGINS

    own = [stage.name for plugin in PLUGINS.values() for stage in plugin.own_stages]
    return (*CORE_STAGES, *dict.fromkeys(own), "infer")


@dataclass
class SplitConfig:
    """Which prepared split is evaluated: dev (50 speakers in TIMIT) or test (the 24-speaker core test)."""

    name: str = "dev"

    def __post_init__(self) -> None:
        if self.name not in SPLITS:
            raise ConfigError(f"split.name={self.name!r} is not a split: write split=dev or split=test")


@dataclass
class InferConfig:
    """How batches are formed (one planner: lstm_exp.data.batching.plan_batches) and timed."""

    #: fixed (every batch padded to pad_to frames, file order: the recipe) | longest (each batch
    #: padded to its longest, file order) | sorted (length-sorted, padded to each batch's longest)
    #: | null: fixed when pad_to is given or the backend's artefact has a static frame axis (acl),
    #: else longest
    batching: Optional[str] = None
    #: frames every batch is padded to with batching=fixed; null: 390 (the recipe's), or the OM's frames
    pad_to: Optional[int] = None
    #: untimed runs of the first batch after the cold start, before timing starts
    warmup: int = 3
    #: timed passes over the split, a floor (decoding and scoring happen on the first only); two,
    #: so that timing_cv (per-pass throughput) exists
    repeats: int = 2
    #: keep adding timed passes until they hold this many timed batches (MLPerf LoadGen's floor
    #: for a p90 claim is 64 samples, for p99 662: lstm_exp.metrics.host.MLPERF_MIN_SAMPLES)
    min_batches: int = 64
    #: ... and until this many seconds of passes have run, whichever is later (0: no minimum)
    min_seconds: float = 2.0
    #: start no pass beyond ``repeats`` after this many seconds of timed passes (null: no cap)
    max_seconds: Optional[float] = 30.0
    #: tag the run lstm_exp.timing_noisy=true when the coefficient of variation of per-pass
    #: throughput exceeds this ...
    noisy_cv: float = 0.10
    #: ... or when other processes took more than this fraction of the machine's CPU time during
    #: the timed passes (0.25: half a core of a 2-core machine)
    noisy_other_cpu: float = 0.25
    #: also run torch fp32 (CPU, or CUDA when the backend is on a GPU) on the same batches and log
    #: parity_max_abs_diff (log-probs) and parity_per_delta
    parity: bool = False
    #: evaluate only the first N utterances of the split (null: all)
    max_utterances: Optional[int] = None
    #: keep log-probs of every utterance as an .npz in the job folder
    save_log_probs: bool = False

    def __post_init__(self) -> None:
        if self.batching is not None and self.batching not in BATCHING_MODES:
            raise ConfigError(f"infer.batching={self.batching!r}: write one of {', '.join(BATCHING_MODES)}")
        if self.pad_to is not None and self.pad_to < 2:
            raise ConfigError(f"infer.pad_to={self.pad_to} is too small: write infer.pad_to=390 (recipe) or null (longest)")
        if self.pad_to is not None and self.pad_to % 2:
            raise ConfigError(f"infer.pad_to={self.pad_to} must be even (the recipe pads to an even length): write 390")
        if self.pad_to is not None and self.batching in ("longest", "sorted"):
            raise ConfigError(f"infer.pad_to={self.pad_to} is only used by infer.batching=fixed: remove it or write "
                              "infer.batching=fixed")
        if self.warmup < 0:
            raise ConfigError(f"infer.warmup={self.warmup} must be >= 0")
        if self.repeats < 1:
            raise ConfigError(f"infer.repeats={self.repeats} must be >= 1 (timed passes over the split)")
        if self.min_seconds < 0:
            raise ConfigError(f"infer.min_seconds={self.min_seconds} must be >= 0")
        if self.min_batches < 0:
            raise ConfigError(f"infer.min_batches={self.min_batches} must be >= 0 (0: repeats and min_seconds only)")
        if self.max_seconds is not None and self.max_seconds < self.min_seconds:
            raise ConfigError(f"infer.max_seconds={self.max_seconds} is below infer.min_seconds={self.min_seconds}: "
                              "write a cap >= min_seconds, or infer.max_seconds=null (no cap)")
        for name in ("noisy_cv", "noisy_other_cpu"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"infer.{name}={getattr(self, name)} must be > 0 (a threshold: e.g. "
                                  f"infer.{name}={getattr(InferConfig, name)})")
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
    #: the schema of the chosen backend (``backend=<name>``), a subclass of the common base
    backend: BackendConfig = MISSING
    decode: DecodeConfig = field(default_factory=DecodeConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    report: ReportConfig = field(default_factory=ReportConfig)
    infer: InferConfig = field(default_factory=InferConfig)
    #: how the split meets the backend: offline_batches (the guide's loop) or a LoadGen scenario
    scenario: ScenarioConfig = field(default_factory=ScenarioConfig)
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
        if self.data.kind != "kaldi_dir" and any(c.isspace() for c in str(self.paths.cache_dir)):
            corpus = "the synthetic corpus and its features" if self.data.kind == "synth" else "the features"
            raise ConfigError(f"paths.cache_dir={self.paths.cache_dir} has white space, and {corpus} go there, whose "
                              "paths a Kaldi wav.scp / feats.scp cannot hold: set paths.cache_dir to a folder without "
                              "spaces (e.g. paths.cache_dir=$HOME/lstm_exp_cache)")
        stages = all_stages()
        if self.stage != "all" and self.stage not in stages:
            raise ConfigError(f"stage={self.stage!r} is not a stage: write stage=all or one of {', '.join(stages)}")
        from lstm_exp.backends.registry import plugin_for

        plugin = plugin_for(getattr(self.backend, "name", ""))
        backend_stages = ("corpus", "prepare", *plugin.stages(self.backend), *plugin.user_stages, "infer")
        if self.stage != "all" and self.stage not in backend_stages:
            raise ConfigError(f"stage={self.stage} is not a stage of backend={plugin.name} ({self.backend.variant()}): "
                              f"write one of {', '.join(backend_stages)}")
        plugin.validate(self.backend, self)  # refuses an export / artefact source this backend cannot run
        derived_batching(self.infer, plugin.static_frames(self.backend), plugin.name,  # refuses what cannot fit
                         plugin.fixed_batching(self.backend))


def derived_batching(infer: InferConfig, static_frames: Optional[int], backend: str,
                     fixed_because: Optional[str] = None) -> tuple[str, Optional[int], str]:
    """``(batching, pad_to, why)``: what ``infer.batching`` / ``infer.pad_to`` left null resolve to
    for a backend whose artefact has ``static_frames`` (None: dynamic) or that runs fixed batches
    only ``fixed_because`` (the plugin's reason, None: any batching), and a clause saying so
    (empty when both were given).  Given values that cannot fit are a :class:`ConfigError`.

    ``lstm_exp.experiment.validate`` writes the result into the validated config, once, logging
    ``why``; ``ExperimentConfig`` itself never changes a value."""
    batching, pad_to = infer.batching, infer.pad_to
    if static_frames is not None:
        if batching not in (None, "fixed"):
            raise ConfigError(f"infer.batching={batching}: backend={backend}'s model has a static input of "
                              f"{static_frames} frames: write infer.batching=fixed")
        if pad_to not in (None, static_frames):
            raise ConfigError(f"infer.pad_to={pad_to}: the OM's input has backend.atc.frames={static_frames} frames; "
                              f"write infer.pad_to={static_frames} or null")
        why = f"backend={backend}'s model has a static input of {static_frames} frames"
        return "fixed", static_frames, "" if (batching, pad_to) == ("fixed", static_frames) else why
    if batching is None and fixed_because:
        batching, why = "fixed", fixed_because
    elif batching is None:
        batching = "fixed" if pad_to is not None else "longest"
        why = "infer.pad_to is given" if pad_to is not None else "the model takes any length"
    else:
        why = ""
    if batching == "fixed" and pad_to is None:
        pad_to, why = RECIPE_FRAMES, (why + "; " if why else "") + f"the recipe pads to {RECIPE_FRAMES} frames"
    return batching, pad_to, why
