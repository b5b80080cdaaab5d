"""Where and under what load a job was timed: host facts, and a noise verdict on its timed passes.

Contracts:

* :func:`host_facts` -> host name, CPU model, logical CPUs, thread settings (the ``*_NUM_THREADS``
  variables and torch's intra-op threads when torch is imported): strings, read once per job.
* :class:`CpuWatch`: ``start()`` before the timed passes and ``stop()`` after them give the CPU
  time taken by *other* processes meanwhile (``/proc/stat`` busy jiffies of the whole machine minus
  this process's own user + system time), as a fraction of the machine's capacity over that wall
  time (0 = the machine was ours, 1 = every core was busy with someone else), plus the 1-minute
  load average at both ends and the mean CPU frequency where ``/sys`` or ``/proc/cpuinfo`` show it.
  Where ``/proc/stat`` is unreadable (not Linux) the fraction is None and never decides anything.
* :func:`timing_cv`: coefficient of variation (std / mean) of per-pass throughput; None with fewer
  than two passes.
* :func:`noise_verdict`: ``(noisy, reason)`` from those figures and two thresholds
  (``infer.noisy_cv``, ``infer.noisy_other_cpu``); the reason names each figure over its threshold.
* :data:`MLPERF_MIN_SAMPLES` / :func:`supported_percentile`: the highest latency percentile the
  number of timed batches supports, by MLPerf LoadGen's early-stopping floors for a tail claim.
"""
from __future__ import annotations

import datetime as _dt
import os
import platform
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

#: MLPerf LoadGen (early_stopping.cc, SingleStream-style floors with no over-latency query): the
#: fewest samples for a percentile claim; fewer supports only the median
MLPERF_MIN_SAMPLES = {99: 662, 90: 64}
#: environment variables that set a runtime's thread count
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
PROC_STAT = Path("/proc/stat")
#: /proc/stat cpu columns that are busy time: user nice system (idle iowait) irq softirq steal
_BUSY_COLUMNS = (0, 1, 2, 5, 6, 7)


def supported_percentile(samples: int) -> int:
    """The highest percentile (99, 90 or 50) that ``samples`` timed batches support."""
    for percentile in sorted(MLPERF_MIN_SAMPLES, reverse=True):
        if samples >= MLPERF_MIN_SAMPLES[percentile]:
            return percentile
    return 50


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def thread_settings() -> str:
    """``OMP_NUM_THREADS=2 torch=2``-style: every thread setting in force (unset ones left out)."""
    parts = [f"{name}={os.environ[name]}" for name in THREAD_VARIABLES if name in os.environ]
    torch = sys.modules.get("torch")
    if torch is not None:
        parts.append(f"torch_intra_op={torch.get_num_threads()}")
    return " ".join(parts) or "runtime defaults"


def host_facts() -> dict[str, str]:
    return {"host": socket.gethostname(), "cpu_model": cpu_model(), "cpu_count": str(os.cpu_count() or 0),
            "threads": thread_settings()}


def _busy_jiffies() -> Optional[int]:
    try:
        first = PROC_STAT.read_text().splitlines()[0].split()
    except (OSError, IndexError):
        return None
    values = [int(v) for v in first[1:]]
    return sum(values[i] for i in _BUSY_COLUMNS if i < len(values))


def _own_cpu_s() -> float:
    times = os.times()
    return times.user + times.system


def _load_1m() -> Optional[float]:
    try:
        return float(os.getloadavg()[0])
    except OSError:
        return None


def cpu_mhz() -> Optional[float]:
    """Mean current frequency over the CPUs, where the kernel shows it."""
    freqs = []
    for path in Path("/sys/devices/system/cpu").glob("cpu[0-9]*/cpufreq/scaling_cur_freq"):
        try:
            freqs.append(int(path.read_text()) / 1e3)
        except (OSError, ValueError):
            continue
    if not freqs:
        try:
            freqs = [float(line.split(":", 1)[1]) for line in Path("/proc/cpuinfo").read_text().splitlines()
                     if line.lower().startswith("cpu mhz")]
        except (OSError, ValueError):
            freqs = []
    return float(np.mean(freqs)) if freqs else None


@dataclass
class HostLoad:
    """What :class:`CpuWatch` saw over the timed passes."""

    measured_at: str
    wall_s: float
    other_cpu: Optional[float]
    load_1m_before: Optional[float]
    load_1m_after: Optional[float]
    cpu_mhz: Optional[float]


class CpuWatch:
    """CPU time of other processes over an interval (see module doc)."""

    def start(self) -> None:
        self.measured_at = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        self.load_before = _load_1m()
        self.busy0, self.own0, self.wall0 = _busy_jiffies(), _own_cpu_s(), time.perf_counter()

    def stop(self) -> HostLoad:
        busy1, own1, wall = _busy_jiffies(), _own_cpu_s(), time.perf_counter() - self.wall0
        other = None
        if self.busy0 is not None and busy1 is not None and wall > 0:
            tick = os.sysconf("SC_CLK_TCK")
            machine_s = (busy1 - self.busy0) / tick
            other = max(0.0, machine_s - (own1 - self.own0)) / (wall * (os.cpu_count() or 1))
        return HostLoad(self.measured_at, wall, other, self.load_before, _load_1m(), cpu_mhz())


def timing_cv(pass_throughputs: Sequence[float]) -> Optional[float]:
    values = np.asarray(pass_throughputs, dtype=np.float64)
    if len(values) < 2 or values.mean() <= 0:
        return None
    return float(values.std(ddof=1) / values.mean())


def noise_verdict(cv: Optional[float], other_cpu: Optional[float], max_cv: float, max_other_cpu: float
                  ) -> tuple[bool, str]:
    """``(noisy, reason)``: noisy when a figure that could be measured is over its threshold."""
    reasons = []
    if cv is not None and cv > max_cv:
        reasons.append(f"timing_cv {cv:.3f} > infer.noisy_cv={max_cv:g}")
    if other_cpu is not None and other_cpu > max_other_cpu:
        reasons.append(f"other processes took {other_cpu:.0%} of the CPUs > infer.noisy_other_cpu={max_other_cpu:g}")
    return bool(reasons), "; ".join(reasons)
