"""Ascend NPU inference through pyacl (the recipe's ``pyacl_infer``), on an OM file from ATC.

:class:`AclBackend` follows the pyacl call sequence: ``acl.init`` -> device, context, stream ->
``acl.mdl.load_from_file`` + model description -> one device buffer per model input and
output, allocated once at the largest size the OM takes -> per batch: copy host->device,
``set_dynamic_batch_size`` for an OM with batch gears, ``acl.mdl.execute`` (the only call that
is timed), current output dims and data type, copy device->host -> ``close`` tears everything
down in the documented order.  Every ``ret`` is checked; a failure raises
:class:`AclCallError` naming the call and the code.

A static OM runs a smaller batch padded to its batch with zero rows; a dynamic OM runs the
smallest gear that holds the batch.  Either way only the real rows come back.
"""
from __future__ import annotations

import importlib
import math
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from conf_schemas.acl import AclBackendConfig
from lstm_exp.backends.acl.atc import FEATURE_DIM, INPUT_NAME
from lstm_exp.backends.base import Backend, RunOutput
from lstm_exp.errors import ConfigError, LstmExpError, MissingDependencyError

#: the extra input ATC adds to an OM built with --dynamic_batch_size
DYNAMIC_BATCH_INPUT = "ascend_mbatch_shape_data"
MEMCPY_HOST_TO_DEVICE = 1
MEMCPY_DEVICE_TO_HOST = 2
#: aclDataType -> numpy
ACL_DTYPES = {0: np.float32, 1: np.float16, 3: np.int32, 9: np.int64}
#: a few aclError names (acl_base.h), for messages
ACL_ERROR_NAMES = {
    100000: "ACL_ERROR_INVALID_PARAM",
    100001: "ACL_ERROR_UNINITIALIZE",
    100002: "ACL_ERROR_REPEAT_INITIALIZE",
    100003: "ACL_ERROR_INVALID_FILE",
    100011: "ACL_ERROR_INVALID_MODEL_ID",
    100013: "ACL_ERROR_PARSE_MODEL",
    100014: "ACL_ERROR_READ_MODEL_FAILURE",
    100017: "ACL_ERROR_MODEL_INPUT_NOT_MATCH",
    100018: "ACL_ERROR_MODEL_OUTPUT_NOT_MATCH",
    100019: "ACL_ERROR_MODEL_NOT_DYNAMIC",
    100037: "ACL_ERROR_REPEAT_FINALIZE",
    107001: "ACL_ERROR_RT_INVALID_DEVICEID",
    200000: "ACL_ERROR_BAD_ALLOC",
}
ACL_ERROR_REPEAT_INITIALIZE = 100002


class AclCallError(LstmExpError):
    """A pyacl call returned a non-zero error code."""


def import_acl() -> ModuleType:
    """The ``acl`` module, or a :class:`MissingDependencyError` that says where it comes from."""
    try:
        return importlib.import_module("acl")
    except ImportError as exc:
        raise MissingDependencyError(
            "backend=acl needs pyacl (the `acl` module from the Ascend CANN toolkit: source <CANN>/set_env.sh, "
            "e.g. /usr/local/Ascend/ascend-toolkit/set_env.sh, on a host with an Ascend NPU and driver); "
            f"import failed: {exc}; elsewhere use backend=onnxruntime or backend=torch"
        ) from exc


def _error_text(code: int) -> str:
    name = ACL_ERROR_NAMES.get(code)
    return f"{code} ({name})" if name else str(code)


