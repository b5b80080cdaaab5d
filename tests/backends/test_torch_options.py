"""The torch backend's sweepable options at composition, validation and preflight (no model):
each one that changes what is measured is in the variant name; a GPU-only option on CPU, an
unknown form, or CUDA on a host without it is one line naming the value and the fix;
``experiment=recipe_gpu`` sweeps precision x cuda_graphs x lstm_form."""
from __future__ import annotations

import itertools

import pytest

from lstm_exp.errors import ConfigError, MissingDependencyError
from lstm_exp.experiment import preflight, validate

TORCH_VARIANTS = [
    ("torch-cpu-bf16", ["backend.precision=bf16"]),
    ("torch-cpu-fp32-split", ["backend.lstm_form=split_direction"]),
    ("torch-cpu-bf16-split", ["backend.precision=bf16", "backend.lstm_form=split_direction"]),
    ("torch-cuda-fp32-tf32", ["backend.device=cuda", "backend.allow_tf32=true"]),
    ("torch-cuda-fp16", ["backend.device=cuda", "backend.precision=fp16", "backend.allow_tf32=true"]),
    ("torch-cuda-fp16-graph", ["backend.device=cuda", "backend.precision=fp16", "backend.cuda_graphs=true"]),
    ("torch-cuda-fp16-split-graph", ["backend.device=cuda", "backend.precision=fp16", "backend.cuda_graphs=true",
                                     "backend.lstm_form=split_direction"]),
    ("torch-cuda-fp32-tf32-split-graph", ["backend.device=cuda", "backend.allow_tf32=true", "backend.cuda_graphs=true",
                                          "backend.lstm_form=split_direction"]),
]


@pytest.mark.parametrize("variant,overrides", TORCH_VARIANTS, ids=[v for v, _ in TORCH_VARIANTS])
def test_options_are_part_of_the_variant_name(compose_config, variant, overrides):
    exp = validate(compose_config("backend=torch", *overrides))
    assert str(exp.backend.variant()) == variant


@pytest.mark.parametrize("overrides,names", [
    (["backend.cuda_graphs=true"], ["backend.cuda_graphs=true", "backend.device=cpu", "write backend.device=cuda"]),
    (["backend.cuda_graphs=true", "backend.device=auto"], ["backend.cuda_graphs=true", "backend.device=auto"]),
    (["backend.allow_tf32=true"], ["backend.allow_tf32=true", "backend.device=cpu", "backend.allow_tf32=false"]),
    (["backend.lstm_form=persistent"], ["backend.lstm_form='persistent'", "stock, split_direction"]),
    (["backend.precision=fp16"], ["backend.precision=fp16", "backend.device=cuda"]),
    (["backend.device=cuda", "backend.cuda_graphs=true", "infer.batching=sorted"],
     ["infer.batching=sorted", "backend.cuda_graphs=true", "infer.batching=fixed"]),
])
def test_impossible_options_are_one_line_naming_value_and_fix(compose_config, overrides, names):
    with pytest.raises(ConfigError) as err:
        validate(compose_config("backend=torch", *overrides))
    message = str(err.value)
    assert "\n" not in message
    for name in names:
        assert name in message, message


def test_cuda_graphs_pad_every_batch_to_a_fixed_frame_count(compose_config):
    exp = validate(compose_config("backend=torch", "backend.device=cuda", "backend.cuda_graphs=true"))
    assert (exp.infer.batching, exp.infer.pad_to) == ("fixed", 390)
    exp = validate(compose_config("backend=torch", "backend.device=cuda", "backend.cuda_graphs=true", "infer.pad_to=200"))
    assert (exp.infer.batching, exp.infer.pad_to) == ("fixed", 200)
    # derived by validate(), never written by the schema's own checks (ExperimentConfig.__post_init__)
    from omegaconf import OmegaConf

    raw = OmegaConf.to_object(compose_config("backend=torch", "backend.device=cuda", "backend.cuda_graphs=true"))
    assert (raw.infer.batching, raw.infer.pad_to) == (None, None)


def test_cuda_graphs_on_a_cpu_only_host_is_refused_by_the_preflight(compose_config):
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    exp = validate(compose_config("backend=torch", "backend.device=cuda", "backend.cuda_graphs=true"))
    with pytest.raises(MissingDependencyError) as err:
        preflight(exp)
    message = str(err.value)
    assert "\n" not in message and "backend.cuda_graphs=true" in message and "no CUDA device" in message
    assert "write backend.device=cpu backend.cuda_graphs=false" in message


def test_the_backend_itself_refuses_cuda_without_a_device():
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    from lstm_exp.backends.torch.backend import TorchBackend
    from lstm_exp.backends.torch.config import TorchBackendConfig

    with pytest.raises(MissingDependencyError):
        TorchBackend(TorchBackendConfig(device="cuda", cuda_graphs=True))


def test_recipe_gpu_sweeps_precision_graphs_and_form(compose_config):
    names = set()
    for precision, graphs, form in itertools.product(("fp32", "fp16", "bf16"), ("true", "false"),
                                                     ("stock", "split_direction")):
        exp = validate(compose_config("experiment=recipe_gpu", f"backend.precision={precision}",
                                      f"backend.cuda_graphs={graphs}", f"backend.lstm_form={form}"))
        names.add(str(exp.backend.variant()))
        assert exp.infer.batching == "fixed" and exp.infer.pad_to == 390
    assert len(names) == 12 and "torch-cuda-fp16-split-graph" in names
