"""The OM through pyacl (``backend.runtime=pyacl``, the recipe's ``pyacl_infer``).

:class:`PyaclRuntime` follows the pyacl call sequence: ACL, device and context from the
process-wide lifetime (:mod:`.acl_lifetime`: ``acl.init`` once per process, finalize at exit) ->
the chip (``acl.get_soc_name``) checked against the OM's ``--soc_version`` -> stream ->
``acl.mdl.load_from_file`` + model description -> one device buffer per model input and
output, allocated once at the largest size the OM takes -> per batch: copy in (host->device, or
device->device when ``acl.rt.get_run_mode`` says the program runs on the device),
``set_dynamic_batch_size`` for an OM with batch gears, ``acl.mdl.execute`` (the only call that
is timed), current output dims and data type, copy out -> :meth:`PyaclRuntime.close` releases
what the job took in the documented order and leaves device, context and ACL to the next job.
Every ``ret`` is checked; a failure raises :class:`AclCallError` naming the call and the code.
Host pointers come from ``acl.util.bytes_to_ptr`` / ``ptr_to_bytes`` (CANN >= 6.0.1) or, on the
recipe's CANN 5.x, ``numpy_to_ptr`` / ``ptr_to_numpy``.
"""
from __future__ import annotations

import importlib
import math
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from lstm_exp.backends.acl import acl_lifetime
from lstm_exp.backends.acl.acl_lifetime import ACL_DEVICE, AclCallError, error_text
from lstm_exp.backends.acl.atc import FEATURE_DIM, INPUT_NAME
from lstm_exp.backends.acl.config import AclBackendConfig
from lstm_exp.backends.acl.om_runtime import OmRuntime
from lstm_exp.errors import ConfigError, MissingDependencyError

#: the extra input ATC adds to an OM built with --dynamic_batch_size
DYNAMIC_BATCH_INPUT = "ascend_mbatch_shape_data"
MEMCPY_HOST_TO_DEVICE = 1
MEMCPY_DEVICE_TO_HOST = 2
MEMCPY_DEVICE_TO_DEVICE = 3
#: numpy's type number for int8 (NPY_BYTE), what CANN 5's ptr_to_numpy is asked for
NPY_BYTE = 1
#: aclDataType -> numpy
ACL_DTYPES = {0: np.float32, 1: np.float16, 3: np.int32, 9: np.int64}


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


def check_chip(om_path: Path, om_soc: str, om_source: str, chip: str | None) -> None:
    """Refuse an OM built for another chip (atc needs the exact name ``npu-smi info`` shows)."""
    if chip and chip != om_soc:
        raise ConfigError(
            f"OM {om_path} was built for {om_soc} (--soc_version in {om_source}) but this device is {chip} "
            f"(acl.get_soc_name): convert again with backend.atc.soc_version={chip}"
        )


def host_pointer(acl: ModuleType, array: np.ndarray) -> tuple[int, Any]:
    """A host pointer to ``array``'s bytes and the object that must stay alive while it is used."""
    if hasattr(acl.util, "bytes_to_ptr"):  # CANN >= 6.0.1
        data = array.tobytes()
        return acl.util.bytes_to_ptr(data), data
    if hasattr(acl.util, "numpy_to_ptr"):  # CANN 5.x
        owned = np.ascontiguousarray(array).copy()
        return acl.util.numpy_to_ptr(owned), owned
    raise AclCallError("acl.util has neither bytes_to_ptr (CANN >= 6.0.1) nor numpy_to_ptr (CANN 5.x): check the CANN install")


def host_bytes(acl: ModuleType, ptr: int, nbytes: int) -> np.ndarray:
    """A copy of ``nbytes`` of host memory at ``ptr`` as uint8."""
    if hasattr(acl.util, "ptr_to_bytes"):  # CANN >= 6.0.1
        return np.frombuffer(acl.util.ptr_to_bytes(ptr, nbytes), dtype=np.uint8)
    if hasattr(acl.util, "ptr_to_numpy"):  # CANN 5.x: a view of the memory; copy before it is freed
        return np.array(acl.util.ptr_to_numpy(ptr, (nbytes,), NPY_BYTE), copy=True).view(np.uint8)
    raise AclCallError("acl.util has neither ptr_to_bytes (CANN >= 6.0.1) nor ptr_to_numpy (CANN 5.x): check the CANN install")


