"""onnxruntime's own cached stage: ``precision`` (the export converted to fp16, or int8 by dynamic
quantization), checked against the fp32 export on real dev batches.

    precision  backend.precision + export  -> model.onnx in fp16 / int8, max |diff| vs fp32 recorded

The cache key holds what decides the converted file: the precision and, for int8, the ops
quantized (:data:`INT8_OPS`).  :data:`PRECISION_STAGE` is what the plugin hands the pipeline.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Sequence, Union

import numpy as np

from lstm_exp.backends.plugin import Stage
from lstm_exp.errors import ConfigError, DataError

#: the ops int8 dynamic quantization rewrites
INT8_OPS = ("LSTM", "MatMul", "Gemm")
#: precisions :func:`convert_precision` writes
CONVERTED_PRECISIONS = ("fp16", "int8")


def convert_precision(source: Union[str, Path], path: Union[str, Path], precision: str) -> Path:
    """Write ``source`` (an fp32 export) as ``precision``: ``fp16`` (float16 weights and compute,
    float32 input/output, onnxruntime.transformers.float16) or ``int8`` (onnxruntime's dynamic
    quantization of the LSTM and MatMul weights, activations quantized per batch at run time; CPU)."""
    import onnx

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if precision == "fp16":
        from onnxruntime.transformers.float16 import convert_float_to_float16

        model = convert_float_to_float16(onnx.load(str(source)), keep_io_types=True)
        onnx.save(model, str(path))
    elif precision == "int8":
        from onnxruntime.quantization import QuantType, quantize_dynamic

        # LSTM and MatMul only: ConvInteger (a quantized Conv) runs ~3x slower than the fp32 Conv
        # on onnxruntime's CPU provider, so the two small convolutions stay fp32.
        quantize_dynamic(str(source), str(path), weight_type=QuantType.QInt8, op_types_to_quantize=list(INT8_OPS))
    else:
        raise ConfigError(f"precision={precision!r}: write one of {', '.join(CONVERTED_PRECISIONS)}")
    return path


def max_abs_diff_onnx(onnx_path: Union[str, Path], reference_path: Union[str, Path],
                      batches: Iterable[np.ndarray], providers: Sequence[str] = ("CPUExecutionProvider",)) -> float:
    """Largest |onnx_path - reference_path| over the outputs for ``batches`` (both on ``providers``)."""
    import onnxruntime as ort

    from lstm_exp.model.export import INPUT_NAME, OUTPUT_NAME

    got_session = ort.InferenceSession(str(onnx_path), providers=list(providers))
    want_session = ort.InferenceSession(str(reference_path), providers=list(providers))
    worst = 0.0
    for batch in batches:
        x = np.ascontiguousarray(batch, dtype=np.float32)
        got = got_session.run([OUTPUT_NAME], {INPUT_NAME: x})[0].astype(np.float32)
        want = want_session.run([OUTPUT_NAME], {INPUT_NAME: x})[0]
        worst = max(worst, float(np.max(np.abs(got - want))))
    return worst


def converted_precision(cfg: Any) -> str | None:
    """The precision the ``precision`` stage converts the export to, or None (the fp32 export).

    CANN takes the fp32 model and its own precision_mode; everyone else gets a converted model."""
    if cfg.precision == "fp32" or cfg.device == "cann":
        return None
    return cfg.precision


def build_precision(pipeline: Any, stage: Stage) -> Path:
    """Find or build the converted model (``pipeline``: a :class:`lstm_exp.pipeline.Pipeline`)."""
    backend = pipeline.exp.backend
    precision = converted_precision(backend)
    source = pipeline.onnx_path
    config = {"precision": precision, **({"ops": list(INT8_OPS)} if precision == "int8" else {})}

    def build(tmp: Path) -> dict:
        path = convert_precision(source, tmp / "model.onnx", precision)
        checks = [x for _, x in pipeline.verification_batches(pipeline.checked_shape())]
        diff = max_abs_diff_onnx(path, source, checks, providers=list(backend.providers))
        if not np.isfinite(diff):
            raise DataError(f"{path}: the {precision} model gives non-finite log-probs")
        return {"precision": precision, "max_abs_diff_vs_fp32": diff}

    return pipeline.run_stage(stage, config, build) / "model.onnx"


PRECISION_STAGE = Stage(name="precision", version="1", inputs=("export",), output=build_precision)
