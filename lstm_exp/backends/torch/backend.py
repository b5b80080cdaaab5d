"""PyTorch eager inference on the trained checkpoint: the reference for every other backend.

``infer_ms`` covers the forward pass only (or the CUDA graph's replay): on CUDA the input is
copied to the device first and the time is taken with CUDA events around the forward pass after
the stream has drained; on CPU it is wall time around the forward pass.  The log-probs come back
as float32 on the host.

Precision: fp16 and bf16 on CUDA cast the model and its input.  bf16 on CPU runs the fp32 model
under ``torch.autocast('cpu', dtype=torch.bfloat16)``: its convolutions, matmuls and the
mkldnn LSTM layers compute in bf16 while BatchNorm and log-softmax stay fp32.  Autocast rather
than casting the model: the two ran at the same speed within the noise of a shared 2-core AVX2
VM without native bf16 (both about 10x slower than fp32 there: bf16 is emulated, and the backend
warns), and autocast keeps BatchNorm statistics and the head in fp32; on a CPU with
AVX512-BF16 (issue 22's Zen 4) autocast ran 1.6x faster than fp32.  See the README, "GPU variants
and torch CPU bf16".

The network: ``backend.lstm_form=split_direction`` rebuilds the loaded stock checkpoint with
:func:`lstm_exp.model.split_lstm.split_direction` (same weights).  ``backend.cuda_graphs=true``
captures one CUDA graph per input shape ``[B, frames, 243]`` (batches are padded to
``infer.pad_to`` frames, so one graph per batch size) on a side stream after three eager
warm-ups, all graphs in one memory pool, and replays it; the input is copied into the graph's
static input buffer before the clock starts.
"""
from __future__ import annotations

import contextlib
import logging
import time
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from lstm_exp.backends.base import Backend, RunOutput
from lstm_exp.backends.threads import Threads, resolve_threads
from lstm_exp.errors import MissingDependencyError
from lstm_exp.model import load_checkpoint

log = logging.getLogger("lstm_exp")

_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
#: /proc/cpuinfo flags of CPUs that compute bf16 natively (AVX512-BF16, AMX); without them bf16 is emulated
BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")
CPUINFO = Path("/proc/cpuinfo")
#: eager runs on a side stream before a graph is captured (cuDNN / cuBLAS lazy initialisation)
GRAPH_WARMUP_RUNS = 3


def uses_cpu_autocast(device: torch.device, precision: str) -> bool:
    """bf16 on CPU runs the fp32 model under autocast; every other precision casts the model."""
    return device.type == "cpu" and precision == "bf16"


def cpu_bf16_native() -> str:
    """``true`` / ``false``: whether the CPU computes bf16 natively (its cpuinfo flags); ``unknown`` off Linux."""
    try:
        flags = next((line.split(":", 1)[1].split() for line in CPUINFO.read_text().splitlines()
                      if line.startswith("flags")), None)
    except OSError:
        flags = None
    if flags is None:
        return "unknown"
    return str(any(flag in flags for flag in BF16_CPU_FLAGS)).lower()


