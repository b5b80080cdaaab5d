"""onnxruntime's CPU thread settings, resolved where the config leaves them to the machine.

On a machine whose cores are shared (a joblib sweep's concurrent jobs, a busy host), onnxruntime's
defaults lose: spinning worker threads burn the cores another job needs, and each job's full
thread pool oversubscribes them (issue 22's study on 2 cores: spinning off 1.14-1.48x faster,
one thread per job 1.26-1.70x).  So, with ``backend.intra_op_threads`` / ``backend.allow_spinning``
null (auto):

* ``intra_op_threads`` = the cores this process may use // the jobs running at once (at least 1);
* ``allow_spinning`` = on only when this job runs alone.

A number or a boolean given in the config is used as given (``intra_op_threads=0``: onnxruntime's
own default).  :func:`concurrent_jobs` reads the sweep's launcher at the Hydra job's edge (1
outside Hydra, e.g. ``run_experiment`` from Python); :func:`cpu_settings` is a pure function of
it.  Both values go into the run's tags with where they came from.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Optional


@dataclass(frozen=True)
class CpuSettings:
    """What the session is built with, and why (``auto`` or ``config``)."""

    intra_op_threads: int
    allow_spinning: bool
    threads_from: str
    spinning_from: str
    cores: int
    concurrent_jobs: int

    def tags(self) -> dict[str, str]:
        return {"threads": str(self.intra_op_threads),
                "lstm_exp.ort.intra_op_threads": f"{self.intra_op_threads} ({self.threads_from})",
                "lstm_exp.ort.allow_spinning": f"{str(self.allow_spinning).lower()} ({self.spinning_from})",
                "lstm_exp.ort.cores": str(self.cores), "lstm_exp.ort.concurrent_jobs": str(self.concurrent_jobs)}


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


def cpu_settings(cfg: Any, cores: int, jobs: int) -> CpuSettings:
    """The session's CPU settings for ``cfg`` on ``cores`` cores shared by ``jobs`` jobs."""
    jobs = max(jobs, 1)
    if cfg.intra_op_threads is None:
        threads, threads_from = max(cores // jobs, 1), f"auto: {cores} cores / {jobs} job(s)"
    else:
        threads, threads_from = cfg.intra_op_threads, "config"
    if cfg.allow_spinning is None:
        spinning, spinning_from = jobs == 1, "auto: " + ("alone" if jobs == 1 else f"{jobs} jobs at once")
    else:
        spinning, spinning_from = bool(cfg.allow_spinning), "config"
    return CpuSettings(threads, spinning, threads_from, spinning_from, cores, jobs)
