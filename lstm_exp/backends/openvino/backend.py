"""OpenVINO on the ONNX export: one fixed shape compiled per batch shape.

* **Shapes**: the dynamic-axes ONNX is read once; each batch shape ``[rows, frames, 243]`` gets
  its own ``model.reshape`` + ``Core.compile_model`` (kept, least recently used dropped past
  ``backend.max_compiled_shapes``).  Compiling happens before the clock starts; the count and
  the time it took are tags (``openvino.compiles``, ``openvino.compile_ms``).
* **Hints**: ``INFERENCE_PRECISION_HINT`` is always set (f32 or bf16, from ``backend.precision``)
  and checked on the compiled model: a device that compiled another precision is an error,
  never a silent change.  ``PERFORMANCE_HINT``: LATENCY (one infer request) below
  :data:`~lstm_exp.backends.openvino.config.THROUGHPUT_FROM_BATCH` rows, THROUGHPUT from there
  up (``performance_hint=auto``): the batch is split into ``streams`` equal slices (the last
  padded with zero rows, dropped from the output), one async infer request per slice, all
  started, then all waited for.
* ``infer_ms``: the model execute only: from the first ``start_async`` to the end of the last
  ``wait``; the inputs are set as tensors before, the outputs copied to numpy after.
"""
from __future__ import annotations

import math
import os
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lstm_exp.backends.base import Backend, RunOutput
from lstm_exp.backends.openvino.config import OV_DEVICES, OV_PRECISION_HINTS, THROUGHPUT_FROM_BATCH
from lstm_exp.backends.openvino.plugin import check_precision, openvino_core
from lstm_exp.backends.threads import resolve_threads
from lstm_exp.errors import MissingDependencyError


@dataclass
class CompiledShape:
    """One compiled fixed shape and its infer requests (one for LATENCY, ``streams`` for THROUGHPUT)."""

    compiled: Any
    requests: list


class OpenVinoBackend(Backend):
    name = "openvino"

    def __init__(self, cfg) -> None:
        self.cfg = cfg
        self.core = openvino_core(cfg)
        check_precision(self.core, cfg)
        import openvino

        self.ov = openvino
        self.device = OV_DEVICES[cfg.device]
        self.model = None
        self._shapes: OrderedDict[tuple, CompiledShape] = OrderedDict()
        self.compiles, self.compile_ms = 0, 0.0
        self.hints_compiled: set[str] = set()
        #: INFERENCE_NUM_THREADS (0: OpenVINO's default), resolved once per job
        self.threads = resolve_threads(cfg.threads)

    # -- what is compiled ------------------------------------------------------------------
    def load(self, artifact: Path) -> None:
        self.model = self.core.read_model(str(artifact))
        self._shapes.clear()

    def streams(self) -> int:
        """Async infer requests a THROUGHPUT batch is split over: ``backend.streams``, else one per thread."""
        cfg = self.cfg
        if cfg.streams:
            return cfg.streams
        return self.threads.count or os.cpu_count() or 1

    def hint_for(self, rows: int) -> str:
        """LATENCY or THROUGHPUT for a batch of ``rows`` (``performance_hint=auto``: by THROUGHPUT_FROM_BATCH)."""
        hint = self.cfg.performance_hint
        if hint == "auto":
            return "THROUGHPUT" if rows >= THROUGHPUT_FROM_BATCH else "LATENCY"
        return hint.upper()

    def properties(self, hint: str) -> dict:
        """The compile properties: precision always explicit; threads; streams under THROUGHPUT."""
        props = {"INFERENCE_PRECISION_HINT": OV_PRECISION_HINTS[self.cfg.precision], "PERFORMANCE_HINT": hint}
        if self.threads.count:
            props["INFERENCE_NUM_THREADS"] = self.threads.count
        if hint == "THROUGHPUT":
            props["NUM_STREAMS"] = self.streams()
        return props

    def _compiled(self, hint: str, shape: tuple) -> CompiledShape:
        key = (hint, shape)
        if key in self._shapes:
            self._shapes.move_to_end(key)
            return self._shapes[key]
        t0 = time.perf_counter()
        model = self.model.clone()
        model.reshape(list(shape))
        compiled = self.core.compile_model(model, self.device, self.properties(hint))
        self._check_compiled_precision(compiled)
        count = self.streams() if hint == "THROUGHPUT" else 1
        entry = CompiledShape(compiled, [compiled.create_infer_request() for _ in range(count)])
        self.compiles += 1
        self.hints_compiled.add(hint)
        self.compile_ms += (time.perf_counter() - t0) * 1e3
        self._shapes[key] = entry
        limit = self.cfg.max_compiled_shapes
        while limit and len(self._shapes) > limit:
            self._shapes.popitem(last=False)
        return entry

    def _check_compiled_precision(self, compiled: Any) -> None:
        """The compiled model runs the precision asked for (OpenVINO's short names: f32, bf16)."""
        wanted = OV_PRECISION_HINTS[self.cfg.precision]
        got = compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()
        if got != wanted:
            raise MissingDependencyError(
                f"backend.precision={self.cfg.precision}: OpenVINO {self.ov.__version__} compiled the model at "
                f"{got} on {self.device}, not {wanted}: refusing a silent precision change")

    # -- running ---------------------------------------------------------------------------
    def run(self, x: np.ndarray) -> RunOutput:
        x = np.ascontiguousarray(x, dtype=np.float32)
        rows = x.shape[0]
        hint = self.hint_for(rows)
        slice_rows = math.ceil(rows / self.streams()) if hint == "THROUGHPUT" else rows
        entry = self._compiled(hint, (slice_rows, *x.shape[1:]))
        slices = [x[start:start + slice_rows] for start in range(0, rows, slice_rows)]
        requests = entry.requests[: len(slices)]
        for request, part in zip(requests, slices):
            request.set_input_tensor(self.ov.Tensor(_pad_rows(part, slice_rows)))
        t0 = time.perf_counter()
        for request in requests:
            request.start_async()
        for request in requests:
            request.wait()
        infer_ms = (time.perf_counter() - t0) * 1e3
        outputs = [request.get_output_tensor().data[:, : len(part)] for request, part in zip(requests, slices)]
        return RunOutput(log_probs=np.ascontiguousarray(np.concatenate(outputs, axis=1)), infer_ms=infer_ms)

    def close(self) -> None:
        self._shapes.clear()
        self.model = None

    def describe(self) -> dict[str, str]:
        cfg, core = self.cfg, self.core
        return {"backend": self.name, "variant": str(cfg.variant()), "device": cfg.device, "precision": cfg.precision,
                "runtime": f"openvino {self.ov.__version__}",
                "device_name": str(core.get_property(self.device, "FULL_DEVICE_NAME")),
                "openvino.optimization_capabilities": ",".join(core.get_property(self.device, "OPTIMIZATION_CAPABILITIES")),
                "openvino.inference_precision_hint": OV_PRECISION_HINTS[cfg.precision],
                "openvino.performance_hint": cfg.performance_hint,
                "openvino.hints_compiled": ",".join(sorted(self.hints_compiled)), "openvino.streams": str(self.streams()),
                "threads": str(self.threads.count), **self.threads.tags(), "openvino.compiles": str(self.compiles),
                "openvino.compile_ms": f"{self.compile_ms:.1f}"}


def _pad_rows(x: np.ndarray, rows: int) -> np.ndarray:
    """``x`` with zero rows appended up to ``rows`` (a THROUGHPUT batch's last slice)."""
    if len(x) == rows:
        return x
    return np.concatenate([x, np.zeros((rows - len(x), *x.shape[1:]), dtype=x.dtype)])
