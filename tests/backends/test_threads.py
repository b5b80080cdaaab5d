"""``backend.threads``: one field of the common BackendConfig, one meaning for every backend that
computes on the CPU (null: the cores // the sweep's concurrent jobs; 0: the runtime's default;
n: n), refused with one line where it means nothing (acl) or is negative."""
from __future__ import annotations

import pytest

from lstm_exp.backends.threads import resolve_threads, threads_fault
from lstm_exp.errors import ConfigError
from lstm_exp.experiment import validate

CPU_BACKENDS = ("torch", "onnxruntime", "openvino")


@pytest.mark.parametrize("threads,cores,jobs,count,origin", [
    (None, 2, 1, 2, "auto: 2 cores / 1 job(s)"),
    (None, 2, 2, 1, "auto: 2 cores / 2 job(s)"),
    (None, 8, 3, 2, "auto: 8 cores / 3 job(s)"),
    (None, 2, 4, 1, "auto: 2 cores / 4 job(s)"),  # never 0 threads
    (0, 2, 2, 0, "config: 0, the runtime's default"),
    (3, 2, 2, 3, "config"),
])
def test_resolve_threads(threads, cores, jobs, count, origin):
    resolved = resolve_threads(threads, cores, jobs)
    assert (resolved.count, resolved.origin) == (count, origin)
    assert resolved.tags() == {"lstm_exp.threads_from": origin}


def test_outside_a_sweep_auto_is_every_usable_core():
    from lstm_exp.backends.threads import usable_cores

    assert resolve_threads(None).count == usable_cores()


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_every_cpu_backend_takes_the_same_field(compose_config, backend):
    exp = validate(compose_config(f"backend={backend}", "backend.threads=1"))
    assert exp.backend.threads == 1
    assert validate(compose_config(f"backend={backend}")).backend.threads is None  # auto by default


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_negative_threads_are_one_line(compose_config, backend):
    with pytest.raises(ConfigError) as err:
        validate(compose_config(f"backend={backend}", "backend.threads=-2"))
    assert str(err.value) == threads_fault(-2) and "\n" not in str(err.value)


def test_acl_refuses_threads_it_would_not_use(compose_config):
    with pytest.raises(ConfigError, match=r"backend.threads: 2: the OM computes on the NPU"):
        validate(compose_config("backend=acl", "backend.threads=2"))


def test_torch_sets_and_reports_the_threads_it_got(compose_config, tmp_path):
    import torch

    from lstm_exp.backends.torch.backend import TorchBackend
    from lstm_exp.model.checkpoint import save_checkpoint
    from lstm_exp.model.ctc import CTCModel, ModelArch

    model = CTCModel(ModelArch(conv_channels=[4], lstm_layers=1, hidden=8, num_classes=5))
    checkpoint = save_checkpoint(tmp_path / "model.pt", model, None)
    before = torch.get_num_threads()
    try:
        backend = TorchBackend(validate(compose_config("backend=torch", "backend.threads=1")).backend)
        backend.load(checkpoint)
        tags = backend.describe()
        assert tags["threads"] == "1" and tags["lstm_exp.threads_from"] == "config"
    finally:
        torch.set_num_threads(before)
