"""onnxruntime on the ONNX export (fp32, or the precision stage's fp16 / int8 model).

``infer_ms``: without io binding, ``session.run`` on host numpy arrays (what the recipe's T4
figure measured: copies included on a GPU provider); with ``io_binding=true`` (CUDA) the input
is copied into a device buffer allocated once per batch shape before the clock starts, the
output goes to a device buffer allocated once per shape, and the clock stops after the outputs
are synchronised, so the figure is the model execute only; the device-to-host copy comes after.

A provider asked for and absent is an error (never a silent CPU fall-back): the session's
providers are checked after it is created too.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from lstm_exp.backends.base import Backend, RunOutput
from lstm_exp.backends.onnxruntime.cpu import CpuSettings, concurrent_jobs, cpu_settings, usable_cores
from lstm_exp.backends.onnxruntime.plugin import check_providers
from lstm_exp.errors import MissingDependencyError
from lstm_exp.recipe import ONNX_INPUT_NAME as INPUT_NAME, ONNX_OUTPUT_NAME as OUTPUT_NAME

_OPT_LEVELS = {"disable": "ORT_DISABLE_ALL", "basic": "ORT_ENABLE_BASIC",
               "extended": "ORT_ENABLE_EXTENDED", "all": "ORT_ENABLE_ALL"}
#: CANN provider precision_mode per requested precision (its own default on Ascend310 is force_fp16)
_CANN_PRECISION_MODE = {"fp32": "must_keep_origin_dtype", "fp16": "force_fp16"}


class OnnxRuntimeBackend(Backend):
    name = "onnxruntime"

    def __init__(self, cfg, cpu: CpuSettings | None = None) -> None:
        self.cfg = cfg
        check_providers(cfg)
        cores = usable_cores()
        self.cpu = cpu or cpu_settings(cfg, cores, concurrent_jobs(cores))
        import onnxruntime

        self.ort = onnxruntime
        self.session = None
        self._bound: dict[tuple, tuple] = {}
        self._static_batch = None

    def _provider_options(self) -> list:
        cfg = self.cfg
        providers = []
        for provider in cfg.providers:
            if provider == "CUDAExecutionProvider":
                providers.append((provider, {"device_id": cfg.device_id}))
            elif provider == "TensorrtExecutionProvider":
                trt = {"device_id": cfg.device_id, "trt_fp16_enable": cfg.precision == "fp16"}
                if cfg.trt_cache_dir:
                    trt.update(trt_engine_cache_enable=True, trt_engine_cache_path=cfg.trt_cache_dir)
                providers.append((provider, trt))
            elif provider == "CANNExecutionProvider":
                providers.append((provider, {"device_id": cfg.device_id,
                                             "precision_mode": _CANN_PRECISION_MODE[cfg.precision]}))
            else:
                providers.append(provider)
        return providers

    def load(self, artifact: Path) -> None:
        ort = self.ort
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.cpu.intra_op_threads
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if self.cpu.allow_spinning else "0")
        options.inter_op_num_threads = self.cfg.inter_op_threads
        options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, _OPT_LEVELS[self.cfg.graph_optimization])
        self.session = ort.InferenceSession(str(artifact), sess_options=options, providers=self._provider_options())
        active = self.session.get_providers()
        if active[0] != self.cfg.providers[0]:
            raise MissingDependencyError(
                f"backend.providers: onnxruntime created the session on {active[0]}, not {self.cfg.providers[0]} "
                "(the provider failed to initialise; see onnxruntime's log): refusing a silent fall-back")
        self._bound = {}
        batch_axis = self.session.get_inputs()[0].shape[0]
        #: an ONNX with a static batch (export.onnx_file, e.g. the guide's [16, 390, 243]) runs a
        #: smaller last batch padded with zero rows, as a static OM does; only the real rows come back
        self._static_batch = batch_axis if isinstance(batch_axis, int) and batch_axis > 0 else None

    def run(self, x: np.ndarray) -> RunOutput:
        x = np.ascontiguousarray(x, dtype=np.float32)
        rows = x.shape[0]
        padded = self._static_batch is not None and rows < self._static_batch
        if padded:
            x = np.concatenate([x, np.zeros((self._static_batch - rows, *x.shape[1:]), dtype=np.float32)])
        if self.cfg.io_binding:
            out = self._run_bound(x)
        else:
            t0 = time.perf_counter()
            (log_probs,) = self.session.run([OUTPUT_NAME], {INPUT_NAME: x})
            out = RunOutput(log_probs=log_probs, infer_ms=(time.perf_counter() - t0) * 1e3)
        if padded:
            out.log_probs = np.ascontiguousarray(out.log_probs[:, :rows])
        return out

    def _buffers(self, x: np.ndarray):
        """The io binding and device buffers for ``x``'s shape, allocated on first use."""
        key = x.shape
        if key not in self._bound:
            ort, device, device_id = self.ort, "cuda", self.cfg.device_id
            x_dev = ort.OrtValue.ortvalue_from_shape_and_type(list(x.shape), np.float32, device, device_id)
            binding = self.session.io_binding()
            binding.bind_ortvalue_input(INPUT_NAME, x_dev)
            binding.bind_output(OUTPUT_NAME, device, device_id)
            self.session.run_with_iobinding(binding)  # learn the output shape once
            shape = binding.get_outputs()[0].shape()
            out_dev = ort.OrtValue.ortvalue_from_shape_and_type(shape, np.float32, device, device_id)
            binding = self.session.io_binding()
            binding.bind_ortvalue_input(INPUT_NAME, x_dev)
            binding.bind_ortvalue_output(OUTPUT_NAME, out_dev)
            self._bound[key] = (binding, x_dev, out_dev)
        return self._bound[key]

    def _run_bound(self, x: np.ndarray) -> RunOutput:
        binding, x_dev, out_dev = self._buffers(x)
        x_dev.update_inplace(x)  # host -> device, before the clock
        binding.synchronize_inputs()
        t0 = time.perf_counter()
        self.session.run_with_iobinding(binding)
        binding.synchronize_outputs()
        infer_ms = (time.perf_counter() - t0) * 1e3
        return RunOutput(log_probs=out_dev.numpy(), infer_ms=infer_ms)

    def close(self) -> None:
        self._bound = {}
        self.session = None

    def describe(self) -> dict[str, str]:
        providers = self.session.get_providers() if self.session else list(self.cfg.providers)
        tags = {"backend": self.name, "variant": str(self.cfg.variant()), "device": self.cfg.device,
                "precision": self.cfg.precision, "runtime": f"onnxruntime {self.ort.__version__}",
                "providers": ",".join(providers), **self.cpu.tags(),
                "inter_op_threads": str(self.cfg.inter_op_threads), "io_binding": str(self.cfg.io_binding),
                "graph_optimization": self.cfg.graph_optimization}
        if self.cfg.device in ("cuda", "tensorrt"):
            tags["device_name"] = _cuda_device_name(self.cfg.device_id)
        return tags


def _cuda_device_name(device_id: int) -> str:
    """The GPU's name through torch (installed with the project) when it sees CUDA, else 'unknown'."""
    try:
        import torch

        if torch.cuda.is_available():
            return torch.cuda.get_device_name(device_id)
    except Exception:  # noqa: BLE001 - a tag, never a failure
        pass
    return "unknown"
