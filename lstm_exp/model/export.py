"""ONNX export of the CTC model through torch's legacy (TorchScript) exporter.

The recipe exports at opset 11 with input ``actual_input_1 [B, 390, 243]`` and output
``output1``.  torch's current default exporter (dynamo) silently produces opset 18, which
Ascend's ATC does not take, so the legacy exporter is requested explicitly and the written
file's opset is read back and checked.

Three shapes: ``dynamic=True`` (batch and time axes dynamic, for onnxruntime),
``dynamic=False`` (static ``[batch, frames, 243]``, for ATC's static OM) and ``dynamic=False,
dynamic_batch=True`` (only the batch axis dynamic, for an OM with batch gears).

Conversions of the export to other precisions belong to the backend that runs them
(onnxruntime's fp16 / int8: ``lstm_exp.backends.onnxruntime.stages``).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Iterable, Optional, Sequence, Union

import numpy as np
import torch

from lstm_exp.errors import ConfigError, DataError, MissingDependencyError, non_finite
from lstm_exp.model.ctc import CTCModel

from lstm_exp.recipe import ONNX_INPUT_NAME as INPUT_NAME, ONNX_OUTPUT_NAME as OUTPUT_NAME, RECIPE_FRAMES


class _ExportError(ConfigError):
    """The written ONNX file is not what was asked for."""


def onnx_opset(path: Union[str, Path]) -> int:
    """The default-domain opset version recorded in an ONNX file."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    versions = [o.version for o in model.opset_import if o.domain in ("", "ai.onnx")]
    if not versions:
        raise _ExportError(f"{path}: declares no default-domain opset")
    return int(versions[0])


def export_onnx(model: CTCModel, path: Union[str, Path], opset: int = 11, batch: int = 16,
                frames: int = RECIPE_FRAMES, dynamic: bool = True, dynamic_batch: bool | None = None) -> Path:
    """Write ``model`` to ``path`` as ONNX at ``opset``; returns the path.

    ``batch``/``frames`` shape the example input (and the static variant's input shape).
    """
    if not 9 <= opset <= 20:
        raise ConfigError(f"export.opset: {opset} is outside 9..20 (the recipe and ATC use 11)")
    if batch < 1 or frames < 1:
        raise ConfigError(f"export: batch={batch}, frames={frames} must both be >= 1 "
                          "(recipe: 16, 390)")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    was_training = model.training
    model.eval()
    example = torch.zeros(batch, frames, model.arch.input_dim, dtype=torch.float32)
    dynamic_axes = None
    if dynamic:
        dynamic_axes = {INPUT_NAME: {0: "batch", 1: "frames"},
                        OUTPUT_NAME: {0: "out_frames", 1: "batch"}}
    elif dynamic_batch:
        dynamic_axes = {INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {1: "batch"}}
    try:
        with torch.no_grad(), warnings.catch_warnings():
            # Tracing nn.LSTM warns about its Python-side hidden-size check and the legacy
            # exporter about LSTM batch sizes; both are expected here and not actionable.
            warnings.simplefilter("ignore", UserWarning)
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            torch.onnx.export(model, (example,), str(path), input_names=[INPUT_NAME],
                              output_names=[OUTPUT_NAME], opset_version=opset,
                              dynamic_axes=dynamic_axes, do_constant_folding=True,
                              dynamo=False)
    finally:
        model.train(was_training)
    written = onnx_opset(path)
    if written != opset:
        raise _ExportError(f"{path}: written with opset {written}, {opset} was requested; the "
                           "legacy exporter (dynamo=False) must be used")
    return path


def max_abs_diff_vs_torch(onnx_path: Union[str, Path], model: CTCModel,
                          batches: Iterable[np.ndarray], names: Optional[Sequence[str]] = None,
                          source: str = "the model") -> float:
    """Largest |onnxruntime(CPU) - torch| over the outputs for ``batches`` ``[B, T, D]``.

    Non-finite outputs (a NaN difference compares false with any tolerance) are a
    :class:`DataError` naming ``source`` (the checkpoint), the ONNX and the batch (``names``)."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise MissingDependencyError("onnxruntime is not installed; pip install "
                                     "'lstm_exp[cpu]' (or [gpu]) to check the ONNX file") from None
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    was_training = model.training
    model.eval()
    worst = 0.0
    try:
        with torch.no_grad():
            for i, batch in enumerate(batches):
                x = np.ascontiguousarray(batch, dtype=np.float32)
                got = session.run([OUTPUT_NAME], {INPUT_NAME: x})[0]
                want = model(torch.from_numpy(x)).numpy()
                if got.shape != want.shape:
                    raise _ExportError(f"{onnx_path}: output shape {got.shape} differs from "
                                       f"torch's {want.shape} for input {x.shape}")
                bad = {"torch": non_finite(want), "onnxruntime": non_finite(got)}
                if any(bad.values()):
                    name = names[i] if names is not None else f"check batch {i} of shape {list(x.shape)}"
                    which = " and ".join(f"{k} ({v})" for k, v in bad.items() if v)
                    raise DataError(f"{source}: non-finite log-probs from {which} on the export check's {name}: "
                                    "the model's outputs overflow float32 (check its weights); use another checkpoint")
                worst = max(worst, float(np.max(np.abs(got - want))))
    finally:
        model.train(was_training)
    return worst