class AclBackend(Backend):
    """pyacl on one Ascend device; ``load`` takes the OM file the convert stage wrote."""

    name = "acl"
    artifact_kind = "om"

    def __init__(self, cfg: AclBackendConfig | None = None) -> None:
        self.cfg = cfg or AclBackendConfig()
        self._acl: ModuleType | None = None
        self._reset_handles()

    # ------------------------------------------------------------------ helpers
    def _reset_handles(self) -> None:
        self._owns_init = False
        self._device_set = False
        self._context: Any = None
        self._stream: Any = None
        self._model_id: int | None = None
        self._desc: Any = None
        self._input_ds: Any = None
        self._output_ds: Any = None
        self._data_buffers: list[Any] = []
        self._device_ptrs: list[int] = []
        self._host_ptrs: list[int] = []
        self._om_path: Path | None = None
        self._gears: list[int] = []  # empty: static OM
        self._om_batch = 0
        self._sample_dims: tuple[int, ...] = ()
        self._data_index = 0
        self._dynamic_index = -1
        self._input_size = 0
        self._output_size = 0
        self._input_dev = 0
        self._output_dev = 0
        self._output_host = 0

    def _check(self, call: str, ret: int) -> None:
        if ret != 0:
            raise AclCallError(
                f"{call} failed with error code {_error_text(ret)} (OM {self._om_path}, device {self.cfg.device_id}); "
                "see the CANN log (export ASCEND_SLOG_PRINT_TO_STDOUT=1, or ~/ascend/log)"
            )

    def _value(self, call: str, result: tuple[Any, int]) -> Any:
        value, ret = result
        self._check(call, ret)
        return value

    # ------------------------------------------------------------------ load
    def load(self, artifact: Path) -> None:
        path = Path(artifact)
        if not path.is_file():
            raise ConfigError(f"OM file {path} does not exist: run stage=convert (atc) first or point at an existing .om")
        acl = import_acl()
        self.close()
        self._acl = acl
        self._om_path = path
        try:
            self._open_device(acl)
            self._load_model(acl, path)
            self._allocate(acl)
        except BaseException:
            try:
                self.close()
            except AclCallError:
                pass  # the load failure is the error to report
            raise

    def _open_device(self, acl: ModuleType) -> None:
        ret = acl.init()
        if ret == ACL_ERROR_REPEAT_INITIALIZE:
            self._owns_init = False  # initialised elsewhere in this process: leave finalize to its owner
        else:
            self._check("acl.init", ret)
            self._owns_init = True
        self._check("acl.rt.set_device", acl.rt.set_device(self.cfg.device_id))
        self._device_set = True
        self._context = self._value("acl.rt.create_context", acl.rt.create_context(self.cfg.device_id))
        self._stream = self._value("acl.rt.create_stream", acl.rt.create_stream())

    def _load_model(self, acl: ModuleType, path: Path) -> None:
        self._model_id = self._value("acl.mdl.load_from_file", acl.mdl.load_from_file(str(path)))
        self._desc = acl.mdl.create_desc()
        if not self._desc:
            raise AclCallError("acl.mdl.create_desc returned a null description")
        self._check("acl.mdl.get_desc", acl.mdl.get_desc(self._desc, self._model_id))
        batch_info = self._value("acl.mdl.get_dynamic_batch", acl.mdl.get_dynamic_batch(self._desc))
        self._gears = sorted(int(b) for b in batch_info.get("batch", [])[: batch_info.get("batchCount", 0)])
        self._data_index = self._value(
            "acl.mdl.get_input_index_by_name", acl.mdl.get_input_index_by_name(self._desc, INPUT_NAME)
        )
        if self._gears:
            self._dynamic_index = self._value(
                "acl.mdl.get_input_index_by_name", acl.mdl.get_input_index_by_name(self._desc, DYNAMIC_BATCH_INPUT)
            )
        dims = list(self._value("acl.mdl.get_input_dims", acl.mdl.get_input_dims(self._desc, self._data_index))["dims"])
        if len(dims) != 3 or dims[2] != FEATURE_DIM:
            raise ConfigError(f"OM {path}: input {INPUT_NAME} has dims {dims}, expected [batch, frames, {FEATURE_DIM}]: rebuild it with stage=convert")
        self._sample_dims = tuple(dims[1:])
        self._om_batch = max(self._gears) if self._gears else int(dims[0])
        if acl.mdl.get_num_outputs(self._desc) < 1:
            raise ConfigError(f"OM {path} has no outputs: rebuild it with stage=convert")

    def _device_buffer(self, acl: ModuleType, size: int, dataset: Any, what: str) -> int:
        if size <= 0:
            raise AclCallError(f"acl.mdl.get_{what}_size_by_index returned {size} bytes for OM {self._om_path}")
        ptr = self._value("acl.rt.malloc", acl.rt.malloc(size, self.cfg.malloc_policy))
        self._device_ptrs.append(ptr)
        buf = acl.create_data_buffer(ptr, size)
        if not buf:
            raise AclCallError(f"acl.create_data_buffer returned a null buffer for {size} bytes of {what}")
        self._data_buffers.append(buf)
        self._value("acl.mdl.add_dataset_buffer", acl.mdl.add_dataset_buffer(dataset, buf))
        return ptr

    def _allocate(self, acl: ModuleType) -> None:
        self._input_ds = acl.mdl.create_dataset()
        self._output_ds = acl.mdl.create_dataset()
        if not self._input_ds or not self._output_ds:
            raise AclCallError("acl.mdl.create_dataset returned a null dataset")
        for i in range(acl.mdl.get_num_inputs(self._desc)):
            size = acl.mdl.get_input_size_by_index(self._desc, i)
            ptr = self._device_buffer(acl, size, self._input_ds, "input")
            if i == self._data_index:
                self._input_dev, self._input_size = ptr, size
        for i in range(acl.mdl.get_num_outputs(self._desc)):
            size = acl.mdl.get_output_size_by_index(self._desc, i)
            ptr = self._device_buffer(acl, size, self._output_ds, "output")
            if i == 0:
                self._output_dev, self._output_size = ptr, size
        self._output_host = self._value("acl.rt.malloc_host", acl.rt.malloc_host(self._output_size))
        self._host_ptrs.append(self._output_host)

    # ------------------------------------------------------------------ run
    def _run_batch(self, batch: int) -> int:
        if self._gears:
            fitting = [g for g in self._gears if g >= batch]
            if not fitting:
                raise ConfigError(f"batch {batch} is larger than every gear {self._gears} of OM {self._om_path}: add a gear (atc.batch_gears) or lower batch")
            return fitting[0]
        if batch > self._om_batch:
            raise ConfigError(f"batch {batch} is larger than the static batch {self._om_batch} of OM {self._om_path}: convert with batch={batch} or atc.dynamic_batch=true")
        return self._om_batch

    def run(self, x: np.ndarray) -> RunOutput:
        acl = self._acl
        if acl is None or self._model_id is None:
            raise RuntimeError("AclBackend.run before load (or after close)")
        x = np.asarray(x)
        if x.ndim != 3 or tuple(x.shape[1:]) != self._sample_dims:
            raise ConfigError(
                f"batch of shape {list(x.shape)} does not fit OM {self._om_path}, built for [batch, {', '.join(map(str, self._sample_dims))}]: "
                f"pad batches to {self._sample_dims[0]} frames (infer.pad_to={self._sample_dims[0]}) or convert with atc.frames={x.shape[1] if x.ndim == 3 else '?'}"
            )
        batch = x.shape[0]
        run_batch = self._run_batch(batch)
        feed = np.zeros((run_batch, *self._sample_dims), dtype=np.float32)
        feed[:batch] = x
        data = feed.tobytes()
        host_ptr = acl.util.bytes_to_ptr(data)
        self._check("acl.rt.memcpy", acl.rt.memcpy(self._input_dev, self._input_size, host_ptr, len(data), MEMCPY_HOST_TO_DEVICE))
        if self._gears:
            self._check(
                "acl.mdl.set_dynamic_batch_size",
                acl.mdl.set_dynamic_batch_size(self._model_id, self._input_ds, self._dynamic_index, run_batch),
            )
        start = time.perf_counter()
        ret = acl.mdl.execute(self._model_id, self._input_ds, self._output_ds)
        infer_ms = (time.perf_counter() - start) * 1000.0
        self._check("acl.mdl.execute", ret)
        del data
        dims = list(self._value("acl.mdl.get_cur_output_dims", acl.mdl.get_cur_output_dims(self._desc, 0))["dims"])
        dtype_code = acl.mdl.get_output_data_type(self._desc, 0)
        if dtype_code not in ACL_DTYPES:
            raise AclCallError(f"acl.mdl.get_output_data_type returned {dtype_code}, not a numeric type this backend reads")
        dtype = np.dtype(ACL_DTYPES[dtype_code])
        nbytes = math.prod(dims) * dtype.itemsize
        if nbytes > self._output_size:
            raise AclCallError(f"output dims {dims} need {nbytes} bytes, more than the {self._output_size} the OM reported")
        self._check(
            "acl.rt.memcpy", acl.rt.memcpy(self._output_host, self._output_size, self._output_dev, nbytes, MEMCPY_DEVICE_TO_HOST)
        )
        out = np.frombuffer(acl.util.ptr_to_bytes(self._output_host, nbytes), dtype=dtype).reshape(dims)
        if out.ndim != 3 or out.shape[1] != run_batch:
            raise ConfigError(f"OM {self._om_path} output dims {dims} are not [T', {run_batch}, C]: export the time-major recipe model")
        return RunOutput(log_probs=np.array(out[:, :batch], dtype=np.float32), infer_ms=infer_ms)

    # ------------------------------------------------------------------ close
    def close(self) -> None:
        """Tear down in pyacl's documented order; safe to call twice, also after a failed load."""
        acl = self._acl
        if acl is None:
            return
        failures: list[str] = []

        def step(call: str, ret: int) -> None:
            if ret != 0:
                failures.append(f"{call} returned {_error_text(ret)}")

        for buf in self._data_buffers:
            step("acl.destroy_data_buffer", acl.destroy_data_buffer(buf))
        for dataset in (self._input_ds, self._output_ds):
            if dataset:
                step("acl.mdl.destroy_dataset", acl.mdl.destroy_dataset(dataset))
        if self._model_id is not None:
            step("acl.mdl.unload", acl.mdl.unload(self._model_id))
        if self._desc:
            step("acl.mdl.destroy_desc", acl.mdl.destroy_desc(self._desc))
        for ptr in self._device_ptrs:
            step("acl.rt.free", acl.rt.free(ptr))
        for ptr in self._host_ptrs:
            step("acl.rt.free_host", acl.rt.free_host(ptr))
        if self._stream:
            step("acl.rt.destroy_stream", acl.rt.destroy_stream(self._stream))
        if self._context:
            step("acl.rt.destroy_context", acl.rt.destroy_context(self._context))
        if self._device_set:
            step("acl.rt.reset_device", acl.rt.reset_device(self.cfg.device_id))
        if self._owns_init:
            step("acl.finalize", acl.finalize())
        self._acl = None
        self._reset_handles()
        if failures:
            raise AclCallError("ACL teardown failed: " + "; ".join(failures))

    def describe(self) -> dict[str, str]:
        tags = {"backend": self.name, "device": f"npu:{self.cfg.device_id}", "soc_version_config": self.cfg.atc.soc_version}
        if self._acl is not None:
            get_soc_name = getattr(self._acl, "get_soc_name", None)
            if get_soc_name is not None:
                tags["soc"] = str(get_soc_name())
            tags["om_batch"] = ",".join(map(str, self._gears)) if self._gears else str(self._om_batch)
            tags["om_dynamic_batch"] = str(bool(self._gears))
        return tags
