"""The plugins through the real pipeline on the smoke experiment (one tiny training):
backend=acl converts the very static ONNX the export stage wrote and checked against torch, and
through the pyacl simulator (tests/acl_sim) gives onnxruntime's PER at 390 frames; the int8
precision stage is cached apart; parity metrics are logged."""
from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest

pytest.importorskip("espeakng_loader")

from lstm_exp.experiment import validate  # noqa: E402
from lstm_exp.evaluate import evaluate_job  # noqa: E402
from lstm_exp.pipeline import Pipeline  # noqa: E402

ACL_SIM = Path(__file__).resolve().parents[1] / "acl_sim"
COMMON = ["experiment=smoke", "batch=4", "progress=false", "infer.warmup=0"]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("plugins")


@pytest.fixture
def job(compose_config, workdir):
    def _job(*overrides):
        exp = validate(compose_config(*COMMON, f"paths.root={workdir}", *overrides))
        return exp, Pipeline(exp)
    return _job


@pytest.fixture
def simulated_acl(monkeypatch):
    monkeypatch.syspath_prepend(str(ACL_SIM))
    monkeypatch.setitem(sys.modules, "acl", None)
    del sys.modules["acl"]
    module = importlib.import_module("acl")
    module._sim_reset()
    return module


def test_onnxruntime_parity_with_torch_on_the_same_batches(job):
    exp, pipeline = job("infer.pad_to=390", "infer.parity=true", "infer.repeats=2", "infer.min_batches=0")
    result, tags = evaluate_job(exp, pipeline)
    m = result.metrics
    assert m["parity_max_abs_diff"] < exp.export.atol and m["parity_per_delta"] == 0.0
    assert m["timed_passes"] == 2 and m["cold_start_ms"] > 0
    assert tags["variant"] == "onnxruntime-cpu-fp32" and tags["batching"] == "fixed" and tags["pad_to"] == "390"


def test_acl_converts_the_checked_static_export_and_matches_onnxruntime(job, simulated_acl):
    ort_exp, ort_pipeline = job("infer.pad_to=390")
    ort_result, _ = evaluate_job(ort_exp, ort_pipeline)
    # an fp32 OM: ATC's default (force_fp16) computes in fp16, which the simulator rounds to
    exp, pipeline = job("backend=acl", f"backend.atc.atc_path={ACL_SIM / 'fake_atc'}", "backend.atc.precision_mode=force_fp32",
                        "infer.parity=true")
    result, tags = evaluate_job(exp, pipeline)
    export = pipeline.summaries["export"]
    assert export["dynamic"] is False and (export["batch"], export["frames"]) == (4, 390)
    assert export["max_abs_diff"] <= exp.export.atol  # checked against torch in the export stage
    convert = pipeline.summaries["convert"]
    assert convert["onnx"] == str(pipeline.onnx_path)  # ATC converted that very file
    om = pipeline.output_of("convert")
    assert pipeline.artifact() == om
    assert f"--model={pipeline.onnx_path.resolve()}" in (om.parent / "atc_command.txt").read_text()
    assert convert["precision_mode"] == "force_fp32" and tags["variant"] == "acl-om-fp32"
    assert tags["convert.precision_mode"] == "force_fp32"
    assert result.metrics["per"] == pytest.approx(ort_result.metrics["per"], abs=1e-9)
    assert result.metrics["parity_per_delta"] == pytest.approx(0.0, abs=1e-9)
    assert pipeline.keys["export"] != ort_pipeline.keys["export"]  # the static export is its own entry
    # backend.precision=fp32 is the same OM as backend.atc.precision_mode=force_fp32: one cache entry
    _, common = job("backend=acl", f"backend.atc.atc_path={ACL_SIM / 'fake_atc'}", "backend.precision=fp32")
    common.run_until("convert")
    assert common.keys["convert"] == pipeline.keys["convert"] and str(common.exp.backend.variant()) == "acl-om-fp32"


def test_int8_is_a_cached_stage_keyed_by_precision_with_parity(job):
    exp, pipeline = job("backend.precision=int8", "infer.parity=true")
    result, tags = evaluate_job(exp, pipeline)
    assert pipeline.artifact() == pipeline.output_of("precision") != pipeline.onnx_path
    assert pipeline.summaries["precision"]["precision"] == "int8"
    m = result.metrics
    assert m["precision_max_abs_diff"] > 0 and m["parity_max_abs_diff"] > 0 and "parity_per_delta" in m
    assert tags["variant"] == "onnxruntime-cpu-int8"
    _, again = job("backend.precision=int8")
    again.run_until("all")
    assert again.keys["precision"] == pipeline.keys["precision"]
