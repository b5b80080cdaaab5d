"""Schema of ``backend=torch``: PyTorch eager on the trained checkpoint (the reference backend).

Imports nothing heavy: composing and validating a config never imports torch.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Optional

from lstm_exp.backends.base import BackendConfig
from lstm_exp.errors import ConfigError

TORCH_DEVICES = ("cpu", "cuda", "auto")
#: precision -> devices that run it (fp16/bf16 autocast-free casts of the whole model: CUDA only)
TORCH_PRECISIONS = {"fp32": ("cpu", "cuda", "auto"), "fp16": ("cuda",), "bf16": ("cuda",)}


@dataclass
class TorchBackendConfig(BackendConfig):
    """PyTorch eager inference on the trained checkpoint (the reference backend)."""

    precisions: ClassVar[dict[str, tuple[str, ...]]] = TORCH_PRECISIONS

    _target_: str = "lstm_exp.backends.torch.backend.TorchBackend"
    name: str = "torch"
    #: cpu | cuda | auto (cuda when available)
    device: str = "cpu"
    #: intra-op threads on CPU (torch.set_num_threads); 0 keeps torch's default
    num_threads: int = 2
    #: fp32 | fp16 | bf16 (fp16 and bf16: the model and its input cast, CUDA only)
    precision: str = "fp32"
    #: allow TF32 matmuls/convolutions on Ampere+ GPUs (torch's default is off for matmul)
    allow_tf32: bool = False

    def __post_init__(self) -> None:
        if self.name != "torch":
            raise ConfigError(f"backend.name={self.name!r} does not match backend=torch: remove the override")
        if self.device not in TORCH_DEVICES:
            raise ConfigError(f"backend.device={self.device!r} is not known: write cpu, cuda or auto")
        if self.num_threads < 0:
            raise ConfigError(f"backend.num_threads={self.num_threads} must be >= 0 (0 = torch's default)")
        if self.precision not in TORCH_PRECISIONS:
            raise ConfigError(f"backend.precision={self.precision!r} is not known for torch: write one of "
                              f"{', '.join(TORCH_PRECISIONS)}")
        if self.device not in TORCH_PRECISIONS[self.precision]:
            raise ConfigError(
                f"backend.precision={self.precision} needs backend.device=cuda (torch on {self.device} runs fp32 only); "
                f"torch variants: {', '.join(TORCH_VARIANTS)}")

    @property
    def threads(self) -> Optional[int]:
        return self.num_threads or None


#: every variant the torch backend can run (``torch-<device>-<precision>``)
TORCH_VARIANTS = TorchBackendConfig.variants()
