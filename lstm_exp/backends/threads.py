"""``backend.threads``: one meaning for every backend that computes on the CPU.

* ``null`` (auto, the default): the cores this process may use // the jobs of its sweep running
  at once on this machine (at least 1): a joblib sweep of 2 jobs on 2 cores gives each job one
  thread instead of oversubscribing the cores (issue 22's study on 2 cores: one thread per job
  1.26-1.70x faster for onnxruntime);
* ``0``: the runtime's own default (torch's, onnxruntime's, OpenVINO's: usually every core);
* ``n``: ``n`` threads.

:func:`concurrent_jobs` reads the sweep's launcher at the Hydra job's edge (1 outside Hydra, e.g.
``run_experiment`` from Python); :func:`resolve_threads` is a pure function of it.  Each backend
records what it used as the ``threads`` tag and where it came from as ``lstm_exp.threads_from``.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Optional


def usable_cores() -> int:
    """The cores this process may run on (its affinity mask where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return max(len(os.sched_getaffinity(0)), 1)
    return os.cpu_count() or 1


def concurrent_jobs(cores: Optional[int] = None) -> int:
    """How many jobs of this sweep run on this machine at once: the Hydra launcher's answer
    (``lstm_exp.tracking.sweep.launcher_info``; "all" counts as one per core), 1 outside a Hydra job."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
        return 1
    from lstm_exp.tracking.sweep import launcher_info

    _, concurrent = launcher_info(HydraConfig.get().get("launcher"))
    if concurrent == "all":
        return cores or usable_cores()
    return max(int(concurrent), 1)


@dataclass(frozen=True)
class Threads:
    """The threads a runtime is given (0: its own default) and where the number came from."""

    count: int
    origin: str
    cores: int
    jobs: int

    def tags(self) -> dict[str, str]:
        return {"lstm_exp.threads_from": self.origin}


def resolve_threads(threads: Optional[int], cores: Optional[int] = None, jobs: Optional[int] = None) -> Threads:
    """``backend.threads`` for a job on ``cores`` cores (default: this process's) shared by ``jobs``
    jobs (default: this sweep's, :func:`concurrent_jobs`)."""
    cores = cores or usable_cores()
    jobs = max(jobs if jobs is not None else concurrent_jobs(cores), 1)
    if threads is None:
        return Threads(max(cores // jobs, 1), f"auto: {cores} cores / {jobs} job(s)", cores, jobs)
    if threads == 0:
        return Threads(0, "config: 0, the runtime's default", cores, jobs)
    return Threads(threads, "config", cores, jobs)


def threads_fault(threads: Optional[int]) -> Optional[str]:
    """The one-line complaint about a ``backend.threads`` value, or None."""
    if threads is not None and (isinstance(threads, bool) or threads < 0):
        return (f"backend.threads={threads} must be null (auto: the cores // the sweep's concurrent jobs), "
                "0 (the runtime's default) or a positive thread count")
    return None
