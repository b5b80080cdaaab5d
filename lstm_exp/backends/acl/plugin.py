"""The acl backend's plugin declaration: the static ONNX export (checked against torch), then
ATC's ``convert`` to an OM; ``preprocess`` (the recipe's .bin batches) on request."""
from __future__ import annotations

import importlib.util
from typing import TYPE_CHECKING, Optional

from lstm_exp.backends.acl.config import AclBackendConfig
from lstm_exp.backends.acl.stages import CONVERT_STAGE, PREPROCESS_STAGE
from lstm_exp.backends.plugin import BackendPlugin, ExportShape, GuideFigure
from lstm_exp.errors import MissingDependencyError

if TYPE_CHECKING:
    from conf_schemas.experiment import ExperimentConfig


class AclPlugin(BackendPlugin):
    name = "acl"
    config_class = AclBackendConfig
    takes_onnx_file = True
    backend_class = "lstm_exp.backends.acl.backend.AclBackend"
    own_stages = (CONVERT_STAGE, PREPROCESS_STAGE)
    user_stages = (PREPROCESS_STAGE.name,)
    #: the guide's Ascend 310 figures (shared/reference/RECIPE.md): one chip, model execute only
    plot_hints = tuple(GuideFigure("Ascend 310, model execute", batch, ms, utt_s, ("acl-",))
                       for batch, ms, utt_s in ((1, 179.183, 5.6), (4, 187.361, 21.3), (8, 202.751, 39.5),
                                                (16, 195.763, 81.7), (32, 260.119, 123.0)))

    def stages(self, cfg: AclBackendConfig) -> list[str]:
        return ["train", "export", CONVERT_STAGE.name]

    def export_shape(self, cfg: AclBackendConfig, exp: "ExperimentConfig") -> ExportShape:
        """A static ``[batch, atc.frames, 243]`` ONNX; with batch gears a dynamic batch axis only
        (a traced fixed-batch graph bakes the batch into its Reshape constants)."""
        from lstm_exp.backends.acl.atc import resolve_batch_spec

        spec = resolve_batch_spec(cfg.atc, exp.batch)
        gears = isinstance(spec, list)
        return ExportShape(dynamic=False, batch=max(spec) if gears else int(spec), frames=cfg.atc.frames,
                           dynamic_batch_only=gears)

    def static_frames(self, cfg: AclBackendConfig) -> Optional[int]:
        return cfg.atc.frames

    def preflight(self, cfg: AclBackendConfig) -> None:
        self.sweep_preflight()

    def sweep_preflight(self) -> None:
        """pyacl, whatever the job's config: no acl job of a sweep runs without it."""
        if importlib.util.find_spec("acl") is None:
            raise MissingDependencyError(
                "backend=acl needs pyacl (the `acl` module of the Ascend CANN toolkit) and atc: install CANN, "
                "then `source /usr/local/Ascend/ascend-toolkit/set_env.sh`; on a machine without an Ascend NPU use "
                "backend=onnxruntime or backend=torch"
            )


PLUGIN = AclPlugin()
