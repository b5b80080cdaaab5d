"""PyTorch eager inference on the trained checkpoint: the reference for every other backend.

``infer_ms`` covers the forward pass only: on CUDA the input is copied to the device first and
the time is taken with CUDA events around the forward pass after the stream has drained; on CPU
it is wall time around the forward pass.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from lstm_exp.backends.base import Backend, RunOutput
from lstm_exp.errors import ConfigError
from lstm_exp.model import load_checkpoint


class TorchBackend(Backend):
    name = "torch"
    artifact_kind = "checkpoint"

    def __init__(self, cfg) -> None:
        self.cfg = cfg
        device = cfg.device
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if device == "cuda" and not torch.cuda.is_available():
            raise ConfigError("backend.device=cuda but torch sees no CUDA device: write backend.device=cpu")
        self.device = torch.device(device)
        self.model = None

    def load(self, artifact: Path) -> None:
        if self.device.type == "cpu" and self.cfg.num_threads > 0:
            torch.set_num_threads(self.cfg.num_threads)
        self.model = load_checkpoint(artifact).to(self.device).eval()

    @torch.inference_mode()
    def run(self, x: np.ndarray) -> RunOutput:
        inputs = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(self.device)
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

    def close(self) -> None:
        self.model = None

    def describe(self) -> dict[str, str]:
        device = self.device.type
        if device == "cuda":
            device = torch.cuda.get_device_name(self.device)
        return {"backend": self.name, "device": device, "runtime": f"torch {torch.__version__}",
                "threads": str(torch.get_num_threads())}
