"""What every scenario gets and gives: ``Scenario(config, job).run(backend) -> EvaluationResult``.

The shape of optimum-benchmark's scenarios: a scenario owns how the split meets the backend and
what is timed; the backend is only ``load`` / ``run(x) -> RunOutput`` / ``warmup``
(:mod:`lstm_exp.backends.base`), so every scenario runs on every backend.  The
:class:`ScenarioJob` holds what the caller (:func:`lstm_exp.evaluate.evaluate_job`) prepared:
the split in memory, the decoder, the artefact to load (its load is the scenario's cold start),
the job folder its logs go to.  The result is the flat-metrics
:class:`~lstm_exp.evaluate.EvaluationResult` that ``JobReport.from_metrics`` types.
"""
from __future__ import annotations

import abc
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np

from lstm_exp.backends.base import Backend
from lstm_exp.data.batching import Example


@dataclass
class ScenarioJob:
    """One job's inputs to a scenario (everything but the backend)."""

    examples: Sequence[Example]
    units: Sequence[str]
    decoder: Any
    batch: int
    #: infer.batching (resolved: fixed | longest | sorted) and the frames ``fixed`` pads to
    batching: str
    pad_to: Optional[int]
    #: the ``infer`` config (warm-up, timing plan, noise thresholds)
    infer: Any
    #: input frames -> valid output frames (``CTCModel.output_lengths``)
    output_lengths: Callable[[np.ndarray], np.ndarray]
    #: utterance id -> seconds of audio
    utterance_seconds: dict
    #: the artefact to load (None: the backend is loaded already)
    artifact: Optional[Path] = None
    job_dir: Optional[Path] = None
    variant: str = ""
    progress: bool = False
    recipe_leading_space: bool = True
    #: the batch a static artefact (acl's OM) takes, to which smaller groups are padded with zero rows
    static_batch: Optional[int] = None
    #: a loaded torch fp32 backend for ``infer.parity`` (offline_batches only)
    reference: Optional[Backend] = None
    #: run tags the scenario adds (``lstm_exp.scenario_*``)
    tags: dict = field(default_factory=dict)

    @property
    def audio_seconds(self) -> float:
        return float(sum(self.utterance_seconds[ex.utt_id] for ex in self.examples))


class Scenario(abc.ABC):
    """A way of presenting the split to a backend and timing it."""

    #: the ``scenario.name`` it implements
    name: str = ""

    def __init__(self, config: Any, job: ScenarioJob) -> None:
        self.config = config
        self.job = job

    @abc.abstractmethod
    def run(self, backend: Backend):
        """Load (when ``job.artifact``), warm up, measure; return an ``EvaluationResult``."""
