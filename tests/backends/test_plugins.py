"""Backends as plugins: every variant composes and validates (and names itself), impossible
combinations are refused with the list of variants, a runtime or provider asked for and absent
is a one-line error (never a silent CPU fall-back), and the pipeline asks the plugin for its
stages and export shape."""
from __future__ import annotations

import importlib.util

import pytest

from lstm_exp.experiment import preflight, validate
from lstm_exp.backends.registry import PLUGINS, plugin_for
from lstm_exp.errors import ConfigError, LstmExpError, MissingDependencyError
from lstm_exp.pipeline import stages_needed

ORT_PROVIDER = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider",
                "tensorrt": "TensorrtExecutionProvider", "cann": "CANNExecutionProvider"}
VARIANTS = [
    ("torch-cpu-fp32", ["backend=torch", "backend.device=cpu"]),
    ("torch-cuda-fp32", ["backend=torch", "backend.device=cuda"]),
    ("torch-cuda-fp16", ["backend=torch", "backend.device=cuda", "backend.precision=fp16"]),
    ("torch-cuda-bf16", ["backend=torch", "backend.device=cuda", "backend.precision=bf16"]),
    *[(f"onnxruntime-{device}-{precision}",
       ["backend=onnxruntime", f"backend.providers=[{ORT_PROVIDER[device]},CPUExecutionProvider]",
        f"backend.precision={precision}"])
      for device, precision in [("cpu", "fp32"), ("cpu", "int8"), ("cuda", "fp32"), ("cuda", "fp16"),
                                ("tensorrt", "fp32"), ("tensorrt", "fp16"), ("cann", "fp32"), ("cann", "fp16")]],
    ("openvino-cpu-fp32", ["backend=openvino"]),
    ("openvino-cpu-bf16", ["backend=openvino", "backend.precision=bf16"]),
    ("acl-om-fp16", ["backend=acl"]),
    ("acl-om-fp32", ["backend=acl", "backend.atc.precision_mode=must_keep_origin_dtype"]),
]


@pytest.mark.parametrize("variant,overrides", VARIANTS, ids=[v for v, _ in VARIANTS])
def test_every_variant_composes_validates_and_names_itself(compose_config, variant, overrides):
    exp = validate(compose_config(*overrides))
    typed = exp.backend.variant()  # a Variant (issue 22: typed, never parsed back from its name)
    assert str(typed) == variant and [typed.backend, typed.device, typed.precision] == variant.split("-")


@pytest.mark.parametrize("overrides,needle", [
    (["backend=torch", "backend.precision=fp16"], "backend.precision=fp16 needs backend.device=cuda"),
    (["backend=torch", "backend.precision=int8"], "write one of fp32, fp16, bf16"),
    (["backend=onnxruntime", "backend.precision=fp16"], "not available on CPUExecutionProvider"),
    (["backend=onnxruntime", "backend.providers=[CUDAExecutionProvider]", "backend.precision=int8"],
     "not available on CUDAExecutionProvider"),
    (["backend=onnxruntime", "backend.precision=bf16"], "write one of fp32, fp16, int8"),
    (["backend=onnxruntime", "backend.providers=[CANNProvider]"], "CANNExecutionProvider"),
])
def test_unsupported_combinations_say_which_exist(compose_config, overrides, needle):
    with pytest.raises(ConfigError) as err:
        validate(compose_config(*overrides))
    assert needle in str(err.value)
    if "precision" in overrides[-1]:
        assert "variants:" in str(err.value) or "write one of" in str(err.value)


@pytest.mark.parametrize("precision,mode", [("fp32", "force_fp32"), ("fp16", "force_fp16"),
                                            ("mixed", "allow_mix_precision")])
def test_acl_maps_the_common_precision_onto_atc(compose_config, precision, mode):
    """Issue 22 changed this: backend.precision means the same for every backend; acl maps it onto
    ATC's --precision_mode (it used to be refused at composition)."""
    exp = validate(compose_config("backend=acl", f"backend.precision={precision}"))
    assert exp.backend.resolved_atc().precision_mode == mode
    assert str(exp.backend.variant()) == f"acl-om-{precision}" and exp.backend.variant().precision == precision


