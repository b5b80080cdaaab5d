"""The OpenVINO backend's plugin declaration: the dynamic ONNX export, no further stage; the
preflight refuses a missing ``openvino`` and ``bf16`` on a CPU without bf16 instructions (where
OpenVINO would silently compile f32)."""
from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lstm_exp.backends.openvino.config import OV_DEVICES, OpenVinoBackendConfig
from lstm_exp.backends.plugin import BackendPlugin, ExportShape, dynamic_export_shape
from lstm_exp.errors import ConfigError, MissingDependencyError

if TYPE_CHECKING:
    from conf_schemas.experiment import ExperimentConfig

#: /proc/cpuinfo flags of the instructions OpenVINO's CPU plugin runs bf16 on
BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")


def openvino_core(cfg: OpenVinoBackendConfig):
    """An ``openvino.Core`` that sees ``cfg.device``; a missing package or device is one line."""
    if importlib.util.find_spec("openvino") is None:
        raise MissingDependencyError("backend=openvino needs OpenVINO: pip install -e '.[cpu]' (or pip install openvino)")
    import openvino

    core = openvino.Core()
    device = OV_DEVICES[cfg.device]
    if device not in core.available_devices:
        raise MissingDependencyError(f"backend.device={cfg.device}: OpenVINO {openvino.__version__} sees no {device} "
                                     f"device (available: {', '.join(core.available_devices) or 'none'})")
    return core


def cpu_flags() -> set[str]:
    """The CPU's feature flags from /proc/cpuinfo (empty where there is none)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def check_precision(core: Any, cfg: OpenVinoBackendConfig) -> None:
    """``bf16`` needs OpenVINO's BF16 optimization capability on this device: else one line
    naming the missing CPU flag (OpenVINO would compile f32 under a bf16 hint without a word)."""
    if cfg.precision != "bf16":
        return
    device = OV_DEVICES[cfg.device]
    capabilities = list(core.get_property(device, "OPTIMIZATION_CAPABILITIES"))
    if "BF16" not in capabilities:
        name = core.get_property(device, "FULL_DEVICE_NAME")
        raise ConfigError(
            f"backend.precision=bf16: this CPU ({name}) has no {' / '.join(BF16_CPU_FLAGS)} flag, so OpenVINO "
            f"offers no bf16 (its OPTIMIZATION_CAPABILITIES: {', '.join(capabilities)}) and would run f32 "
            "unannounced: write backend.precision=fp32")


class OpenVinoPlugin(BackendPlugin):
    name = "openvino"
    config_class = OpenVinoBackendConfig
    takes_onnx_file = True
    backend_class = "lstm_exp.backends.openvino.backend.OpenVinoBackend"

    def stages(self, cfg: OpenVinoBackendConfig) -> list[str]:
        return ["train", "export"]

    def export_shape(self, cfg: OpenVinoBackendConfig, exp: "ExperimentConfig") -> ExportShape:
        return dynamic_export_shape(exp, self.name, "compiles the dynamic export per batch shape")

    def preflight(self, cfg: OpenVinoBackendConfig) -> None:
        check_precision(openvino_core(cfg), cfg)


PLUGIN = OpenVinoPlugin()
