"""The torch backend's plugin declaration: the checkpoint, no further stage."""
from __future__ import annotations

from typing import Any

from lstm_exp.backends.plugin import BackendPlugin
from lstm_exp.backends.torch.config import TorchBackendConfig
from lstm_exp.errors import MissingDependencyError


class TorchPlugin(BackendPlugin):
    name = "torch"
    config_class = TorchBackendConfig
    backend_class = "lstm_exp.backends.torch.backend.TorchBackend"

    def stages(self, cfg: Any) -> list[str]:
        return ["train"]

    def reference_config(self, on_gpu: bool) -> TorchBackendConfig:
        """fp32 eager on the checkpoint: the parity reference of every backend."""
        return TorchBackendConfig(device="cuda" if on_gpu else "cpu", num_threads=0)

    def preflight(self, cfg: Any) -> None:
        if cfg.device == "cuda":
            import torch

            if not torch.cuda.is_available():
                raise MissingDependencyError(
                    "backend.device=cuda but torch sees no CUDA device (torch "
                    f"{torch.__version__}, CUDA build: {torch.version.cuda or 'none'}): write backend.device=cpu")


PLUGIN = TorchPlugin()
