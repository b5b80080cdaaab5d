"""benchmarks/bench_cpu.py runs end to end on the recipe-size network: the framework's
onnxruntime (fp32 and its int8 conversion) and OpenVINO backends each in its own worker process,
the FMA peak probe, and a report whose ratios are against onnxruntime fp32 in the same round.
It once broke silently when a function it imports moved; this keeps it runnable."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "bench_cpu.py"


@pytest.mark.skipif(shutil.which("gcc") is None, reason="the FMA peak probe compiles a C loop with gcc")
def test_one_round_at_batch_1_gives_ratios_against_onnxruntime_fp32(tmp_path):
    variants = "onnxruntime-cpu-fp32,onnxruntime-cpu-int8,openvino-cpu-fp32"
    proc = subprocess.run([sys.executable, str(SCRIPT), "--variants", variants, "--batches", "1", "--rounds", "1",
                           "--repeats", "1", "--warmup", "0", "--threads", "1", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads((tmp_path / "bench_cpu.json").read_text())
    rows = {row["variant"]: row for row in report["rows"]}
    assert set(rows) == set(variants.split(","))
    assert rows["onnxruntime-cpu-fp32"]["vs_ort_fp32"] == 1.0
    for row in rows.values():
        assert row["batch"] == 1 and row["frames"] == "390" and row["samples"] == 1
        assert row["p50_ms"] > 0 and row["gflops"] > 0 and row["vs_ort_fp32"] > 0
    assert report["probe_before"]["fma_gflops"]["wall"] > 0
    assert report["describe"]["openvino-cpu-fp32"]["openvino.inference_precision_hint"] == "f32"
