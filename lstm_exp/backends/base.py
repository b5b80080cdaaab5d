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

Every backend's schema derives from :class:`BackendConfig`, the common base: ``name``,
``precision`` (one spelling for every backend: :data:`PRECISIONS`), ``threads`` (one meaning
for every backend that computes on the CPU: :mod:`lstm_exp.backends.threads`) and the ``device``
each backend answers from its own fields (torch and OpenVINO: ``device``; onnxruntime: its
first provider; acl: the NPU).  Its
:meth:`BackendConfig.variant` is a typed :class:`Variant`, whose ``str`` is the run's variant
name (``torch-cpu-fp32``); nothing parses a variant back from its name.
"""
from __future__ import annotations

import abc
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Optional

import numpy as np

from lstm_exp.backends.threads import threads_fault
from lstm_exp.errors import ConfigError


#: every precision a variant may name, one spelling for every backend (``backend.precision=``):
#: ``mixed`` = the runtime picks per operator (e.g. ATC's allow_mix_precision)
PRECISIONS = ("fp32", "fp16", "bf16", "int8", "mixed", "hif8")
#: devices whose timing and parity reference run on a GPU
GPU_DEVICES = ("cuda", "tensorrt")


@dataclass(frozen=True)
class Variant:
    """What a run measures: backend, device, precision (and any further option that changes the
    numbers, in ``extra``).  ``str(variant)`` is its name, e.g. ``onnxruntime-cpu-int8``."""

    backend: str
    device: str
    precision: str
    extra: tuple[str, ...] = ()

    def __str__(self) -> str:
        return "-".join((self.backend, self.device, self.precision, *self.extra))

    @property
    def on_gpu(self) -> bool:
        return self.device in GPU_DEVICES


@dataclass
class BackendConfig:
    """The common base of every ``backend=<name>`` schema (``backends/<name>/config.py``).

    Subclasses set ``name``'s default and :attr:`precisions` (precision -> the devices that run
    it), define ``device`` (a field or a property) and call :meth:`check_threads` in their
    ``__post_init__``."""

    #: the backend's name, as ``backend=<name>`` selects it (never overridden)
    name: str = ""
    #: fp32 | fp16 | bf16 | int8 | mixed: the same meaning for every backend (:data:`PRECISIONS`)
    precision: Optional[str] = "fp32"
    #: CPU threads the runtime computes with: null = auto (the cores // the sweep's jobs running at
    #: once), 0 = the runtime's own default, n = n (lstm_exp/backends/threads.py)
    threads: Optional[int] = None
    #: precision -> devices that run it, for this backend
    precisions: ClassVar[dict[str, tuple[str, ...]]] = {}

    @property
    def device(self) -> str:  # overridden by a field or a property
        raise NotImplementedError

    def check_threads(self) -> None:
        """Refuse a ``threads`` value that means nothing, with one line."""
        fault = threads_fault(self.threads)
        if fault:
            raise ConfigError(fault)

    def variant(self) -> Variant:
        return Variant(self.name, self.device, str(self.precision))

    @classmethod
    def variants(cls) -> tuple[str, ...]:
        """Every variant name this backend can run (for "write one of" messages)."""
        return tuple(f"{cls.name}-{d}-{p}" for p, devices in cls.precisions.items() for d in devices)


@dataclass
class RunOutput:
    """One batch's result: host log-probs ``[T', B, C]`` and the model-only time in ms."""

    log_probs: np.ndarray
    infer_ms: float


class Backend(abc.ABC):
    """Base class of inference backends (torch, onnxruntime, acl)."""

    #: short name used in configs, MLflow params and messages
    name: str = "base"

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
