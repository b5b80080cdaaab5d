"""Catalogue: the torch backend's GPU options on a host without a GPU, and their impossible values
(docs/RELIABILITY.md, "Bad inputs: checkpoints, models, backends and tools")."""
from __future__ import annotations

import pytest

from catalogue import SMOKE


def _cuda_available() -> bool:
    torch = pytest.importorskip("torch")
    return torch.cuda.is_available()


def test_cuda_graphs_on_cpu(workspace):
    proc = workspace.run(*SMOKE, "backend=torch", "backend.cuda_graphs=true")
    line = workspace.assert_user_error(proc, "backend.cuda_graphs=true", "backend.device=cpu")
    assert "write backend.device=cuda, or backend.cuda_graphs=false" in line


def test_cuda_graphs_without_a_cuda_device(workspace):
    if _cuda_available():
        pytest.skip("this machine has CUDA")
    # model.hidden=12: a model nobody trained, so a stage run before the refusal would leave an entry
    proc = workspace.run(*SMOKE, "backend=torch", "backend.device=cuda", "backend.cuda_graphs=true", "model.hidden=12")
    line = workspace.assert_user_error(proc, "backend.cuda_graphs=true", "backend.device=cuda")
    assert "no CUDA device" in line and "write backend.device=cpu backend.cuda_graphs=false" in line
    cached = {path for path in workspace.files() if path.startswith("cache/")}
    assert cached == {path for path in workspace.files_before if path.startswith("cache/")}  # no stage ran


def test_tf32_on_cpu(workspace):
    proc = workspace.run(*SMOKE, "backend=torch", "backend.allow_tf32=true")
    line = workspace.assert_user_error(proc, "backend.allow_tf32=true", "backend.device=cpu")
    assert "backend.allow_tf32=false" in line


def test_unknown_lstm_form(workspace):
    proc = workspace.run(*SMOKE, "backend=torch", "backend.lstm_form=persistent")
    line = workspace.assert_user_error(proc, "backend.lstm_form='persistent'")
    assert "stock, split_direction" in line


def test_fp16_on_cpu(workspace):
    proc = workspace.run(*SMOKE, "backend=torch", "backend.precision=fp16")
    line = workspace.assert_user_error(proc, "backend.precision=fp16", "backend.device=cuda")
    assert "torch-cpu-bf16" in line  # the variants that exist, CPU bf16 among them
