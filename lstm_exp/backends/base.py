"""The one interface every inference backend implements.

A backend turns a padded batch ``x`` float32 ``[B, T, 243]`` (batch-major, as the recipe's
ONNX input ``actual_input_1``) into time-major log-probs ``[T', B, C]`` (the recipe's
``output1``) on the host, and says how long the model itself took.

Timing contract (recorded with every figure, see ``lstm_exp.metrics.timing``):

* ``infer_ms``: the model execute only, measured by the backend around the call that runs the
  network, after the device is synchronised (CUDA: stream sync; ACL: ``execute`` is
  synchronous).  Host-device copies are excluded where the runtime allows it.
* ``e2e_ms``: measured by the caller around :meth:`Backend.run` - numpy batch in, numpy
  log-probs out on the host, copies included.

Life cycle: ``load(artifact)`` once, ``warmup(x)`` a few times, ``run(x)`` per batch,
``close()`` at the end (also through the context manager).
"""
from __future__ import annotations

import abc
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np


@dataclass
class RunOutput:
    """One batch's result: host log-probs ``[T', B, C]`` and the model-only time in ms."""

    log_probs: np.ndarray
    infer_ms: float


class Backend(abc.ABC):
    """Base class of inference backends (torch, onnxruntime, acl)."""

    #: short name used in configs, MLflow params and messages
    name: str = "base"
    #: which stage artefact ``load`` expects: "checkpoint" (torch .pt), "onnx" or "om"
    artifact_kind: str = "onnx"

    @abc.abstractmethod
    def load(self, artifact: Path) -> None:
        """Load the model artefact (checkpoint, ONNX or OM file)."""

    @abc.abstractmethod
    def run(self, x: np.ndarray) -> RunOutput:
        """Run one batch ``x`` float32 ``[B, T, 243]``; return log-probs ``[T', B, C]``."""

    def warmup(self, x: np.ndarray, iterations: int) -> None:
        """Run ``iterations`` untimed batches so lazy initialisation is not measured."""
        for _ in range(iterations):
            self.run(x)

    def device_peak_mem_mb(self) -> Optional[float]:
        """Peak device memory since ``load`` in MiB, where the runtime reports it (else None)."""
        return None

    def close(self) -> None:
        """Release sessions, device memory and contexts. Safe to call twice."""

    def describe(self) -> dict[str, str]:
        """Tags for tracking: device, runtime version, providers..."""
        return {"backend": self.name}

    def __enter__(self) -> "Backend":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
