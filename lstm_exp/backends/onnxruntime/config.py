"""Schema of ``backend=onnxruntime``: the ONNX export on one of onnxruntime's execution providers.

Imports nothing heavy: composing and validating a config never imports onnxruntime.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, List, Optional

from lstm_exp.backends.base import BackendConfig
from lstm_exp.errors import ConfigError

#: provider -> the short device name used in variants and tags
ORT_PROVIDER_DEVICES = {
    "CPUExecutionProvider": "cpu",
    "CUDAExecutionProvider": "cuda",
    "TensorrtExecutionProvider": "tensorrt",
    "CANNExecutionProvider": "cann",
}
KNOWN_ORT_PROVIDERS = tuple(ORT_PROVIDER_DEVICES)
#: the pip package whose build carries each provider (for "not available" messages)
ORT_PROVIDER_PACKAGES = {
    "CPUExecutionProvider": "onnxruntime",
    "CUDAExecutionProvider": "onnxruntime-gpu (pip install -e '.[gpu]')",
    "TensorrtExecutionProvider": "onnxruntime-gpu with TensorRT libraries (pip install -e '.[gpu]')",
    "CANNExecutionProvider": "onnxruntime-cann, on a host with the Ascend CANN toolkit (source <CANN>/set_env.sh)",
}
ORT_GRAPH_OPTIMIZATION = ("disable", "basic", "extended", "all")
#: precision -> devices (first provider) that run it:
#: fp16 = the export converted to float16 (inputs/outputs stay float32); on CANN the fp32 model
#: with the provider's precision_mode=force_fp16; int8 = onnxruntime's dynamic quantization (CPU)
ORT_PRECISIONS = {
    "fp32": ("cpu", "cuda", "tensorrt", "cann"),
    "fp16": ("cuda", "tensorrt", "cann"),
    "int8": ("cpu",),
}


@dataclass
class OnnxRuntimeBackendConfig(BackendConfig):
    """onnxruntime on the ONNX export (CPU build; onnxruntime-gpu via lstm_exp[gpu]; onnxruntime-cann)."""

    precisions: ClassVar[dict[str, tuple[str, ...]]] = ORT_PRECISIONS

    name: str = "onnxruntime"
    #: execution providers in priority order, e.g. [CUDAExecutionProvider, CPUExecutionProvider]
    providers: List[str] = field(default_factory=lambda: ["CPUExecutionProvider"])
    #: fp32 | fp16 (CUDA, TensorRT, CANN) | int8 (CPU, dynamic quantization)
    precision: str = "fp32"
    #: bind inputs/outputs to pre-allocated device buffers so that infer_ms is the model execute only (CUDA)
    io_binding: bool = False
    # threads (BackendConfig's): the intra-op pool; null (auto): the cores // the sweep's jobs running
    # at once; 0: onnxruntime's own default (lstm_exp/backends/onnxruntime/cpu.py)
    inter_op_threads: int = 1
    #: let idle pool threads spin; null (auto): only when the job runs alone on the machine
    allow_spinning: Optional[bool] = None
    #: disable | basic | extended | all
    graph_optimization: str = "all"
    #: device id for CUDA / TensorRT / CANN providers
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
        self.check_threads()
        if self.inter_op_threads < 0:
            raise ConfigError(f"backend.inter_op_threads={self.inter_op_threads} must be >= 0 (0 = onnxruntime's default)")
        if self.io_binding and self.device != "cuda":
            raise ConfigError(
                "backend.io_binding=true needs CUDAExecutionProvider first: write "
                "backend.providers=[CUDAExecutionProvider,CPUExecutionProvider] or io_binding=false"
            )
        if self.precision not in ORT_PRECISIONS:
            raise ConfigError(f"backend.precision={self.precision!r} is not known for onnxruntime: write one of "
                              f"{', '.join(ORT_PRECISIONS)}")
        if self.device not in ORT_PRECISIONS[self.precision]:
            raise ConfigError(
                f"backend.precision={self.precision} is not available on {self.providers[0]}; "
                f"onnxruntime variants: {', '.join(ORT_VARIANTS)}")

    @property
    def device(self) -> str:
        """The device of the first (preferred) provider: cpu | cuda | tensorrt | cann."""
        return ORT_PROVIDER_DEVICES[self.providers[0]]



#: every variant onnxruntime can run: ``onnxruntime-<first provider's device>-<precision>``
ORT_VARIANTS = OnnxRuntimeBackendConfig.variants()
