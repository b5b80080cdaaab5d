"""The torch backend's plugin declaration: the checkpoint, no further stage.

Preflight: ``backend.device=cuda`` (and so ``backend.cuda_graphs=true``, which needs it) on a
host where torch sees no CUDA device is one line before any stage.  Validation:
``backend.cuda_graphs=true`` replays graphs of a fixed shape, so batches are padded to
``infer.pad_to`` frames (``infer.batching: null`` resolves to ``fixed``; longest / sorted are
refused).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Optional

from lstm_exp.backends.plugin import BackendPlugin
from lstm_exp.backends.torch.config import TorchBackendConfig
from lstm_exp.errors import ConfigError, MissingDependencyError

if TYPE_CHECKING:
    from conf_schemas.experiment import ExperimentConfig


#: why ``backend.cuda_graphs=true`` runs fixed batches only
CUDA_GRAPHS_NEED_FIXED = "backend.cuda_graphs=true replays one graph per batch shape, padded to infer.pad_to frames"


class TorchPlugin(BackendPlugin):
    name = "torch"
    config_class = TorchBackendConfig
    backend_class = "lstm_exp.backends.torch.backend.TorchBackend"

    def stages(self, cfg: TorchBackendConfig) -> list[str]:
        return ["train"]

    def reference_config(self, on_gpu: bool) -> TorchBackendConfig:
        """fp32 eager on the checkpoint: the parity reference of every backend."""
        return TorchBackendConfig(device="cuda" if on_gpu else "cpu", threads=0)

    def fixed_batching(self, cfg: TorchBackendConfig) -> Optional[str]:
        return CUDA_GRAPHS_NEED_FIXED if cfg.cuda_graphs else None

    def validate(self, cfg: TorchBackendConfig, exp: "ExperimentConfig") -> None:
        super().validate(cfg, exp)
        batching = exp.infer.batching
        if cfg.cuda_graphs and batching not in (None, "fixed"):
            raise ConfigError(f"infer.batching={batching}: {CUDA_GRAPHS_NEED_FIXED}: write infer.batching=fixed, or "
                              "backend.cuda_graphs=false")

    def preflight(self, cfg: TorchBackendConfig) -> None:
        if cfg.device == "cuda":
            import torch

            if not torch.cuda.is_available():
                wanted = "backend.cuda_graphs=true with backend.device=cuda" if cfg.cuda_graphs else "backend.device=cuda"
                fix = "backend.device=cpu backend.cuda_graphs=false" if cfg.cuda_graphs else "backend.device=cpu"
                raise MissingDependencyError(
                    f"{wanted} but torch sees no CUDA device (torch "
                    f"{torch.__version__}, CUDA build: {torch.version.cuda or 'none'}): write {fix}")


PLUGIN = TorchPlugin()
