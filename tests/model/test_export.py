"""ONNX export: legacy exporter, requested opset, names and shapes, agreement with torch."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch

from lstm_exp.errors import ConfigError
from lstm_exp.model import CTCModel, ModelArch
from lstm_exp.model.export import export_onnx, max_abs_diff_vs_torch, onnx_opset
from test_ctc import gpu_to_npu_keys


def _dims(value_info) -> list:
    return [d.dim_param or d.dim_value for d in value_info.type.tensor_type.shape.dim]


def _model(tiny_gpu_model, layout: str) -> CTCModel:
    if layout == "gpu":
        return tiny_gpu_model
    npu = CTCModel(ModelArch(**{**tiny_gpu_model.arch.to_dict(), "layout": "npu"}))
    npu.load_state_dict(gpu_to_npu_keys(tiny_gpu_model.state_dict()))
    return npu.eval()


@pytest.mark.parametrize("layout", ["gpu", "npu"])
def test_dynamic_export_agrees_with_torch(tmp_path, tiny_gpu_model, layout):
    model = _model(tiny_gpu_model, layout)
    path = export_onnx(model, tmp_path / "dyn.onnx", opset=11, batch=2, frames=20, dynamic=True)
    graph = onnx.load(str(path)).graph
    assert onnx_opset(path) == 11
    assert [i.name for i in graph.input] == ["actual_input_1"]
    assert [o.name for o in graph.output] == ["output1"]
    assert _dims(graph.input[0]) == ["batch", "frames", 243]
    rng = np.random.default_rng(0)
    batches = [rng.standard_normal((b, t, 243), dtype=np.float32) for b, t in
               ((2, 20), (1, 7), (5, 34))]
    assert max_abs_diff_vs_torch(path, model, batches) < 1e-4


@pytest.mark.parametrize("layout", ["gpu", "npu"])
def test_static_export_for_atc(tmp_path, tiny_gpu_model, layout):
    model = _model(tiny_gpu_model, layout)
    path = export_onnx(model, tmp_path / "static.onnx", opset=11, batch=3, frames=24,
                       dynamic=False)
    graph = onnx.load(str(path)).graph
    assert _dims(graph.input[0]) == [3, 24, 243]
    assert _dims(graph.output[0]) == [12, 3, 7]
    batch = np.random.default_rng(1).standard_normal((3, 24, 243), dtype=np.float32)
    assert max_abs_diff_vs_torch(path, model, [batch]) < 1e-4


def test_other_opsets_are_honoured(tmp_path, tiny_gpu_model):
    path = export_onnx(tiny_gpu_model, tmp_path / "m13.onnx", opset=13, batch=1, frames=8)
    assert onnx_opset(path) == 13


def test_a_silently_different_opset_is_refused(tmp_path, tiny_gpu_model, monkeypatch):
    real_export = torch.onnx.export

    def export_one_opset_higher(*args, **kwargs):
        kwargs["opset_version"] += 1
        return real_export(*args, **kwargs)

    monkeypatch.setattr(torch.onnx, "export", export_one_opset_higher)
    with pytest.raises(ConfigError, match="written with opset 12, 11 was requested"):
        export_onnx(tiny_gpu_model, tmp_path / "m.onnx", opset=11, batch=1, frames=8)


def test_bad_export_arguments(tmp_path, tiny_gpu_model):
    with pytest.raises(ConfigError, match="export.opset"):
        export_onnx(tiny_gpu_model, tmp_path / "m.onnx", opset=7)
