"""Test helpers for the Ascend path: a tiny recipe-shaped ONNX model and ``fake_atc`` on PATH.

Load this file by path (``importlib.util.spec_from_file_location``); it does not put
``tests/acl_sim`` on ``sys.path`` by itself, so ``import acl`` keeps failing outside the tests
that ask for the simulator.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

ACL_SIM_DIR = Path(__file__).resolve().parent
FAKE_ATC = ACL_SIM_DIR / "fake_atc"
INPUT_NAME, OUTPUT_NAME = "actual_input_1", "output1"


def make_tiny_onnx(path: Path, frames: int = 390, classes: int = 7, dynamic: bool = True, batch: int = 2, seed: int = 0) -> Path:
    """Export a conv (stride 2 in time) + log-softmax model: ``[B, T, 243] -> [T//2, B, classes]``,
    with the recipe's input/output names, opset 11, legacy exporter."""
    import torch

    class Tiny(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = torch.nn.Conv1d(243, classes, kernel_size=3, stride=2, padding=1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = self.conv(x.transpose(1, 2))  # [B, C, T']
            return torch.log_softmax(y.permute(2, 0, 1), dim=-1)

    torch.manual_seed(seed)
    model = Tiny().eval()
    dummy = torch.zeros(batch, frames, 243)
    axes = {INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {1: "batch"}} if dynamic else None
    torch.onnx.export(model, (dummy,), str(path), dynamo=False, opset_version=11,
                      input_names=[INPUT_NAME], output_names=[OUTPUT_NAME], dynamic_axes=axes)
    return path


def onnxruntime_log_probs(onnx_path: Path, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    return session.run([OUTPUT_NAME], {INPUT_NAME: x.astype(np.float32)})[0]


def install_fake_atc(bin_dir: Path) -> Path:
    """Write ``bin_dir/atc`` running ``fake_atc`` with this interpreter; return it."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    atc = bin_dir / "atc"
    atc.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{FAKE_ATC}" "$@"\n')
    atc.chmod(0o755)
    return atc


def simulated_acl(monkeypatch):
    """A fixture body (``yield from``): the simulated ``acl`` module, importable as ``acl`` for one
    test only, in a fresh state; the process's ACL lifetime reset before and shut down after, so no
    later test finds this one's contexts."""
    import importlib

    from lstm_exp.backends.acl import acl_lifetime

    monkeypatch.syspath_prepend(str(ACL_SIM_DIR))
    monkeypatch.setitem(sys.modules, "acl", None)  # undo removes it again
    del sys.modules["acl"]
    module = importlib.import_module("acl")
    module._sim_reset()
    acl_lifetime._new_process_for_tests()
    yield module
    acl_lifetime.shutdown()
    acl_lifetime._new_process_for_tests()
