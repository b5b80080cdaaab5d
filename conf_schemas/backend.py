"""Schemas of the ``backend`` group, re-exported from the backend plugins so that the registry
stays in one place (:mod:`lstm_exp.backends.registry`).

Each backend folder under ``lstm_exp/backends/`` holds its schema (``config.py``), its
implementation (``backend.py``) and its plugin declaration (``plugin.py``: the artefact it
needs, its extra stages, its preflight checks).  Each config names the class that implements
it in ``_target_`` and says its variant (``variant()``: device, provider, precision).
"""
from __future__ import annotations

from lstm_exp.backends.acl.config import AclBackendConfig
from lstm_exp.backends.onnxruntime.config import (
    KNOWN_ORT_PROVIDERS,
    ORT_GRAPH_OPTIMIZATION,
    ORT_PRECISIONS,
    ORT_VARIANTS,
    OnnxRuntimeBackendConfig,
)
from lstm_exp.backends.torch.config import TORCH_PRECISIONS, TORCH_VARIANTS, TorchBackendConfig

__all__ = [
    "AclBackendConfig",
    "KNOWN_ORT_PROVIDERS",
    "ORT_GRAPH_OPTIMIZATION",
    "ORT_PRECISIONS",
    "ORT_VARIANTS",
    "OnnxRuntimeBackendConfig",
    "TORCH_PRECISIONS",
    "TORCH_VARIANTS",
    "TorchBackendConfig",
]
