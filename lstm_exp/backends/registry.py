"""The one list of backends: ``backend=<name>`` -> its :class:`~lstm_exp.backends.plugin.BackendPlugin`."""
from __future__ import annotations

from lstm_exp.backends.acl.plugin import PLUGIN as ACL
from lstm_exp.backends.onnxruntime.plugin import PLUGIN as ONNXRUNTIME
from lstm_exp.backends.openvino.plugin import PLUGIN as OPENVINO
from lstm_exp.backends.plugin import BackendPlugin
from lstm_exp.backends.torch.plugin import PLUGIN as TORCH
from lstm_exp.errors import ConfigError

PLUGINS: dict[str, BackendPlugin] = {plugin.name: plugin for plugin in (TORCH, ONNXRUNTIME, OPENVINO, ACL)}


def plugin_for(name: str) -> BackendPlugin:
    try:
        return PLUGINS[name]
    except KeyError:
        raise ConfigError(f"backend={name!r} is not a backend: write one of {', '.join(PLUGINS)}") from None
