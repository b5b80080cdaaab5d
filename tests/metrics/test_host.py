"""The noise verdict's logic, the percentile a sample count supports, and the CPU watch seeing
another process's work (a busy-loop subprocess) while this one sleeps."""
from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from lstm_exp.metrics.host import CpuWatch, host_facts, noise_verdict, supported_percentile, timing_cv

BUSY_LOOP = "import time\nend = time.time() + 30\nwhile time.time() < end: pass\n"


@pytest.mark.parametrize("samples, percentile", [(1, 50), (63, 50), (64, 90), (661, 90), (662, 99), (5000, 99)])
def test_supported_percentile_follows_mlperf_floors(samples, percentile):
    assert supported_percentile(samples) == percentile


def test_timing_cv():
    assert timing_cv([10.0]) is None
    assert timing_cv([10.0, 10.0, 10.0]) == 0.0
    assert timing_cv([9.0, 11.0]) == pytest.approx(2 ** 0.5 / 10.0)


def test_noise_verdict_names_each_figure_over_its_threshold():
    assert noise_verdict(0.05, 0.1, max_cv=0.1, max_other_cpu=0.25) == (False, "")
    noisy, reason = noise_verdict(0.3, 0.1, max_cv=0.1, max_other_cpu=0.25)
    assert noisy and "timing_cv 0.300 > infer.noisy_cv=0.1" == reason
    noisy, reason = noise_verdict(0.05, 0.6, max_cv=0.1, max_other_cpu=0.25)
    assert noisy and "60%" in reason and "infer.noisy_other_cpu=0.25" in reason
    noisy, reason = noise_verdict(0.3, 0.6, max_cv=0.1, max_other_cpu=0.25)
    assert noisy and reason.count(";") == 1
    assert noise_verdict(None, None, max_cv=0.0001, max_other_cpu=0.0001) == (False, "")  # unmeasured decides nothing


def test_cpu_watch_sees_another_process():
    busy = subprocess.Popen([sys.executable, "-c", BUSY_LOOP])
    try:
        time.sleep(0.3)  # the loop is running
        watch = CpuWatch()
        watch.start()
        time.sleep(1.0)
        loaded = watch.stop()
    finally:
        busy.kill()
        busy.wait()
    # one busy core of os.cpu_count(): at least a good part of 1 / cpus, whatever else runs
    assert loaded.other_cpu is not None and loaded.other_cpu >= 0.5 / (os.cpu_count() or 1)
    assert loaded.wall_s >= 1.0 and loaded.measured_at.endswith("+00:00")


def test_host_facts_are_strings():
    facts = host_facts()
    assert set(facts) == {"host", "cpu_model", "cpu_count", "threads"}
    assert all(isinstance(v, str) and v for v in facts.values())
