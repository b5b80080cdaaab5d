"""Schema of ``backend=torch``: PyTorch eager on the trained checkpoint (the reference backend).

Imports nothing heavy: composing and validating a config never imports torch.

Options a sweep can select (each one that changes what is measured is part of the variant name,
``torch-<device>-<precision>[-tf32][-split][-graph]``, e.g. ``torch-cuda-fp16-split-graph``):

* ``precision``: fp32 (cpu, cuda), bf16 (cpu: autocast, see ``backend.py``; cuda: the model
  and its input cast), fp16 (cuda only: the model and its input cast).
* ``allow_tf32``: TF32 matmuls and convolutions on Ampere+ GPUs (CUDA only); ``-tf32`` in the
  variant with fp32, the only precision it changes.
* ``lstm_form``: ``stock`` (one bidirectional ``nn.LSTM`` per layer) or ``split_direction``
  (:mod:`lstm_exp.model.split_lstm`: the same weights as two one-direction LSTMs over inputs
  padded to a multiple of 128, so cuDNN's persistent kernels qualify in fp16).
* ``cuda_graphs``: one CUDA graph captured per batch shape ``[B, pad_to, 243]`` and replayed
  (CUDA only; batches padded to ``infer.pad_to`` frames, ``infer.batching=fixed``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from lstm_exp.backends.base import BackendConfig, Variant
from lstm_exp.errors import ConfigError

TORCH_DEVICES = ("cpu", "cuda", "auto")
#: precision -> devices that run it (fp16: CUDA only; bf16 on CPU through autocast)
TORCH_PRECISIONS = {"fp32": ("cpu", "cuda", "auto"), "fp16": ("cuda",), "bf16": ("cpu", "cuda")}
#: backend.lstm_form values -> the variant-name suffix they add
LSTM_FORMS = {"stock": "", "split_direction": "-split"}
#: the variant-name suffixes of allow_tf32 (with fp32) and cuda_graphs
TF32_SUFFIX, GRAPH_SUFFIX = "-tf32", "-graph"


@dataclass
class TorchBackendConfig(BackendConfig):
    """PyTorch eager inference on the trained checkpoint (the reference backend)."""

    precisions: ClassVar[dict[str, tuple[str, ...]]] = TORCH_PRECISIONS

    name: str = "torch"
    #: cpu | cuda | auto (cuda when available)
    device: str = "cpu"
    # threads (BackendConfig's): torch.set_num_threads on CPU; null (auto): the cores // the sweep's
    # jobs running at once; 0 keeps torch's default
    #: fp32 | fp16 (cuda) | bf16 (cpu: autocast; cuda: the model and its input cast)
    precision: str = "fp32"
    #: allow TF32 matmuls/convolutions on Ampere+ GPUs (torch's default is off for matmul); CUDA only
    allow_tf32: bool = False
    #: stock | split_direction (each LSTM direction its own one-layer LSTM, inputs padded to x128)
    lstm_form: str = "stock"
    #: capture one CUDA graph per batch shape [B, infer.pad_to, 243] and replay it (CUDA only)
    cuda_graphs: bool = False

    def __post_init__(self) -> None:
        if self.name != "torch":
            raise ConfigError(f"backend.name={self.name!r} does not match backend=torch: remove the override")
        if self.device not in TORCH_DEVICES:
            raise ConfigError(f"backend.device={self.device!r} is not known: write cpu, cuda or auto")
        self.check_threads()
        self._check_precision()
        self._check_gpu_options()

    def _check_precision(self) -> None:
        if self.precision not in TORCH_PRECISIONS:
            raise ConfigError(f"backend.precision={self.precision!r} is not known for torch: write one of "
                              f"{', '.join(TORCH_PRECISIONS)}")
        devices = TORCH_PRECISIONS[self.precision]
        if self.device not in devices:
            raise ConfigError(
                f"backend.precision={self.precision} needs backend.device={' or '.join(devices)} (not {self.device}); "
                f"torch variants: {', '.join(TORCH_VARIANTS)}")

    def _check_gpu_options(self) -> None:
        if self.lstm_form not in LSTM_FORMS:
            raise ConfigError(f"backend.lstm_form={self.lstm_form!r} is not known: write one of {', '.join(LSTM_FORMS)}")
        if self.cuda_graphs and self.device != "cuda":
            raise ConfigError(f"backend.cuda_graphs=true captures CUDA graphs, and backend.device={self.device}: "
                              "write backend.device=cuda, or backend.cuda_graphs=false")
        if self.allow_tf32 and self.device == "cpu":
            raise ConfigError("backend.allow_tf32=true is a CUDA setting, and backend.device=cpu: "
                              "write backend.device=cuda, or backend.allow_tf32=false")

    def variant(self) -> Variant:
        """``torch-<device>-<precision>[-tf32][-split][-graph]``, e.g. torch-cpu-bf16, torch-cuda-fp16-split-graph."""
        tf32 = TF32_SUFFIX if self.allow_tf32 and self.precision == "fp32" else ""
        graph = GRAPH_SUFFIX if self.cuda_graphs else ""
        extra = tuple(suffix.lstrip("-") for suffix in (tf32, LSTM_FORMS[self.lstm_form], graph) if suffix)
        return Variant(self.name, self.device, self.precision, extra)


#: every device-precision variant the torch backend can run (before the tf32 / split / graph suffixes)
TORCH_VARIANTS = TorchBackendConfig.variants()
