"""onnxruntime on the dynamic-axes ONNX export.

``infer_ms``: without io binding, ``session.run`` on host numpy arrays (what the recipe's T4
figure measured: copies included on a GPU provider); with ``io_binding=true`` (CUDA) the input is
copied to the device before the clock starts and the output stays there until it stops, so the
figure is the model execute only; the device-to-host copy happens afterwards.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from lstm_exp.backends.base import Backend, RunOutput
from lstm_exp.errors import MissingDependencyError

INPUT_NAME = "actual_input_1"
OUTPUT_NAME = "output1"
_OPT_LEVELS = {"disable": "ORT_DISABLE_ALL", "basic": "ORT_ENABLE_BASIC",
               "extended": "ORT_ENABLE_EXTENDED", "all": "ORT_ENABLE_ALL"}


def _import_ort():
    try:
        import onnxruntime
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise MissingDependencyError(
            "backend=onnxruntime needs onnxruntime: pip install -e '.[cpu]' (or '.[gpu]' for onnxruntime-gpu)"
        ) from exc
    return onnxruntime


class OnnxRuntimeBackend(Backend):
    name = "onnxruntime"
    artifact_kind = "onnx"

    def __init__(self, cfg) -> None:
        self.cfg = cfg
        self.ort = _import_ort()
        available = self.ort.get_available_providers()
        missing = [p for p in cfg.providers if p not in available]
        if missing:
            raise MissingDependencyError(
                f"backend.providers: {', '.join(missing)} not available in this onnxruntime build "
                f"(available: {', '.join(available)}); for CUDA install the GPU build: pip install -e '.[gpu]'"
            )
        self.session = None

    def load(self, artifact: Path) -> None:
        ort = self.ort
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.cfg.intra_op_threads
        options.inter_op_num_threads = self.cfg.inter_op_threads
        options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, _OPT_LEVELS[self.cfg.graph_optimization])
        providers = []
        for provider in self.cfg.providers:
            if provider == "CUDAExecutionProvider":
                providers.append((provider, {"device_id": self.cfg.device_id}))
            elif provider == "TensorrtExecutionProvider":
                trt = {"device_id": self.cfg.device_id}
                if self.cfg.trt_cache_dir:
                    trt.update(trt_engine_cache_enable=True, trt_engine_cache_path=self.cfg.trt_cache_dir)
                providers.append((provider, trt))
            else:
                providers.append(provider)
        self.session = ort.InferenceSession(str(artifact), sess_options=options, providers=providers)

    def run(self, x: np.ndarray) -> RunOutput:
        x = np.ascontiguousarray(x, dtype=np.float32)
        if self.cfg.io_binding:
            return self._run_bound(x)
        t0 = time.perf_counter()
        (out,) = self.session.run([OUTPUT_NAME], {INPUT_NAME: x})
        return RunOutput(log_probs=out, infer_ms=(time.perf_counter() - t0) * 1e3)

    def _run_bound(self, x: np.ndarray) -> RunOutput:
        device = "cuda"
        binding = self.session.io_binding()
        x_dev = self.ort.OrtValue.ortvalue_from_numpy(x, device, self.cfg.device_id)
        binding.bind_ortvalue_input(INPUT_NAME, x_dev)
        binding.bind_output(OUTPUT_NAME, device, self.cfg.device_id)
        binding.synchronize_inputs()
        t0 = time.perf_counter()
        self.session.run_with_iobinding(binding)
        binding.synchronize_outputs()
        infer_ms = (time.perf_counter() - t0) * 1e3
        out = binding.copy_outputs_to_cpu()[0]
        return RunOutput(log_probs=out, infer_ms=infer_ms)

    def close(self) -> None:
        self.session = None

    def describe(self) -> dict[str, str]:
        providers = self.session.get_providers() if self.session else list(self.cfg.providers)
        return {"backend": self.name, "device": "cuda" if "CUDAExecutionProvider" in providers[:1] else "cpu",
                "runtime": f"onnxruntime {self.ort.__version__}", "providers": ",".join(providers),
                "threads": str(self.cfg.intra_op_threads)}