class CudaGraphs:
    """One captured CUDA graph per input shape: static input, static output, replay."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.model = model
        self.pool = None
        self.graphs: dict[tuple, tuple[torch.cuda.CUDAGraph, torch.Tensor, torch.Tensor]] = {}

    def _capture(self, x: torch.Tensor) -> tuple[torch.cuda.CUDAGraph, torch.Tensor, torch.Tensor]:
        static_in = x.clone()
        side = torch.cuda.Stream(device=x.device)
        side.wait_stream(torch.cuda.current_stream(x.device))
        with torch.cuda.stream(side):
            for _ in range(GRAPH_WARMUP_RUNS):
                self.model(static_in)
        torch.cuda.current_stream(x.device).wait_stream(side)
        if self.pool is None:
            self.pool = torch.cuda.graph_pool_handle()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self.pool):
            static_out = self.model(static_in)
        torch.cuda.synchronize(x.device)
        return graph, static_in, static_out

    def prepare(self, x: torch.Tensor) -> tuple[torch.cuda.CUDAGraph, torch.Tensor]:
        """The graph for ``x``'s shape (captured on first sight) with ``x`` copied into its input;
        returns the graph and its static output."""
        key = tuple(x.shape)
        if key not in self.graphs:
            self.graphs[key] = self._capture(x)
        graph, static_in, static_out = self.graphs[key]
        static_in.copy_(x)
        return graph, static_out

    def clear(self) -> None:
        self.graphs.clear()
        self.pool = None


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
        self.precision = getattr(cfg, "precision", "fp32")
        self.autocast = uses_cpu_autocast(self.device, self.precision)
        self.dtype = torch.float32 if self.autocast else _DTYPES[self.precision]
        self.model = None
        self.graphs: Optional[CudaGraphs] = None
        #: the CPU threads resolved at load (None on a GPU)
        self.threads: Optional[Threads] = None

    def load(self, artifact: Path) -> None:
        if self.device.type == "cpu":
            self.threads = resolve_threads(self.cfg.threads)
            if self.threads.count > 0:
                torch.set_num_threads(self.threads.count)
        if self.autocast and cpu_bf16_native() == "false":
            log.warning("backend.precision=bf16 on a CPU without AVX512-BF16 or AMX (none in %s): torch emulates bf16, "
                        "which is slower than fp32 here; it is measured as asked", CPUINFO)
        if self.device.type == "cuda":
            allow = bool(getattr(self.cfg, "allow_tf32", False))
            torch.backends.cuda.matmul.allow_tf32 = allow
            torch.backends.cudnn.allow_tf32 = allow
            torch.cuda.reset_peak_memory_stats(self.device)
        model = load_checkpoint(artifact)
        if getattr(self.cfg, "lstm_form", "stock") == "split_direction":
            from lstm_exp.model.split_lstm import split_direction

            model = split_direction(model)
        self.model = model.to(self.device, dtype=self.dtype).eval()
        if getattr(self.cfg, "cuda_graphs", False):
            self.graphs = CudaGraphs(self.model)

    def _precision_scope(self):
        if self.autocast:
            return torch.autocast("cpu", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    @torch.inference_mode()
    def run(self, x: np.ndarray) -> RunOutput:
        inputs = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(self.device, dtype=self.dtype)
        if self.device.type == "cuda":
            out, infer_ms = self._run_cuda(inputs)
        else:
            with self._precision_scope():
                t0 = time.perf_counter()
                out = self.model(inputs)
                infer_ms = (time.perf_counter() - t0) * 1e3
        return RunOutput(log_probs=out.float().cpu().numpy(), infer_ms=infer_ms)

    def _run_cuda(self, inputs: torch.Tensor) -> tuple[torch.Tensor, float]:
        """The forward pass (or the graph's replay) timed with CUDA events after the stream drained."""
        graph = static_out = None
        if self.graphs is not None:
            graph, static_out = self.graphs.prepare(inputs)
        torch.cuda.synchronize(self.device)
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        if graph is not None:
            graph.replay()
            out = static_out
        else:
            out = self.model(inputs)
        end.record()
        end.synchronize()
        return out, start.elapsed_time(end)

    def device_peak_mem_mb(self) -> Optional[float]:
        if self.device.type != "cuda":
            return None
        return torch.cuda.max_memory_allocated(self.device) / 2**20

    def close(self) -> None:
        if self.graphs is not None:
            self.graphs.clear()
            self.graphs = None
        self.model = None

    def describe(self) -> dict[str, str]:
        device = self.device.type
        tags = {"backend": self.name, "variant": str(self.cfg.variant()), "device": device,
                "precision": self.precision, "runtime": f"torch {torch.__version__}",
                "threads": str(torch.get_num_threads()),
                "lstm_form": str(getattr(self.cfg, "lstm_form", "stock")),
                "cuda_graphs": str(bool(getattr(self.cfg, "cuda_graphs", False))),
                "allow_tf32": str(bool(getattr(self.cfg, "allow_tf32", False))),
                "precision_mode": "autocast" if self.autocast else "cast"}
        if self.threads is not None:
            tags.update(self.threads.tags())
        if self.autocast:
            tags["cpu_bf16_native"] = cpu_bf16_native()
        if device == "cuda":
            tags["device_name"] = torch.cuda.get_device_name(self.device)
            tags["cuda"] = str(torch.version.cuda)
            tags["tf32"] = str(torch.backends.cuda.matmul.allow_tf32)
        return tags
