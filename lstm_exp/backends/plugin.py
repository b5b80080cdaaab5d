"""What the pipeline asks a backend instead of branching on its name.

A :class:`BackendPlugin` (one per folder under ``lstm_exp/backends/``, listed in
:mod:`lstm_exp.backends.registry`) declares:

* ``config_class``: its schema (``config.py``), whose ``variant()`` names device/provider/precision;
* :meth:`stages`: the names of the cached stages after ``prepare`` it needs, in order; the last
  one writes the artefact ``load`` takes (torch: train; onnxruntime: export [+ precision]; acl:
  export + convert).  ``train`` and ``export`` are the pipeline's; every other name is one of
  ``own_stages``;
* ``own_stages``: its own cached stages, as :class:`Stage` objects (name, version, inputs, the
  function that finds or builds the output through :meth:`lstm_exp.pipeline.Pipeline.run_stage`),
  living in its folder (``stages.py``);
* ``user_stages``: further stages a user may ask for by name (acl: preprocess);
* ``plot_hints``: published figures its variants are drawn against (:class:`GuideFigure`);
* ``config_yaml``: the ``backend=<name>`` option file of a backend outside this package (the
  built-in ones live in ``configs/backend/``), stored in Hydra's ConfigStore as that option;
* :meth:`export_shape`: the ONNX the export stage writes for it (dynamic axes, or acl's static
  ``[batch, frames, 243]``), checked against torch there;
* :meth:`validate`: checks across groups at validation (the artefact sources it takes:
  ``export.onnx_file`` only where ``takes_onnx_file``), then :meth:`export_shape`;
* :meth:`static_frames`: the frame count a static artefact needs (acl), else ``None``;
  :meth:`fixed_batching`: why it runs fixed batches only (torch with CUDA graphs), else ``None``;
* :meth:`preflight`: cheap checks that fail before any stage (a missing runtime or provider);
* :meth:`sweep_preflight`: the checks that need no job's config, run once when a sweep starts
  (a runtime no job of the sweep could import);
* :meth:`create`: the :class:`~lstm_exp.backends.base.Backend` (imports the runtime lazily);
* :meth:`parity_reference`: what ``infer.parity`` compares it with (the registry's reference
  backend, fp32 on the checkpoint, on the variant's kind of device: :meth:`reference_config`).

Plugins import nothing heavy: the registry is read at validation.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Optional

from lstm_exp.errors import ConfigError

if TYPE_CHECKING:  # conf_schemas.experiment imports the registry lazily; nothing here imports it at run time
    from conf_schemas.experiment import ExperimentConfig
    from lstm_exp.backends.base import Backend, BackendConfig


@dataclass(frozen=True)
class ExportShape:
    """The ONNX the export stage writes: ``dynamic`` batch and frame axes, or a static shape."""

    dynamic: bool
    batch: int
    frames: int
    #: a dynamic batch axis only (frames fixed), e.g. for an OM with batch gears
    dynamic_batch_only: bool = False


@dataclass(frozen=True)
class Stage:
    """A cached stage a backend contributes.  ``name`` is its cache folder and ``stage=<name>``;
    ``version`` is part of its key (bump it when what the stage writes changes); ``inputs`` are
    the stages whose keys its key holds; ``output(pipeline, stage)`` finds or builds the entry
    through ``pipeline.run_stage(stage, config, build)`` and returns the file the next step takes."""

    name: str
    version: str
    inputs: tuple[str, ...]
    output: Callable[[Any, "Stage"], Path]


@dataclass(frozen=True)
class GuideFigure:
    """A published measurement a sweep's plots draw as a grey mark beside the variants it compares
    with (this backend's variants whose name starts with one of ``variant_prefixes``)."""

    label: str
    batch: int
    ms_per_batch: float
    utt_s: float
    variant_prefixes: tuple[str, ...]


def dynamic_export_shape(exp: "ExperimentConfig", backend: str, how: str) -> ExportShape:
    """The dynamic-axes export a backend that runs ONNX takes (``how``: what it does with it);
    ``export.dynamic=false`` (the static ONNX that acl converts) refused naming ``backend``."""
    export = exp.export
    if not export.dynamic:
        raise ConfigError(f"export.dynamic=false writes the static ONNX that backend=acl converts; {backend} {how}: "
                          "remove export.dynamic=false")
    return ExportShape(dynamic=True, batch=export.batch, frames=export.frames)


class BackendPlugin:
    """Base class; one subclass per backend folder."""

    name: ClassVar[str] = "base"
    config_class: ClassVar[type] = object
    #: "module.path.ClassName" of the Backend implementation
    backend_class: ClassVar[str] = ""
    user_stages: ClassVar[tuple[str, ...]] = ()
    own_stages: ClassVar[tuple[Stage, ...]] = ()
    plot_hints: ClassVar[tuple[GuideFigure, ...]] = ()
    config_yaml: ClassVar[Optional[Path]] = None
    #: runs an ONNX, so that ``export.onnx_file`` (an ONNX made elsewhere) can replace the export
    takes_onnx_file: ClassVar[bool] = False

    def stages(self, cfg: "BackendConfig") -> list[str]:
        """Cached stages after ``prepare``, in order; the last one's output is the artefact."""
        return ["train"]

    def validate(self, cfg: "BackendConfig", exp: "ExperimentConfig") -> None:
        """Checks across config groups (``ExperimentConfig.__post_init__``): where the model comes
        from, then :meth:`export_shape`."""
        onnx_file, model = exp.export.onnx_file, exp.model
        if onnx_file and not self.takes_onnx_file:
            raise ConfigError(f"export.onnx_file={onnx_file}: backend={self.name} runs the checkpoint, not an ONNX: "
                              "write backend=onnxruntime or backend=acl, or remove export.onnx_file")
        if onnx_file and exp.infer.parity:
            raise ConfigError(f"infer.parity=true runs torch on the model's checkpoint, and export.onnx_file={onnx_file} "
                              "comes without one: write infer.parity=false")
        if onnx_file and model.checkpoint:
            raise ConfigError(f"export.onnx_file={onnx_file} replaces the model, so model.checkpoint={model.checkpoint} "
                              "would not be used: remove one of them")
        if model.units_file and not (model.checkpoint or onnx_file):
            raise ConfigError(f"model.units_file={model.units_file}: only used with model.checkpoint or "
                              "export.onnx_file (a trained model takes its units from the prepared data); set it to null")
        self.export_shape(cfg, exp)

    def stage(self, name: str) -> Stage:
        """Its own stage ``name`` (a :class:`ConfigError` when it has none of that name)."""
        for stage in self.own_stages:
            if stage.name == name:
                return stage
        raise ConfigError(f"stage={name} is not a stage of backend={self.name}")

    def export_shape(self, cfg: "BackendConfig", exp: "ExperimentConfig") -> ExportShape:
        """What the export stage writes for this backend (default: the ``export`` group as given)."""
        export = exp.export
        return ExportShape(dynamic=export.dynamic, batch=export.batch, frames=export.frames)

    def static_frames(self, cfg: "BackendConfig") -> Optional[int]:
        return None

    def fixed_batching(self, cfg: "BackendConfig") -> Optional[str]:
        """Why this backend, as configured, runs fixed batches only (every batch padded to
        ``infer.pad_to``; torch: CUDA graphs), or None.  ``infer.batching`` left null then resolves
        to ``fixed`` (:func:`conf_schemas.experiment.derived_batching`); a static artefact
        (:meth:`static_frames`) needs no reason here."""
        return None

    def preflight(self, cfg: "BackendConfig") -> None:
        """Fail fast (a one-line :class:`~lstm_exp.errors.LstmExpError`) on what would fail after
        minutes of training: a missing runtime, provider or device."""

    def sweep_preflight(self) -> None:
        """Checks independent of any job's config, once at a sweep's start (``lstm_exp.sweep_checks``):
        a one-line :class:`~lstm_exp.errors.LstmExpError` stops the sweep before its parent run."""

    def create(self, cfg: "BackendConfig") -> "Backend":
        module, _, cls = self.backend_class.rpartition(".")
        return getattr(importlib.import_module(module), cls)(cfg)

    def reference_config(self, on_gpu: bool) -> "BackendConfig":
        """This backend's config as the parity reference of others (only the registry's reference)."""
        raise ConfigError(f"backend={self.name} is not a parity reference")

    def parity_reference(self, cfg: "BackendConfig") -> "Backend":
        """The unloaded backend ``infer.parity`` runs on the same batches: the registry's
        reference backend on the checkpoint, on a GPU when this variant runs on one."""
        from lstm_exp.backends.registry import PARITY_REFERENCE, plugin_for

        reference = plugin_for(PARITY_REFERENCE)
        return reference.create(reference.reference_config(cfg.variant().on_gpu))
