"""Ascend NPU inference on an OM file from ATC, through one of two runtimes.

:class:`AclBackend` is what the framework sees: it opens the runtime ``backend.runtime`` names
(:class:`~.pyacl_runtime.PyaclRuntime`, the recipe's ``pyacl_infer``, or
:class:`~.ais_bench_runtime.AisBenchRuntime`, ais_bench's ``InferSession``; both
:class:`~.om_runtime.OmRuntime`) on the convert stage's OM, checks each batch against the shape
the OM was built for, picks the batch to run and pads to it, and trims the output.  A static OM
runs a smaller batch padded to its batch with zero rows; a dynamic OM runs the smallest gear that
holds the batch.  Either way only the real rows come back.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from lstm_exp.backends.acl.acl_lifetime import AclCallError
from lstm_exp.backends.acl.ais_bench_runtime import AisBenchRuntime
from lstm_exp.backends.acl.atc import gears_of, precision_of, recorded_command, soc_version_of
from lstm_exp.backends.acl.config import AclBackendConfig
from lstm_exp.backends.acl.om_runtime import OmRuntime
from lstm_exp.backends.acl.pyacl_runtime import PyaclRuntime
from lstm_exp.backends.base import Backend, RunOutput
from lstm_exp.errors import ConfigError

__all__ = ["AclBackend", "AclCallError", "RUNTIMES", "om_build_record"]

#: ``backend.runtime`` -> the class that runs the OM
RUNTIMES: dict[str, type[OmRuntime]] = {runtime.name: runtime for runtime in (PyaclRuntime, AisBenchRuntime)}


def om_build_record(om_path: Path, cfg: AclBackendConfig) -> dict[str, Any]:
    """What the OM was built for: from the atc command recorded beside it, else from the config."""
    cmd = recorded_command(om_path)
    if cmd is None:
        return {"soc_version": cfg.atc.soc_version, "precision": cfg.resolved_atc().precision, "gears": None, "source": "backend.atc config"}
    return {"soc_version": soc_version_of(cmd) or cfg.atc.soc_version, "precision": precision_of(cmd),
            "gears": gears_of(cmd), "source": str(Path(om_path).parent / "atc_command.txt")}


def open_runtime(cfg: AclBackendConfig, om_path: Path, record: dict[str, Any]) -> OmRuntime:
    """The OM loaded on ``cfg.device_id`` by the runtime ``cfg.runtime`` names."""
    return RUNTIMES[cfg.runtime](cfg, om_path, record)


class AclBackend(Backend):
    """An OM on one Ascend device; ``load`` takes the convert stage's OM."""

    name = "acl"

    def __init__(self, cfg: AclBackendConfig | None = None) -> None:
        self.cfg = cfg or AclBackendConfig()
        #: the loaded OM's runtime (None before load and after close)
        self.runtime: OmRuntime | None = None
        self._om_record: dict[str, Any] = {}

    def load(self, artifact: Path) -> None:
        path = Path(artifact)
        if not path.is_file():
            raise ConfigError(f"OM file {path} does not exist: run stage=convert (atc) first or point at an existing .om")
        self.close()
        record = om_build_record(path, self.cfg)
        self.runtime = open_runtime(self.cfg, path, record)
        self._om_record = record

    def _run_batch(self, runtime: OmRuntime, batch: int) -> int:
        """The batch the OM runs for ``batch`` real rows: the smallest gear that holds them, or the
        static batch."""
        if runtime.gears:
            fitting = [g for g in runtime.gears if g >= batch]
            if not fitting:
                raise ConfigError(f"batch {batch} is larger than every gear {runtime.gears} of OM {runtime.om_path}: add a gear (atc.batch_gears) or lower batch")
            return fitting[0]
        if batch > runtime.om_batch:
            raise ConfigError(f"batch {batch} is larger than the static batch {runtime.om_batch} of OM {runtime.om_path}: convert with batch={batch} or atc.dynamic_batch=true")
        return runtime.om_batch

    def run(self, x: np.ndarray) -> RunOutput:
        runtime = self.runtime
        if runtime is None:
            raise RuntimeError("AclBackend.run before load (or after close)")
        x = np.asarray(x)
        dims = runtime.sample_dims
        if x.ndim != 3 or tuple(x.shape[1:]) != dims:
            raise ConfigError(
                f"batch of shape {list(x.shape)} does not fit OM {runtime.om_path}, built for [batch, {', '.join(map(str, dims))}]: "
                f"pad batches to {dims[0]} frames (infer.pad_to={dims[0]}) or convert with atc.frames={x.shape[1] if x.ndim == 3 else '?'}"
            )
        batch = x.shape[0]
        run_batch = self._run_batch(runtime, batch)
        feed = np.zeros((run_batch, *dims), dtype=np.float32)
        feed[:batch] = x
        out, infer_ms = runtime.execute(feed)
        if out.ndim != 3 or out.shape[1] != run_batch:
            raise ConfigError(f"OM {runtime.om_path} output dims {list(out.shape)} are not [T', {run_batch}, C]: export the time-major recipe model")
        return RunOutput(log_probs=np.array(out[:, :batch], dtype=np.float32), infer_ms=infer_ms)

    def close(self) -> None:
        """Release what the job took (the runtime's own order).  Safe to call twice, also after a
        failed load."""
        runtime, self.runtime = self.runtime, None
        if runtime is not None:
            runtime.close()

    def describe(self) -> dict[str, str]:
        record = self._om_record or {"soc_version": self.cfg.atc.soc_version, "precision": self.cfg.resolved_atc().precision}
        tags = {
            "backend": self.name,
            "device": f"npu:{self.cfg.device_id}",
            "acl.runtime": self.cfg.runtime,
            "om.soc_version": str(record["soc_version"]),
            "om.precision": str(record["precision"]),
        }
        if self.runtime is not None:
            tags.update(self.runtime.tags())
            tags["om_batch"] = ",".join(map(str, self.runtime.gears)) if self.runtime.gears else str(self.runtime.om_batch)
            tags["om_dynamic_batch"] = str(bool(self.runtime.gears))
        return tags
