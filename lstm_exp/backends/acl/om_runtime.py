"""What the acl backend needs from a runtime that runs an OM: :class:`OmRuntime`.

Two runtimes implement it, one class each, chosen by ``backend.runtime``:

* ``pyacl`` (:class:`~.pyacl_runtime.PyaclRuntime`): the recipe's ``pyacl_infer`` call sequence
  on the ``acl`` module, inside the process-wide ACL lifetime of :mod:`.acl_lifetime`;
* ``ais_bench`` (:class:`~.ais_bench_runtime.AisBenchRuntime`): ais_bench's ``InferSession``.

A runtime is constructed as ``Runtime(cfg, om_path, record)`` (the backend config, the OM, and
what the OM was built for: :func:`~.backend.om_build_record`), which loads the OM on
``cfg.device_id``; it says what the OM takes
(``gears``, ``om_batch``, ``sample_dims``), runs one batch already padded to a batch the OM takes
(:meth:`OmRuntime.execute`: host output and the model execute time), adds its tags, and
releases what it took in :meth:`OmRuntime.close`.  Choosing the batch to run and padding to it
belong to :class:`~.backend.AclBackend`, the same for both.
"""
from __future__ import annotations

import abc
from pathlib import Path
from typing import ClassVar

import numpy as np


class OmRuntime(abc.ABC):
    """One OM loaded on one Ascend device by one runtime."""

    #: the ``backend.runtime`` value that selects this runtime
    name: ClassVar[str] = ""

    om_path: Path
    #: the OM's ``--dynamic_batch_size`` gears, ascending; empty for a static OM
    gears: list[int]
    #: the largest batch the OM takes (its static batch, or its largest gear)
    om_batch: int
    #: one sample's dims, ``(frames, 243)``
    sample_dims: tuple[int, ...]

    @abc.abstractmethod
    def execute(self, feed: np.ndarray) -> tuple[np.ndarray, float]:
        """Run ``feed`` float32 ``[run_batch, frames, 243]`` (``run_batch`` a batch the OM takes);
        return the first output on the host and the model execute time in ms."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release what this runtime took for the job.  Safe to call twice."""

    def tags(self) -> dict[str, str]:
        """Runtime facts for tracking (e.g. the chip, the pointer API)."""
        return {}
