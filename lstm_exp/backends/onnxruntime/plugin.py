"""The onnxruntime backend's plugin declaration: the ONNX export, plus the ``precision`` stage
(fp16 conversion or int8 dynamic quantization, cached by precision) when not fp32."""
from __future__ import annotations

import importlib.util
from typing import TYPE_CHECKING

from lstm_exp.backends.onnxruntime.config import ORT_PROVIDER_PACKAGES, OnnxRuntimeBackendConfig
from lstm_exp.backends.onnxruntime.stages import PRECISION_STAGE, converted_precision
from lstm_exp.backends.plugin import BackendPlugin, ExportShape, GuideFigure, dynamic_export_shape
from lstm_exp.errors import MissingDependencyError

if TYPE_CHECKING:
    from conf_schemas.experiment import ExperimentConfig


def check_providers(cfg: OnnxRuntimeBackendConfig) -> list[str]:
    """The available providers; a missing one asked for is a one-line error (never a CPU fall-back)."""
    if importlib.util.find_spec("onnxruntime") is None:
        raise MissingDependencyError(
            "backend=onnxruntime needs onnxruntime: pip install -e '.[cpu]' (or '.[gpu]' for onnxruntime-gpu)")
    import onnxruntime

    available = onnxruntime.get_available_providers()
    missing = [p for p in cfg.providers if p not in available]
    if missing:
        raise MissingDependencyError(
            f"backend.providers: {', '.join(missing)} not available in this onnxruntime {onnxruntime.__version__} build "
            f"(available: {', '.join(available)}); install {ORT_PROVIDER_PACKAGES[missing[0]]}")
    return available


class OnnxRuntimePlugin(BackendPlugin):
    name = "onnxruntime"
    config_class = OnnxRuntimeBackendConfig
    takes_onnx_file = True
    backend_class = "lstm_exp.backends.onnxruntime.backend.OnnxRuntimeBackend"
    own_stages = (PRECISION_STAGE,)
    #: the guide's T4 figure (shared/reference/RECIPE.md): session.run on numpy inputs, copies included
    plot_hints = (GuideFigure("T4 onnxruntime-gpu, copies incl.", 16, 92.33, 173.3,
                              ("onnxruntime-cuda", "onnxruntime-tensorrt")),)

    def stages(self, cfg: OnnxRuntimeBackendConfig) -> list[str]:
        return ["train", "export"] + ([PRECISION_STAGE.name] if converted_precision(cfg) else [])

    def export_shape(self, cfg: OnnxRuntimeBackendConfig, exp: "ExperimentConfig") -> ExportShape:
        return dynamic_export_shape(exp, self.name, "runs the dynamic export")

    def preflight(self, cfg: OnnxRuntimeBackendConfig) -> None:
        check_providers(cfg)


PLUGIN = OnnxRuntimePlugin()