@pytest.mark.parametrize("overrides,needle", [
    (["backend.precision=int8"], "backend.precision: 'int8' has no ATC precision mode: write one of fp16, fp32, mixed"),
    (["backend.precision=fp32", "backend.atc.precision_mode=force_fp16"],
     "backend.precision=fp32 and backend.atc.precision_mode=force_fp16 both set the OM's precision"),
])
def test_acl_precision_faults_name_the_fix(compose_config, overrides, needle):
    with pytest.raises(ConfigError) as err:
        validate(compose_config("backend=acl", *overrides))
    assert needle in str(err.value)


def test_acl_null_precision_keeps_the_convert_key(compose_config):
    """backend.precision=null leaves backend.atc as given: the convert stage's key (and so every
    existing cache entry) is what it was before backend.precision existed."""
    exp = validate(compose_config("backend=acl"))
    assert exp.backend.precision is None and exp.backend.resolved_atc() is exp.backend.atc


@pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="torch not installed")
def test_torch_cuda_without_cuda_is_a_one_line_error(compose_config):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    exp = validate(compose_config("backend=torch", "backend.device=cuda"))
    with pytest.raises(MissingDependencyError) as err:
        preflight(exp)
    assert "backend.device=cuda" in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("provider,package", [("CUDAExecutionProvider", "onnxruntime-gpu"),
                                              ("TensorrtExecutionProvider", "onnxruntime-gpu"),
                                              ("CANNExecutionProvider", "onnxruntime-cann")])
def test_missing_onnxruntime_provider_is_a_one_line_error(compose_config, provider, package):
    import onnxruntime

    if provider in onnxruntime.get_available_providers():
        pytest.skip(f"{provider} is available here")
    exp = validate(compose_config(f"backend.providers=[{provider},CPUExecutionProvider]"))
    with pytest.raises(MissingDependencyError) as err:
        preflight(exp)  # before any stage: no silent fall-back to the CPU provider
    message = str(err.value)
    assert provider in message and package in message and "\n" not in message
    with pytest.raises(MissingDependencyError):  # the backend refuses too, when built directly
        plugin_for("onnxruntime").create(exp.backend)


def test_plugins_declare_stages_and_the_pipeline_follows_them(compose_config):
    assert set(PLUGINS) == {"torch", "onnxruntime", "openvino", "acl"}
    torch_exp = validate(compose_config("backend=torch"))
    assert stages_needed("all", torch_exp.backend) == ["corpus", "prepare", "train", "infer"]
    ort = validate(compose_config()).backend
    assert stages_needed("infer", ort) == ["corpus", "prepare", "train", "export", "infer"]
    int8 = validate(compose_config("backend.precision=int8")).backend
    assert stages_needed("precision", int8) == ["corpus", "prepare", "train", "export", "precision"]
    openvino = validate(compose_config("backend=openvino")).backend
    assert stages_needed("all", openvino) == ["corpus", "prepare", "train", "export", "infer"]
    acl = validate(compose_config("backend=acl")).backend
    assert stages_needed("all", acl) == ["corpus", "prepare", "train", "export", "convert", "infer"]
    assert stages_needed("preprocess", acl) == ["corpus", "prepare", "preprocess"]
    with pytest.raises(LstmExpError, match="not a stage of backend=onnxruntime"):
        validate(compose_config("stage=convert"))
    with pytest.raises(LstmExpError, match="not a stage of backend=torch"):
        validate(compose_config("backend=torch", "stage=export"))


def test_export_shape_comes_from_the_plugin(compose_config):
    exp = validate(compose_config("backend=acl", "batch=8"))
    shape = plugin_for("acl").export_shape(exp.backend, exp)
    assert (shape.dynamic, shape.batch, shape.frames, shape.dynamic_batch_only) == (False, 8, 390, False)
    exp = validate(compose_config("backend=acl", "batch=8", "backend.atc.dynamic_batch=true"))
    shape = plugin_for("acl").export_shape(exp.backend, exp)
    assert (shape.dynamic, shape.batch, shape.dynamic_batch_only) == (False, 32, True)
    exp = validate(compose_config())
    assert plugin_for("onnxruntime").export_shape(exp.backend, exp).dynamic
    with pytest.raises(ConfigError, match="export.dynamic=false writes the static ONNX that backend=acl converts"):
        validate(compose_config("export.dynamic=false"))


