"""An ONNX made elsewhere (``export.onnx_file``, e.g. the guide's ``lstm.onnx``), used instead of
our export by backend=onnxruntime and backend=acl (which gives it to ATC).

:func:`inspect_onnx` runs once, when the file is imported into the stage cache: it must load and
pass ``onnx.checker``, have one float input ``actual_input_1`` of rank 3 whose last dimension is
the prepared features' (243 for the recipe's fbank), an output ``output1``, and run in
onnxruntime on a zero batch, giving time-major log-probs ``[T', B, C]`` whose time axis is the
input's halved 0 or more times (the recipe's convolutions; this gives the valid output frames
of a padded utterance).  What it finds (static batch / frames, classes, halvings) is the import's
summary.  :func:`check_onnx_fits` then compares those facts with the job on every run: the
batching a static input needs and the number of units.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from lstm_exp.errors import ConfigError, DataError, MissingDependencyError
from lstm_exp.model.export import INPUT_NAME, OUTPUT_NAME  # the recipe's names, as our export writes them
from lstm_exp.recipe import RECIPE_FRAMES
#: input frames of the probe run when the frame axis is dynamic (the recipe's padding)
PROBE_FRAMES = RECIPE_FRAMES
#: most halvings of the time axis looked for
MAX_HALVINGS = 8


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__


def halved(frames: Any, times: int) -> np.ndarray:
    """Valid output frames after ``times`` stride-2 convolutions (kernel 3, padding 1)."""
    out = np.asarray(frames, dtype=np.int64)
    for _ in range(times):
        out = (out - 1) // 2 + 1
    return out


def _dims(value_info: Any) -> list[Optional[int]]:
    """Static sizes of a tensor's axes; None for a named (dynamic) or unknown axis."""
    return [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None
            for d in value_info.type.tensor_type.shape.dim]


def inspect_onnx(path: Path, feature_dim: int, where: str = "export.onnx_file") -> dict:
    """Check ``path`` as the recipe's network on ``feature_dim`` features; returns what it found."""
    import onnx

    name = f"{where}={path}"
    try:
        model = onnx.load(str(path))
    except Exception as exc:  # protobuf's DecodeError, or an OSError
        raise DataError(f"{name}: not an ONNX model ({_first_line(exc)})") from None
    try:
        onnx.checker.check_model(model)
    except Exception as exc:  # onnx.checker.ValidationError and friends
        raise DataError(f"{name}: fails onnx.checker ({_first_line(exc)})") from None
    graph = model.graph
    initializers = {init.name for init in graph.initializer}
    inputs = [i for i in graph.input if i.name not in initializers]
    if [i.name for i in inputs] != [INPUT_NAME]:
        raise DataError(f"{name}: inputs {[i.name for i in inputs]}; expected one, {INPUT_NAME} "
                        "(the recipe's export: input_names=['actual_input_1'])")
    if inputs[0].type.tensor_type.elem_type != onnx.TensorProto.FLOAT:
        raise DataError(f"{name}: input {INPUT_NAME} is not float32")
    dims = _dims(inputs[0])
    if len(dims) != 3:
        raise DataError(f"{name}: input {INPUT_NAME} has rank {len(dims)}; expected [batch, frames, features]")
    batch, frames, features = dims
    if features != feature_dim:
        raise DataError(f"{name}: input {INPUT_NAME} takes {features if features else 'a dynamic number of'} features "
                        f"per frame, the prepared features have {feature_dim}: use an ONNX made for these features "
                        "(or prepare the data it was made for)")
    if OUTPUT_NAME not in [o.name for o in graph.output]:
        raise DataError(f"{name}: outputs {[o.name for o in graph.output]}; expected {OUTPUT_NAME} "
                        "(the recipe's export: output_names=['output1'])")
    probe = np.zeros((batch or 1, frames or PROBE_FRAMES, feature_dim), dtype=np.float32)
    try:
        import onnxruntime as ort
    except ImportError:
        raise MissingDependencyError(f"{name}: checking it needs onnxruntime: pip install -e '.[cpu]'") from None
    try:
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        (out,) = session.run([OUTPUT_NAME], {INPUT_NAME: probe})
    except Exception as exc:  # onnxruntime's own exception types
        raise DataError(f"{name}: onnxruntime cannot run it on a {list(probe.shape)} input "
                        f"({_first_line(exc)})") from None
    if out.ndim != 3 or out.shape[1] != probe.shape[0]:
        raise DataError(f"{name}: output {OUTPUT_NAME} is {list(out.shape)} for a {list(probe.shape)} input; expected "
                        "time-major log-probs [frames', batch, classes]")
    halvings = [k for k in range(MAX_HALVINGS + 1) if int(halved(probe.shape[1], k)) == out.shape[0]]
    if not halvings:
        raise DataError(f"{name}: output {OUTPUT_NAME} has {out.shape[0]} frames for {probe.shape[1]} input frames, "
                        "not the input's frames halved by stride-2 convolutions (the recipe's network)")
    return {"source": str(path), "batch": batch, "frames": frames, "features": features,
            "classes": int(out.shape[2]), "time_halvings": halvings[0]}


def check_onnx_fits(facts: dict, *, batch: int, batching: Optional[str], pad_to: Optional[int],
                    om_frames: Optional[int] = None, om_gears: bool = False,
                    units: Sequence[str] = (), units_source: str = "") -> None:
    """The job against an imported ONNX's ``facts``: static axes need the batching they were made
    for, and the output classes must be the units."""
    name = f"export.onnx_file={facts['source']}"
    static_batch, static_frames = facts["batch"], facts["frames"]
    if static_frames is not None:
        if om_frames is not None and om_frames != static_frames:  # acl: the OM's input is the ONNX's
            raise ConfigError(f"{name} has a static input of {static_frames} frames: write "
                              f"backend.atc.frames={static_frames}")
        if om_frames is None and (batching != "fixed" or pad_to != static_frames):
            raise ConfigError(f"{name} has a static input of {static_frames} frames, so every batch must be padded to "
                              f"them: write infer.batching=fixed infer.pad_to={static_frames}")
    if static_batch is not None:
        if om_gears:
            raise ConfigError(f"{name} has a static batch of {static_batch}; batch gears need a dynamic batch axis: "
                              f"write backend.atc.dynamic_batch=false batch={static_batch}")
        if batch != static_batch:
            raise ConfigError(f"{name} has a static batch of {static_batch}: write batch={static_batch}")
    if facts["classes"] != len(units):
        raise DataError(f"{name}: {facts['classes']} output classes, but {units_source} lists {len(units)} units: "
                        "give the units it was trained with as model.units_file")
