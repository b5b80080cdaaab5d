"""PyTorch eager inference on the trained checkpoint: the reference for every other backend.

``infer_ms`` covers the forward pass only: on CUDA the input is copied to the device first and
the time is taken with CUDA events around the forward pass after the stream has drained; on CPU
it is wall time around the forward pass.  fp16 / bf16 (CUDA) cast the model and its input; the
log-probs come back as float32.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from lstm_exp.backends.base import Backend, RunOutput
from lstm_exp.errors import MissingDependencyError
from lstm_exp.model import load_checkpoint

_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


class TorchBackend(Backend):
    name = "torch"
    artifact_kind = "checkpoint"

    def __init__(self, cfg) -> None:
        self.cfg = cfg
        device = cfg.device
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if device == "cuda" and not torch.cuda.is_available():
            raise MissingDependencyError("backend.device=cuda but torch sees no CUDA device: write backend.device=cpu")
        self.device = torch.device(device)
        self.dtype = _DTYPES[getattr(cfg, "precision", "fp32")]
        self.model = None

    def load(self, artifact: Path) -> None:
        if self.device.type == "cpu" and self.cfg.num_threads > 0:
            torch.set_num_threads(self.cfg.num_threads)
        if self.device.type == "cuda":
            allow = bool(getattr(self.cfg, "allow_tf32", False))
            torch.backends.cuda.matmul.allow_tf32 = allow
            torch.backends.cudnn.allow_tf32 = allow
            torch.cuda.reset_peak_memory_stats(self.device)
        self.model = load_checkpoint(artifact).to(self.device, dtype=self.dtype).eval()

    @torch.inference_mode()
    def run(self, x: np.ndarray) -> RunOutput:
        inputs = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(self.device, dtype=self.dtype)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            out = self.model(inputs)
            end.record()
            end.synchronize()
            infer_ms = start.elapsed_time(end)
        else:
            t0 = time.perf_counter()
            out = self.model(inputs)
            infer_ms = (time.perf_counter() - t0) * 1e3
        return RunOutput(log_probs=out.float().cpu().numpy(), infer_ms=infer_ms)

    def device_peak_mem_mb(self) -> Optional[float]:
        if self.device.type != "cuda":
            return None
        return torch.cuda.max_memory_allocated(self.device) / 2**20

    def close(self) -> None:
        self.model = None

    def describe(self) -> dict[str, str]:
        device = self.device.type
        tags = {"backend": self.name, "variant": str(self.cfg.variant()), "device": device,
                "precision": getattr(self.cfg, "precision", "fp32"), "runtime": f"torch {torch.__version__}",
                "threads": str(torch.get_num_threads())}
        if device == "cuda":
            tags["device_name"] = torch.cuda.get_device_name(self.device)
            tags["cuda"] = str(torch.version.cuda)
            tags["tf32"] = str(torch.backends.cuda.matmul.allow_tf32)
        return tags
