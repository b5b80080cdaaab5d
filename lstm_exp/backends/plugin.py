"""What the pipeline asks a backend instead of branching on its name.

A :class:`BackendPlugin` (one per folder under ``lstm_exp/backends/``, listed in
:mod:`lstm_exp.backends.registry`) declares:

* ``config_class``: its schema (``config.py``), whose ``variant()`` names device/provider/precision;
* :meth:`stages`: the cached stages after ``prepare`` it needs, in order; the last one writes
  the artefact ``load`` takes (torch: train; onnxruntime: export [+ precision]; acl: export +
  convert);
* ``user_stages``: further stages a user may ask for by name (acl: preprocess);
* :meth:`export_shape`: the ONNX the export stage writes for it (dynamic axes, or acl's static
  ``[batch, frames, 243]``), checked against torch there;
* :meth:`static_frames`: the frame count a static artefact needs (acl), else ``None``;
* :meth:`preflight`: cheap checks that fail before any stage (a missing runtime or provider);
* :meth:`create`: the :class:`~lstm_exp.backends.base.Backend` (imports the runtime lazily).

Plugins import nothing heavy: the registry is read at validation.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, ClassVar, Optional


@dataclass(frozen=True)
class ExportShape:
    """The ONNX the export stage writes: ``dynamic`` batch and frame axes, or a static shape."""

    dynamic: bool
    batch: int
    frames: int
    #: a dynamic batch axis only (frames fixed), e.g. for an OM with batch gears
    dynamic_batch_only: bool = False


class BackendPlugin:
    """Base class; one subclass per backend folder."""

    name: ClassVar[str] = "base"
    config_class: ClassVar[type] = object
    #: "module.path.ClassName" of the Backend implementation
    backend_class: ClassVar[str] = ""
    user_stages: ClassVar[tuple[str, ...]] = ()

    def stages(self, cfg: Any) -> list[str]:
        """Cached stages after ``prepare``, in order; the last one's output is the artefact."""
        return ["train"]

    def export_shape(self, cfg: Any, exp: Any) -> ExportShape:
        """What the export stage writes for this backend (default: the ``export`` group as given)."""
        export = exp.export
        return ExportShape(dynamic=export.dynamic, batch=export.batch, frames=export.frames)

    def static_frames(self, cfg: Any) -> Optional[int]:
        return None

    def preflight(self, cfg: Any) -> None:
        """Fail fast (a one-line :class:`~lstm_exp.errors.LstmExpError`) on what would fail after
        minutes of training: a missing runtime, provider or device."""

    def create(self, cfg: Any):
        module, _, cls = self.backend_class.rpartition(".")
        return getattr(importlib.import_module(module), cls)(cfg)
