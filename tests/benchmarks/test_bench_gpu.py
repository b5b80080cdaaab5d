"""benchmarks/bench_gpu.py drives the framework's own backends: its variant names round-trip
through lstm_exp's config composition, a name it cannot run is refused, and its CPU mode
(``--device cpu``) runs the same path end to end on a tiny network (parity, timing, CSV and
markdown), so CI checks the driver that the GPU run uses."""
from __future__ import annotations

import csv
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "bench_gpu.py"


def _bench():
    spec = importlib.util.spec_from_file_location("bench_gpu", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("bench_gpu", module)  # its dataclass resolves its module by name
    spec.loader.exec_module(sys.modules["bench_gpu"])
    return sys.modules["bench_gpu"]


@pytest.mark.parametrize("variant", ["torch-cpu-bf16", "torch-cuda-fp16-split-graph", "torch-cuda-fp32-tf32-graph",
                                     "onnxruntime-cuda-fp32", "onnxruntime-cpu-fp32"])
def test_variant_names_are_the_frameworks(tmp_path, variant):
    assert str(_bench().backend_config(variant, tmp_path).variant()) == variant


@pytest.mark.parametrize("variant,needle", [("torch-cuda-fp16-graphs", "unknown torch option"),
                                            ("onnxruntime-cpu-int8", "onnxruntime-<cpu|cuda|tensorrt>-fp32"),
                                            ("torch-cuda", "not a variant name")])
def test_names_it_cannot_run_are_refused(variant, needle):
    with pytest.raises(ValueError, match=needle.replace("|", r"\|")):
        _bench().variant_overrides(variant)


def test_help_runs_without_a_gpu():
    proc = subprocess.run([sys.executable, str(SCRIPT), "--help"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "--device" in proc.stdout and "--variants" in proc.stdout


def test_cpu_dry_run_times_the_frameworks_backends(tmp_path):
    variants = "torch-cpu-fp32,torch-cpu-fp32-split,onnxruntime-cpu-fp32,torch-cuda-fp16-graph"
    proc = subprocess.run([sys.executable, str(SCRIPT), "--device", "cpu", "--variants", variants, "--batches", "1,2",
                           "--frames", "40", "--warmup", "1", "--repeats", "5", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((tmp_path / "bench_gpu.json").read_text())
    with open(tmp_path / "bench_gpu.csv") as handle:
        rows = list(csv.DictReader(handle))
    ran = ["torch-cpu-fp32", "torch-cpu-fp32-split", "onnxruntime-cpu-fp32"]
    assert [(r["variant"], r["batch"]) for r in rows] == [(v, b) for v in ran for b in ("1", "2")]
    assert all(r["status"] == "ok" and int(r["repeats"]) == 5 and float(r["infer_ms_p50"]) > 0 for r in rows)
    for variant in ran:
        assert report["tags"][variant]["variant"] == variant  # the backend's own describe()
    assert report["accuracy"]["torch-cpu-fp32"]["max_abs_diff"] == 0.0
    assert report["accuracy"]["torch-cpu-fp32-split"]["max_abs_diff"] <= 1e-5
    assert report["accuracy"]["onnxruntime-cpu-fp32"]["max_abs_diff"] <= 1e-3
    # a CUDA variant on a CPU-only host: refused by the plugin's preflight, noted, the run goes on
    import torch

    if not torch.cuda.is_available():
        assert "no CUDA device" in report["notes"]["torch-cuda-fp16-graph"]
    markdown = (tmp_path / "bench_gpu.md").read_text()
    assert "| torch-cpu-fp32-split | 2 |" in markdown and "not run / failed:" in markdown
