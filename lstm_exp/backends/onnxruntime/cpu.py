"""onnxruntime's CPU thread settings, resolved where the config leaves them to the machine.

On a machine whose cores are shared (a joblib sweep's concurrent jobs, a busy host), onnxruntime's
defaults lose: spinning worker threads burn the cores another job needs, and each job's full
thread pool oversubscribes them (issue 22's study on 2 cores: spinning off 1.14-1.48x faster,
one thread per job 1.26-1.70x).  So, with ``backend.threads`` / ``backend.allow_spinning`` null
(auto):

* the intra-op pool = the cores this process may use // the jobs running at once (at least 1),
  as for every backend (:mod:`lstm_exp.backends.threads`);
* ``allow_spinning`` = on only when this job runs alone.

A number or a boolean given in the config is used as given (``threads=0``: onnxruntime's own
default).  :func:`cpu_settings` is a pure function of the cores and the concurrent jobs.  Both
values go into the run's tags with where they came from.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lstm_exp.backends.threads import concurrent_jobs, resolve_threads, usable_cores

__all__ = ["CpuSettings", "concurrent_jobs", "cpu_settings", "usable_cores"]


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
        return {"threads": str(self.intra_op_threads), "lstm_exp.threads_from": self.threads_from,
                "lstm_exp.ort.intra_op_threads": f"{self.intra_op_threads} ({self.threads_from})",
                "lstm_exp.ort.allow_spinning": f"{str(self.allow_spinning).lower()} ({self.spinning_from})",
                "lstm_exp.ort.cores": str(self.cores), "lstm_exp.ort.concurrent_jobs": str(self.concurrent_jobs)}


def cpu_settings(cfg: Any, cores: int, jobs: int) -> CpuSettings:
    """The session's CPU settings for ``cfg`` on ``cores`` cores shared by ``jobs`` jobs."""
    jobs = max(jobs, 1)
    threads = resolve_threads(cfg.threads, cores, jobs)
    if cfg.allow_spinning is None:
        spinning, spinning_from = jobs == 1, "auto: " + ("alone" if jobs == 1 else f"{jobs} jobs at once")
    else:
        spinning, spinning_from = bool(cfg.allow_spinning), "config"
    return CpuSettings(threads.count, spinning, threads.origin, spinning_from, cores, jobs)
