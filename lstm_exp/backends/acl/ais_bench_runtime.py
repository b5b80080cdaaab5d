"""The OM through ais_bench (``backend=acl backend.runtime=ais_bench``), the second Ascend path.

ais_bench is the Python API of Ascend's ait / msit benchmark tool (packages ``ais_bench`` and
``aclruntime``, built from https://gitee.com/ascend/msit, formerly ait; not on PyPI).
``InferSession(device_id, model_path)`` initialises ACL, opens the device and loads the OM;
``infer(feeds, mode="static" | "dymbatch")`` runs one batch (a dynamic-batch OM takes only its
gears, so :class:`~lstm_exp.backends.acl.backend.AclBackend` pads the batch to one first);
``summary().exec_time_list`` holds one ``(start_ms, end_ms)`` pair per run, the model execute
only; ``free_resource()`` releases the model.  ais_bench owns the process's ACL lifetime, so it
never shares a process with the pyacl runtime (:func:`.acl_lifetime.claim`).

:class:`AisBenchRuntime` is the :class:`~.om_runtime.OmRuntime` for ``backend.runtime=ais_bench``.
"""
from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import numpy as np

from lstm_exp.backends.acl import acl_lifetime
from lstm_exp.backends.acl.atc import FEATURE_DIM, INPUT_NAME
from lstm_exp.backends.acl.config import AclBackendConfig
from lstm_exp.backends.acl.om_runtime import OmRuntime
from lstm_exp.errors import ConfigError, LstmExpError, MissingDependencyError


class AisBenchError(LstmExpError):
    """ais_bench refused a call (its RuntimeError, with the OM named)."""


def import_infer_session() -> Any:
    """``ais_bench.infer.interface.InferSession``, or a one-line error saying where it comes from."""
    try:
        return importlib.import_module("ais_bench.infer.interface").InferSession
    except ImportError as exc:
        raise MissingDependencyError(
            "backend.runtime=ais_bench needs the ais_bench and aclruntime packages of Ascend's msit (formerly ait) "
            "benchmark tool, which are not on PyPI: build and pip install their wheels from https://gitee.com/ascend/msit "
            "(msit/components/benchmark) on the Ascend host with CANN sourced; "
            f"import failed: {exc}; or use backend.runtime=pyacl"
        ) from exc


def _finalize_ais_bench(session_class: Any) -> None:
    finalize = getattr(session_class, "finalize", None)
    if finalize is not None:
        finalize()


def _exec_ms(entry: Any) -> float:
    """One ``exec_time_list`` entry in ms: a ``(start_ms, end_ms)`` pair, or a duration."""
    if isinstance(entry, (tuple, list)) and len(entry) == 2:
        return float(entry[1]) - float(entry[0])
    return float(entry)


class AisBenchRuntime(OmRuntime):
    """One OM loaded in an ais_bench ``InferSession`` on ``device_id``.

    ``record["gears"]``: the OM's ``--dynamic_batch_size`` gears from the recorded atc command
    (``None`` when unknown; ``[]`` for a static OM): ais_bench does not report them.
    """

    name = "ais_bench"

    def __init__(self, cfg: AclBackendConfig, om_path: Path, record: dict[str, Any]) -> None:
        device_id, gears = cfg.device_id, record["gears"]
        session_class = import_infer_session()
        acl_lifetime.claim("ais_bench")
        acl_lifetime.at_exit(lambda: _finalize_ais_bench(session_class))
        self.om_path = Path(om_path)
        try:
            self.session = session_class(device_id, str(self.om_path))
        except RuntimeError as exc:
            raise AisBenchError(f"ais_bench InferSession({device_id}, {self.om_path}) failed: {exc}") from exc
        inputs = {desc.name: list(desc.shape) for desc in self.session.get_inputs()}
        if INPUT_NAME not in inputs:
            self.close()
            raise ConfigError(f"OM {self.om_path} has no input {INPUT_NAME} (inputs: {sorted(inputs)}): rebuild it with stage=convert")
        dims = inputs[INPUT_NAME]
        if len(dims) != 3 or dims[2] != FEATURE_DIM:
            self.close()
            raise ConfigError(f"OM {self.om_path}: input {INPUT_NAME} has dims {dims}, expected [batch, frames, {FEATURE_DIM}]: rebuild it with stage=convert")
        self.sample_dims = tuple(int(d) for d in dims[1:])
        if dims[0] < 0:
            if not gears:
                self.close()
                raise ConfigError(
                    f"OM {self.om_path} has a dynamic batch but its gears are unknown (no atc_command.txt beside it): "
                    "rebuild it with stage=convert"
                )
            self.gears, self.mode = sorted(int(g) for g in gears), "dymbatch"
            self.om_batch = max(self.gears)
        else:
            self.gears, self.mode, self.om_batch = [], "static", int(dims[0])
        self._summary = getattr(self.session, "summary", None) or getattr(self.session, "sumary")

    def execute(self, feed: np.ndarray) -> tuple[np.ndarray, float]:
        """Run one padded batch; return the first output and the model time of this run (ms)."""
        if self.session is None:
            raise RuntimeError("AisBenchRuntime.execute after close")
        before = len(self._summary().exec_time_list)
        try:
            outputs = self.session.infer([np.ascontiguousarray(feed, dtype=np.float32)], mode=self.mode)
        except RuntimeError as exc:
            raise AisBenchError(f"ais_bench infer on OM {self.om_path} (mode={self.mode}, batch {feed.shape[0]}) failed: {exc}") from exc
        times = self._summary().exec_time_list
        if len(times) != before + 1:
            raise AisBenchError(f"ais_bench recorded {len(times) - before} execute times for one infer call on OM {self.om_path}")
        return np.asarray(outputs[0]), _exec_ms(times[-1])

    def close(self) -> None:
        session, self.session = getattr(self, "session", None), None
        if session is not None:
            session.free_resource()
