"""The one list of backends: ``backend=<name>`` -> its :class:`~lstm_exp.backends.plugin.BackendPlugin`.

The built-in backends are the folders under ``lstm_exp/backends/``.  A backend from elsewhere
(its own package: schema on :class:`~lstm_exp.backends.base.BackendConfig`, implementation,
plugin with ``config_yaml``) registers itself with an entry point in the group
:data:`ENTRY_POINT_GROUP`, in its ``pyproject.toml``::

    [project.entry-points."lstm_exp.backends"]
    mybackend = "mybackend.plugin:PLUGIN"

and ``backend=mybackend`` then composes, validates, runs its stages and appears in sweeps with no
edit of this package (``tests/backends/test_external_backend.py`` does exactly that).
"""
from __future__ import annotations

import sys
from importlib.metadata import entry_points

from lstm_exp.backends.acl.plugin import PLUGIN as ACL
from lstm_exp.backends.onnxruntime.plugin import PLUGIN as ONNXRUNTIME
from lstm_exp.backends.openvino.plugin import PLUGIN as OPENVINO
from lstm_exp.backends.plugin import BackendPlugin
from lstm_exp.backends.torch.plugin import PLUGIN as TORCH
from lstm_exp.errors import ConfigError

#: the entry-point group other packages register their backend plugins in
ENTRY_POINT_GROUP = "lstm_exp.backends"
BUILT_IN: tuple[BackendPlugin, ...] = (TORCH, ONNXRUNTIME, OPENVINO, ACL)
#: entry point name -> why its plugin was left out
BROKEN: dict[str, str] = {}


def _installed_plugins() -> list[BackendPlugin]:
    """The plugins other installed packages register.  One that does not load is left out with a
    one-line warning naming its entry point (another package's fault must not stop the built-in
    backends); ``backend=<its name>`` then names it in the error (:func:`plugin_for`)."""
    found = []
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        try:
            plugin = entry.load()
        except Exception as exc:  # noqa: BLE001 - any import failure of a third-party plugin
            BROKEN[entry.name] = (f"backend plugin {entry.name} = {entry.value} (entry point group "
                                  f"{ENTRY_POINT_GROUP}) does not load: {type(exc).__name__}: {exc}; fix or uninstall "
                                  "that package")
            print(f"lstm_exp: warning: {BROKEN[entry.name]}", file=sys.stderr)
            continue
        if not isinstance(plugin, BackendPlugin) or plugin.name != entry.name:
            BROKEN[entry.name] = (f"entry point {entry.name} = {entry.value} (group {ENTRY_POINT_GROUP}) is not a "
                                  f"BackendPlugin named {entry.name!r}: point it at the plugin object (PLUGIN)")
            print(f"lstm_exp: warning: {BROKEN[entry.name]}", file=sys.stderr)
            continue
        found.append(plugin)
    return found


def _all_plugins() -> dict[str, BackendPlugin]:
    plugins = {plugin.name: plugin for plugin in BUILT_IN}
    for plugin in _installed_plugins():
        if plugin.name in plugins:
            raise ConfigError(f"backend plugin {plugin.name!r} from entry point group {ENTRY_POINT_GROUP} has the "
                              "name of a built-in backend: rename it")
        plugins[plugin.name] = plugin
    return plugins


PLUGINS: dict[str, BackendPlugin] = _all_plugins()
#: the backend ``infer.parity`` compares every other one with (its ``reference_config``)
PARITY_REFERENCE = TORCH.name


def plugin_for(name: str) -> BackendPlugin:
    if name in BROKEN:
        raise ConfigError(BROKEN[name])
    try:
        return PLUGINS[name]
    except KeyError:
        raise ConfigError(f"backend={name!r} is not a backend: write one of {', '.join(PLUGINS)}") from None