def test_acl_needs_fixed_batching_at_the_om_frames(compose_config):
    exp = validate(compose_config("backend=acl"))
    assert (exp.infer.batching, exp.infer.pad_to) == ("fixed", 390)
    with pytest.raises(ConfigError, match="write infer.batching=fixed"):
        validate(compose_config("backend=acl", "infer.batching=sorted"))


def test_onnxruntime_backend_describes_its_variant(tmp_path, compose_config):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "acl_sim"))
    from helpers import make_tiny_onnx

    onnx_path = make_tiny_onnx(tmp_path / "tiny.onnx")
    exp = validate(compose_config("backend.threads=1"))
    with plugin_for("onnxruntime").create(exp.backend) as backend:
        backend.load(onnx_path)
        tags = backend.describe()
    assert tags["variant"] == "onnxruntime-cpu-fp32" and tags["device"] == "cpu"
    assert tags["providers"].startswith("CPUExecutionProvider") and tags["threads"] == "1"
    assert tags["precision"] == "fp32" and tags["runtime"].startswith("onnxruntime ")


# -- issue 22: onnxruntime's CPU settings -------------------------------------------------------

@pytest.mark.parametrize("threads,spinning,cores,jobs,want", [
    (None, None, 16, 1, (16, True)),     # alone: every core, spinning on (onnxruntime's defaults)
    (None, None, 16, 4, (4, False)),     # a joblib sweep of 4: a quarter each, no spinning
    (None, None, 2, 4, (1, False)),      # more jobs than cores: one thread each
    (3, True, 16, 4, (3, True)),         # given values are used as given
    (0, None, 2, 1, (0, True)),          # 0: onnxruntime's own default
])
def test_onnxruntime_cpu_settings_follow_cores_and_concurrent_jobs(compose_config, threads, spinning, cores, jobs, want):
    from lstm_exp.backends.onnxruntime.cpu import cpu_settings

    overrides = [f"backend.threads={'null' if threads is None else threads}",
                 f"backend.allow_spinning={'null' if spinning is None else str(spinning).lower()}"]
    settings = cpu_settings(validate(compose_config(*overrides)).backend, cores, jobs)
    assert (settings.intra_op_threads, settings.allow_spinning) == want
    tags = settings.tags()
    origin = "config" if threads is not None else "auto"
    assert tags["lstm_exp.ort.intra_op_threads"].startswith(f"{want[0]} ({origin}")
    assert tags["lstm_exp.ort.allow_spinning"].startswith(f"{str(want[1]).lower()} (")


def test_onnxruntime_session_records_its_cpu_settings(tmp_path, compose_config):
    """Outside a Hydra sweep the job runs alone: auto gives this process's cores and spinning on,
    and the backend's tags say so (they become the run's tags)."""
    import sys
    from pathlib import Path

    from lstm_exp.backends.onnxruntime.cpu import usable_cores

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "acl_sim"))
    from helpers import make_tiny_onnx

    exp = validate(compose_config())
    assert exp.backend.threads is None and exp.backend.allow_spinning is None
    with plugin_for("onnxruntime").create(exp.backend) as backend:
        backend.load(make_tiny_onnx(tmp_path / "tiny.onnx"))
        tags = backend.describe()
    assert tags["threads"] == str(usable_cores())
    assert tags["lstm_exp.ort.allow_spinning"] == "true (auto: alone)"
    assert tags["lstm_exp.ort.concurrent_jobs"] == "1"


@pytest.mark.parametrize("mode,launcher,want", [
    ("MULTIRUN", {"_target_": "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher", "n_jobs": 3}, 3),
    ("MULTIRUN", {"_target_": "hydra._internal.core_plugins.basic_launcher.BasicLauncher"}, 1),
    ("RUN", {"_target_": "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher", "n_jobs": 3}, 1),
])
def test_concurrent_jobs_come_from_the_sweeps_launcher(mode, launcher, want):
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode
    from omegaconf import OmegaConf

    from lstm_exp.backends.onnxruntime.cpu import concurrent_jobs

    previous = HydraConfig.instance().cfg
    HydraConfig.instance().cfg = OmegaConf.create({"hydra": {"mode": RunMode[mode], "launcher": launcher}})
    try:
        assert concurrent_jobs(cores=8) == want
    finally:
        HydraConfig.instance().cfg = previous