def pointer_api(acl: ModuleType) -> str:
    return "bytes_to_ptr" if hasattr(acl.util, "bytes_to_ptr") else "numpy_to_ptr"


class PyaclRuntime(OmRuntime):
    """One OM on one Ascend device through pyacl; the constructor loads it (and releases whatever
    it took when loading fails)."""

    name = "pyacl"

    def __init__(self, cfg: AclBackendConfig, om_path: Path, record: dict[str, Any]) -> None:
        self.device_id, self.malloc_policy, self.om_path = cfg.device_id, cfg.malloc_policy, Path(om_path)
        self.acl: ModuleType | None = import_acl()
        self._device_held = False
        self._stream: Any = None
        self._model_id: int | None = None
        self._desc: Any = None
        self._input_ds: Any = None
        self._output_ds: Any = None
        self._data_buffers: list[Any] = []
        self._device_ptrs: list[int] = []
        self._host_ptrs: list[int] = []
        self.chip: str | None = None
        self.gears, self.om_batch, self.sample_dims = [], 0, ()
        self._data_index, self._dynamic_index = 0, -1
        self._input_size = self._output_size = 0
        self._input_dev = self._output_dev = self._output_host = 0
        self._copy_in, self._copy_out = MEMCPY_HOST_TO_DEVICE, MEMCPY_DEVICE_TO_HOST
        try:
            self._load(record)
        except BaseException:
            try:
                self.close()
            except AclCallError:
                pass  # the load failure is the error to report
            raise

    # ------------------------------------------------------------------ helpers
    def _check(self, call: str, ret: int) -> None:
        if ret != 0:
            raise AclCallError(
                f"{call} failed with error code {error_text(ret)} (OM {self.om_path}, device {self.device_id}); "
                "see the CANN log (export ASCEND_SLOG_PRINT_TO_STDOUT=1, or ~/ascend/log)"
            )

    def _value(self, call: str, result: tuple[Any, int]) -> Any:
        value, ret = result
        self._check(call, ret)
        return value

    # ------------------------------------------------------------------ load
    def _load(self, record: dict[str, Any]) -> None:
        acl = self.acl
        acl_lifetime.acquire(acl, self.device_id)
        self._device_held = True
        get_soc_name = getattr(acl, "get_soc_name", None)
        self.chip = str(get_soc_name()) if get_soc_name is not None else None
        check_chip(self.om_path, record["soc_version"], record["source"], self.chip)
        if acl_lifetime.run_mode(acl) == ACL_DEVICE:  # the program runs on the device: all memory is device memory
            self._copy_in = self._copy_out = MEMCPY_DEVICE_TO_DEVICE
        self._stream = self._value("acl.rt.create_stream", acl.rt.create_stream())
        self._load_model(acl)
        self._allocate(acl)

    def _load_model(self, acl: ModuleType) -> None:
        path = self.om_path
        self._model_id = self._value("acl.mdl.load_from_file", acl.mdl.load_from_file(str(path)))
        self._desc = acl.mdl.create_desc()
        if not self._desc:
            raise AclCallError("acl.mdl.create_desc returned a null description")
        self._check("acl.mdl.get_desc", acl.mdl.get_desc(self._desc, self._model_id))
        batch_info = self._value("acl.mdl.get_dynamic_batch", acl.mdl.get_dynamic_batch(self._desc))
        self.gears = sorted(int(b) for b in batch_info.get("batch", [])[: batch_info.get("batchCount", 0)])
        self._data_index = self._value(
            "acl.mdl.get_input_index_by_name", acl.mdl.get_input_index_by_name(self._desc, INPUT_NAME)
        )
        if self.gears:
            self._dynamic_index = self._value(
                "acl.mdl.get_input_index_by_name", acl.mdl.get_input_index_by_name(self._desc, DYNAMIC_BATCH_INPUT)
            )
        dims = list(self._value("acl.mdl.get_input_dims", acl.mdl.get_input_dims(self._desc, self._data_index))["dims"])
        if len(dims) != 3 or dims[2] != FEATURE_DIM:
            raise ConfigError(f"OM {path}: input {INPUT_NAME} has dims {dims}, expected [batch, frames, {FEATURE_DIM}]: rebuild it with stage=convert")
        self.sample_dims = tuple(dims[1:])
        self.om_batch = max(self.gears) if self.gears else int(dims[0])
        if acl.mdl.get_num_outputs(self._desc) < 1:
            raise ConfigError(f"OM {path} has no outputs: rebuild it with stage=convert")

    def _device_buffer(self, acl: ModuleType, size: int, dataset: Any, what: str) -> int:
        if size <= 0:
            raise AclCallError(f"acl.mdl.get_{what}_size_by_index returned {size} bytes for OM {self.om_path}")
        ptr = self._value("acl.rt.malloc", acl.rt.malloc(size, self.malloc_policy))
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
    def execute(self, feed: np.ndarray) -> tuple[np.ndarray, float]:
        acl = self.acl
        if acl is None or self._model_id is None:
            raise RuntimeError("PyaclRuntime.execute after close")
        run_batch = feed.shape[0]
        host_ptr, keep_alive = host_pointer(acl, feed)
        self._check("acl.rt.memcpy", acl.rt.memcpy(self._input_dev, self._input_size, host_ptr, feed.nbytes, self._copy_in))
        del keep_alive
        if self.gears:
            self._check(
                "acl.mdl.set_dynamic_batch_size",
                acl.mdl.set_dynamic_batch_size(self._model_id, self._input_ds, self._dynamic_index, run_batch),
            )
        start = time.perf_counter()
        ret = acl.mdl.execute(self._model_id, self._input_ds, self._output_ds)
        infer_ms = (time.perf_counter() - start) * 1000.0
        self._check("acl.mdl.execute", ret)
        dims = list(self._value("acl.mdl.get_cur_output_dims", acl.mdl.get_cur_output_dims(self._desc, 0))["dims"])
        dtype_code = acl.mdl.get_output_data_type(self._desc, 0)
        if dtype_code not in ACL_DTYPES:
            raise AclCallError(f"acl.mdl.get_output_data_type returned {dtype_code}, not a numeric type this backend reads")
        dtype = np.dtype(ACL_DTYPES[dtype_code])
        nbytes = math.prod(dims) * dtype.itemsize
        if nbytes > self._output_size:
            raise AclCallError(f"output dims {dims} need {nbytes} bytes, more than the {self._output_size} the OM reported")
        self._check(
            "acl.rt.memcpy", acl.rt.memcpy(self._output_host, self._output_size, self._output_dev, nbytes, self._copy_out)
        )
        out = host_bytes(acl, self._output_host, nbytes).view(dtype).reshape(dims)
        return out, infer_ms

    # ------------------------------------------------------------------ close
    def close(self) -> None:
        """Release what this job took, in pyacl's documented order; device, context and ACL stay
        with the process (:mod:`.acl_lifetime`).  Safe to call twice, also after a failed load."""
        acl, self.acl = self.acl, None
        if acl is None:
            return
        failures: list[str] = []

        def step(call: str, ret: int) -> None:
            if ret != 0:
                failures.append(f"{call} returned {error_text(ret)}")

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
        if self._device_held:
            acl_lifetime.release(self.device_id)
        self._data_buffers, self._device_ptrs, self._host_ptrs = [], [], []
        self._input_ds = self._output_ds = self._desc = self._stream = None
        self._model_id, self._device_held = None, False
        if failures:
            raise AclCallError("ACL teardown failed: " + "; ".join(failures))

    def tags(self) -> dict[str, str]:
        if self.acl is None:
            return {}
        return {"soc": self.chip or "unknown (no acl.get_soc_name)",
                "acl.pointer_api": pointer_api(self.acl),
                "acl.run_mode": "ACL_DEVICE" if self._copy_in == MEMCPY_DEVICE_TO_DEVICE else "ACL_HOST"}
