"""Typed schemas of every config group, registered with Hydra's ConfigStore.

Each YAML option in ``configs/<group>/`` starts its defaults list with
``/schema/<group>/<schema>@_here_``, so Hydra merges it onto the dataclass: an unknown key or a
value of the wrong type is an error at composition, and ``OmegaConf.to_object`` runs every
``__post_init__`` check before the first stage starts.

    >>> from conf_schemas import register_configs
    >>> register_configs()   # idempotent; lstm_exp.app calls it before @hydra.main
"""
from __future__ import annotations

from hydra.core.config_store import ConfigStore

_registered = False


def register_configs() -> None:
    """Store every schema under ``schema/<group>/<name>`` and the top level as ``config_schema``."""
    global _registered
    if _registered:
        return
    from conf_schemas.backend import AclBackendConfig, OnnxRuntimeBackendConfig, TorchBackendConfig
    from conf_schemas.data import DataConfig
    from conf_schemas.decode import DecodeConfig
    from conf_schemas.experiment import ExperimentConfig, InferConfig, SplitConfig
    from conf_schemas.model import ExportConfig, ModelConfig, TrainConfig
    from conf_schemas.tracking import TrackingConfig
    from lstm_exp.backends.registry import PLUGINS

    cs = ConfigStore.instance()
    cs.store(name="config_schema", node=ExperimentConfig)
    groups = {
        "data": {"data": DataConfig},
        "split": {"split": SplitConfig},
        "model": {"model": ModelConfig},
        "train": {"train": TrainConfig},
        "export": {"export": ExportConfig},
        "backend": {
            "torch": TorchBackendConfig,
            "onnxruntime": OnnxRuntimeBackendConfig,
            "acl": AclBackendConfig,
            **{name: plugin.config_class for name, plugin in PLUGINS.items()},  # the registry's (openvino's)
        },
        "decode": {"decode": DecodeConfig},
        "tracking": {"tracking": TrackingConfig},
        "infer": {"infer": InferConfig},
    }
    for group, schemas in groups.items():
        for name, node in schemas.items():
            cs.store(group=f"schema/{group}", name=name, node=node)
    _registered = True
