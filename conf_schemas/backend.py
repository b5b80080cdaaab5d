"""Schemas of the ``backend`` group's CPU/GPU options: torch and onnxruntime.

The ACL (Ascend) backend's schema lives in :mod:`conf_schemas.acl`.  Each backend config
names the class that implements it in ``_target_`` (built with ``hydra.utils.get_class``), the
optimum-benchmark way: one folder per backend under ``lstm_exp/backends/``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional

from lstm_exp.errors import ConfigError

KNOWN_ORT_PROVIDERS = (
    "CPUExecutionProvider",
    "CUDAExecutionProvider",
    "TensorrtExecutionProvider",
)
ORT_GRAPH_OPTIMIZATION = ("disable", "basic", "extended", "all")


@dataclass
class TorchBackendConfig:
    """PyTorch eager inference on the trained checkpoint (the reference backend)."""

    _target_: str = "lstm_exp.backends.torch.backend.TorchBackend"
    name: str = "torch"
    #: cpu | cuda | auto (cuda when available)
    device: str = "cpu"
    #: intra-op threads on CPU (torch.set_num_threads); 0 keeps torch's default
    num_threads: int = 2

    def __post_init__(self) -> None:
        if self.name != "torch":
            raise ConfigError(f"backend.name={self.name!r} does not match backend=torch: remove the override")
        if self.device not in ("cpu", "cuda", "auto"):
            raise ConfigError(f"backend.device={self.device!r} is not known: write cpu, cuda or auto")
        if self.num_threads < 0:
            raise ConfigError(f"backend.num_threads={self.num_threads} must be >= 0 (0 = torch's default)")


@dataclass
class OnnxRuntimeBackendConfig:
    """onnxruntime on the dynamic-axes ONNX export (CPU build, or the GPU build via lstm_exp[gpu])."""

    _target_: str = "lstm_exp.backends.onnxruntime.backend.OnnxRuntimeBackend"
    name: str = "onnxruntime"
    #: execution providers in priority order, e.g. [CUDAExecutionProvider, CPUExecutionProvider]
    providers: List[str] = field(default_factory=lambda: ["CPUExecutionProvider"])
    #: bind inputs/outputs to device memory so that infer_ms excludes host copies (CUDA only)
    io_binding: bool = False
    intra_op_threads: int = 2
    inter_op_threads: int = 1
    #: disable | basic | extended | all
    graph_optimization: str = "all"
    #: device id for CUDA / TensorRT providers
    device_id: int = 0
    #: folder for TensorRT engine cache (null: no cache)
    trt_cache_dir: Optional[str] = None

    def __post_init__(self) -> None:
        if self.name != "onnxruntime":
            raise ConfigError(f"backend.name={self.name!r} does not match backend=onnxruntime: remove the override")
        if not self.providers:
            raise ConfigError("backend.providers is empty: write e.g. backend.providers=[CPUExecutionProvider]")
        for provider in self.providers:
            if provider not in KNOWN_ORT_PROVIDERS:
                raise ConfigError(
                    f"backend.providers: unknown provider {provider!r}: write one of {', '.join(KNOWN_ORT_PROVIDERS)}"
                )
        if self.graph_optimization not in ORT_GRAPH_OPTIMIZATION:
            raise ConfigError(
                f"backend.graph_optimization={self.graph_optimization!r}: write one of {', '.join(ORT_GRAPH_OPTIMIZATION)}"
            )
        if self.intra_op_threads < 0 or self.inter_op_threads < 0:
            raise ConfigError("backend.intra_op_threads / inter_op_threads must be >= 0 (0 = onnxruntime's default)")
        if self.io_binding and self.providers[0] == "CPUExecutionProvider":
            raise ConfigError(
                "backend.io_binding=true needs a GPU provider first: write backend.providers=[CUDAExecutionProvider,CPUExecutionProvider] or io_binding=false"
            )
