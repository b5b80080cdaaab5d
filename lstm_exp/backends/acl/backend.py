"""Ascend NPU inference through pyacl (the recipe's ``pyacl_infer``), on an OM file from ATC.

:class:`AclBackend` follows the pyacl call sequence: ACL, device and context from the
process-wide lifetime (:mod:`.acl_runtime`: ``acl.init`` once per process, finalize at exit) ->
the chip (``acl.get_soc_name``) checked against the OM's ``--soc_version`` -> stream ->
``acl.mdl.load_from_file`` + model description -> one device buffer per model input and
output, allocated once at the largest size the OM takes -> per batch: copy in (host->device, or
device->device when ``acl.rt.get_run_mode`` says the program runs on the device),
``set_dynamic_batch_size`` for an OM with batch gears, ``acl.mdl.execute`` (the only call that
is timed), current output dims and data type, copy out -> ``close`` releases what the job took
in the documented order and leaves device, context and ACL to the next job.  Every ``ret`` is
checked; a failure raises :class:`AclCallError` naming the call and the code.  Host pointers
come from ``acl.util.bytes_to_ptr`` / ``ptr_to_bytes`` (CANN >= 6.0.1) or, on the recipe's
CANN 5.x, ``numpy_to_ptr`` / ``ptr_to_numpy``.

``backend.runtime=ais_bench`` runs the same OM through ais_bench's ``InferSession`` instead
(:mod:`.ais_bench_runtime`).

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

from lstm_exp.backends.acl.config import AclBackendConfig
from lstm_exp.backends.acl import acl_runtime
from lstm_exp.backends.acl.acl_runtime import ACL_DEVICE, AclCallError, error_text
from lstm_exp.backends.acl.atc import FEATURE_DIM, INPUT_NAME, gears_of, precision_of, recorded_command, soc_version_of
from lstm_exp.backends.base import Backend, RunOutput
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

__all__ = ["AclBackend", "AclCallError", "import_acl", "om_build_record"]


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


def om_build_record(om_path: Path, cfg: AclBackendConfig) -> dict[str, Any]:
    """What the OM was built for: from the atc command recorded beside it, else from the config."""
    cmd = recorded_command(om_path)
    if cmd is None:
        return {"soc_version": cfg.atc.soc_version, "precision": cfg.resolved_atc().precision, "gears": None, "source": "backend.atc config"}
    return {"soc_version": soc_version_of(cmd) or cfg.atc.soc_version, "precision": precision_of(cmd),
            "gears": gears_of(cmd), "source": str(Path(om_path).parent / "atc_command.txt")}


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


class AclBackend(Backend):
    """An OM on one Ascend device through pyacl (or ais_bench); ``load`` takes the convert stage's OM."""

    name = "acl"

    def __init__(self, cfg: AclBackendConfig | None = None) -> None:
        self.cfg = cfg or AclBackendConfig()
        self._acl: ModuleType | None = None
        self._ais: Any = None  # an ais_bench_runtime.AisBenchModel when backend.runtime=ais_bench
        self._reset_handles()

    # ------------------------------------------------------------------ helpers
    def _reset_handles(self) -> None:
        self._device_held = False
        self._stream: Any = None
        self._model_id: int | None = None
        self._desc: Any = None
        self._input_ds: Any = None
        self._output_ds: Any = None
        self._data_buffers: list[Any] = []
        self._device_ptrs: list[int] = []
        self._host_ptrs: list[int] = []
        self._om_path: Path | None = None
        self._om_record: dict[str, Any] = {}
        self._chip: str | None = None
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
        self._copy_in = MEMCPY_HOST_TO_DEVICE
        self._copy_out = MEMCPY_DEVICE_TO_HOST

    def _check(self, call: str, ret: int) -> None:
        if ret != 0:
            raise AclCallError(
                f"{call} failed with error code {error_text(ret)} (OM {self._om_path}, device {self.cfg.device_id}); "
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
        self.close()
        if self.cfg.runtime == "ais_bench":
            from lstm_exp.backends.acl.ais_bench_runtime import AisBenchModel

            record = om_build_record(path, self.cfg)
            self._ais = AisBenchModel(self.cfg.device_id, path, record["gears"])
            self._om_path, self._om_record = path, record
            self._gears, self._om_batch, self._sample_dims = self._ais.gears, self._ais.om_batch, self._ais.sample_dims
            return
        acl = import_acl()
        self._acl = acl
        self._om_path = path
        self._om_record = om_build_record(path, self.cfg)
        try:
            acl_runtime.acquire(acl, self.cfg.device_id)
            self._device_held = True
            get_soc_name = getattr(acl, "get_soc_name", None)
            self._chip = str(get_soc_name()) if get_soc_name is not None else None
            check_chip(path, self._om_record["soc_version"], self._om_record["source"], self._chip)
            if acl_runtime.run_mode(acl) == ACL_DEVICE:  # the program runs on the device: all memory is device memory
                self._copy_in = self._copy_out = MEMCPY_DEVICE_TO_DEVICE
            self._stream = self._value("acl.rt.create_stream", acl.rt.create_stream())
            self._load_model(acl, path)
            self._allocate(acl)
        except BaseException:
            try:
                self.close()
            except AclCallError:
                pass  # the load failure is the error to report
            raise

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
        if self._ais is None and (self._acl is None or self._model_id is None):
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
        if self._ais is not None:
            out, infer_ms = self._ais.run(feed)
        else:
            out, infer_ms = self._execute(feed)
        if out.ndim != 3 or out.shape[1] != run_batch:
            raise ConfigError(f"OM {self._om_path} output dims {list(out.shape)} are not [T', {run_batch}, C]: export the time-major recipe model")
        return RunOutput(log_probs=np.array(out[:, :batch], dtype=np.float32), infer_ms=infer_ms)

    def _execute(self, feed: np.ndarray) -> tuple[np.ndarray, float]:
        acl = self._acl
        run_batch = feed.shape[0]
        host_ptr, keep_alive = host_pointer(acl, feed)
        nbytes_in = feed.nbytes
        self._check("acl.rt.memcpy", acl.rt.memcpy(self._input_dev, self._input_size, host_ptr, nbytes_in, self._copy_in))
        del keep_alive
        if self._gears:
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
        with the process (:mod:`.acl_runtime`).  Safe to call twice, also after a failed load."""
        if self._ais is not None:
            ais, self._ais = self._ais, None
            self._reset_handles()
            ais.close()
            return
        acl = self._acl
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
            acl_runtime.release(self.cfg.device_id)
        self._acl = None
        self._reset_handles()
        if failures:
            raise AclCallError("ACL teardown failed: " + "; ".join(failures))

    def describe(self) -> dict[str, str]:
        record = self._om_record or {"soc_version": self.cfg.atc.soc_version, "precision": self.cfg.resolved_atc().precision}
        tags = {
            "backend": self.name,
            "device": f"npu:{self.cfg.device_id}",
            "acl.runtime": self.cfg.runtime,
            "om.soc_version": str(record["soc_version"]),
            "om.precision": str(record["precision"]),
        }
        if self._acl is not None:
            tags["soc"] = self._chip or "unknown (no acl.get_soc_name)"
            tags["acl.pointer_api"] = pointer_api(self._acl)
            tags["acl.run_mode"] = "ACL_DEVICE" if self._copy_in == MEMCPY_DEVICE_TO_DEVICE else "ACL_HOST"
        if self._acl is not None or self._ais is not None:
            tags["om_batch"] = ",".join(map(str, self._gears)) if self._gears else str(self._om_batch)
            tags["om_dynamic_batch"] = str(bool(self._gears))
        return tags
