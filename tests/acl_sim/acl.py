"""A strict simulator of pyacl (the ``acl`` module of the Ascend CANN toolkit), for tests only.

Put ``tests/acl_sim`` on ``sys.path`` and ``import acl``.  The calls and their return
conventions follow pyacl: most return ``ret`` (0 = success) or ``(value, ret)``; handles and
pointers are integers.  Device memory is a dict of bytearrays keyed by fake pointers, models are
the fake OM files that ``fake_atc`` writes, executed with onnxruntime.

Strictness, so that tests can assert correct resource handling:

* every misuse (wrong size, unknown or freed pointer, wrong copy direction, calls before
  ``init`` or without a device/context, unset dynamic batch, teardown out of order) returns an
  ACL error code and is recorded in :func:`_sim_errors`;
* reading host bytes from device memory (``ptr_to_bytes`` on a device pointer) raises
  :class:`SimulatedCrash`, as the real call would crash the process;
* :func:`_sim_leaks` lists what is still allocated; ``finalize`` records it too;
* :func:`_sim_fail_next` makes a named call return an error code once (fault injection);
* one ACL lifetime per process: ``init`` after ``finalize`` fails, and :func:`_sim_counts`
  says how often ``init`` / ``finalize`` ran (with ``ACL_SIM_REPORT=<file>`` in the
  environment the counts, errors and leaks are written there as JSON when the process exits);
* the machine is configurable (:func:`_sim_configure`): the chip ``get_soc_name`` reports (an OM
  built for another ``--soc_version`` fails to load), the run mode (``ACL_DEVICE`` = 0 needs
  device-to-device copies, ``ACL_HOST`` = 1 is the default) and the pointer API
  (``cann6``: ``bytes_to_ptr`` / ``ptr_to_bytes``; ``cann5``: ``numpy_to_ptr`` / ``ptr_to_numpy``);
* an OM whose precision is fp16 (ATC's default ``force_fp16``, ``allow_fp32_to_fp16``,
  ``--precision_mode_v2=fp16`` ...) runs with weights, input and output rounded to float16.
"""
from __future__ import annotations

import atexit
import bisect
import itertools
import json
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fake_om import NotAFakeOm, read_om

# error codes as in acl_base.h
ACL_SUCCESS = 0
ACL_ERROR_INVALID_PARAM = 100000
ACL_ERROR_UNINITIALIZE = 100001
ACL_ERROR_REPEAT_INITIALIZE = 100002
ACL_ERROR_INVALID_MODEL_ID = 100011
ACL_ERROR_PARSE_MODEL = 100013
ACL_ERROR_READ_MODEL_FAILURE = 100014
ACL_ERROR_MODEL_INPUT_NOT_MATCH = 100017
ACL_ERROR_MODEL_OUTPUT_NOT_MATCH = 100018
ACL_ERROR_MODEL_NOT_DYNAMIC = 100019
ACL_ERROR_REPEAT_FINALIZE = 100037
ACL_ERROR_BAD_ALLOC = 200000
ACL_ERROR_RT_INVALID_DEVICEID = 107001
ACL_ERROR_INTERNAL_ERROR = 500000
ACL_DEVICE, ACL_HOST = 0, 1  # acl.rt.get_run_mode()

#: OM precisions (fake_atc's header["precision"]) that compute in float16
FP16_PRECISIONS = {"force_fp16", "allow_fp32_to_fp16", "allow_mix_precision", "allow_mix_precision_fp16",
                   "cube_fp16in_fp32out", "v2:fp16", "v2:mixed_float16", "v2:cube_fp16in_fp32out"}
#: numpy type numbers ptr_to_numpy takes (NPY_BYTE, NPY_UBYTE, NPY_FLOAT)
_NPY_TYPES = {1: np.int8, 2: np.uint8, 11: np.float32}

DYNAMIC_BATCH_INPUT = "ascend_mbatch_shape_data"
DYNAMIC_BATCH_INPUT_SIZE = 8
SIM_DEVICE_COUNT = 4  # one Ascend 310 card: four chips
BYTES_TO_PTR_KEEP = 16  # bytes_to_ptr pointers stay valid for this many later registrations

_NP_TO_ACL = {np.dtype(np.float32): 0, np.dtype(np.float16): 1, np.dtype(np.int32): 3, np.dtype(np.int64): 9}


class SimulatedCrash(RuntimeError):
    """What would be a segmentation fault with the real library."""


@dataclass
class _Region:
    kind: str  # device | host | pybytes (bytes_to_ptr) | numpy (numpy_to_ptr)
    base: int
    data: Any  # bytearray (device, host) or bytes (pybytes)
    live: bool = True

    @property
    def size(self) -> int:
        return len(self.data)


@dataclass
class _Model:
    path: str
    header: dict
    session: Any
    onnx_input: str
    onnx_output: str
    frames_dims: list[int]  # dims after batch
    gears: list[int] | None
    static_batch: int | None
    out_dims_max: list[int]
    out_dtype: np.dtype
    cur_out_dims: list[int]
    dataset_batch: dict[int, int] = field(default_factory=dict)
    fp16: bool = False

    def compute(self, x: np.ndarray) -> np.ndarray:
        """The OM's arithmetic: float32, or float16-rounded input and output around float16 weights."""
        if self.fp16:
            x = x.astype(np.float16).astype(np.float32)
        y = self.session.run([self.onnx_output], {self.onnx_input: x})[0]
        if self.fp16:
            y = y.astype(np.float16).astype(np.float32)
        return y.astype(self.out_dtype)

    @property
    def dynamic(self) -> bool:
        return self.gears is not None

    @property
    def max_batch(self) -> int:
        return max(self.gears) if self.gears else self.static_batch

    def input_size(self, batch: int) -> int:
        return int(batch * np.prod(self.frames_dims) * 4)

    def output_size(self, batch: int) -> int:
        dims = list(self.out_dims_max)
        dims[1] = batch
        return int(np.prod(dims) * self.out_dtype.itemsize)


class _State:
    def __init__(self) -> None:
        self.initialized = False
        self.ever_finalized = False
        self.devices: set[int] = set()
        self.contexts: dict[int, int] = {}  # ctx -> device
        self.current_context: int | None = None
        self.streams: dict[int, int] = {}  # stream -> ctx
        self.pending_streams: set[int] = set()
        self.regions: dict[int, _Region] = {}
        self.bases: list[int] = []
        self.next_base = 0x1000_0000
        self.pybytes: list[int] = []
        self.buffers: dict[int, tuple[int, int]] = {}
        self.datasets: dict[int, list[int]] = {}
        self.models: dict[int, _Model] = {}
        self.descs: dict[int, int | None] = {}
        self.errors: list[str] = []
        self.calls: list[str] = []
        self.fail_next: dict[str, int] = {}
        self.leaks_at_finalize: list[str] = []
        self.handles = itertools.count(0x7000_0001)
        self.model_ids = itertools.count(1)
        self.init_calls = 0
        self.finalize_calls = 0
        self.soc_name = "Ascend310"
        self.run_mode = ACL_HOST


_S = _State()


# ---------------------------------------------------------------- simulator controls (tests)
def _sim_reset() -> None:
    """Forget everything (a fresh process, CANN >= 6.0.1 pointer API, an Ascend310 on a host)."""
    global _S, util
    _S = _State()
    util = _Cann6Util


def _sim_configure(soc_name: str | None = None, run_mode: int | None = None, pointer_api: str | None = None) -> None:
    """Set the simulated machine: the chip, ACL_DEVICE (0) / ACL_HOST (1), ``cann5`` / ``cann6``."""
    global util
    if soc_name is not None:
        _S.soc_name = soc_name
    if run_mode is not None:
        _S.run_mode = run_mode
    if pointer_api is not None:
        util = {"cann5": _Cann5Util, "cann6": _Cann6Util}[pointer_api]


def _sim_counts() -> dict[str, int]:
    """How often acl.init and acl.finalize ran in this (simulated) process."""
    return {"init": _S.init_calls, "finalize": _S.finalize_calls}


def _write_report() -> None:
    path = os.environ.get("ACL_SIM_REPORT")
    if path:
        report = {**_sim_counts(), "errors": _sim_errors(), "leaks": _sim_leaks(), "leaks_at_finalize": _sim_leaks_at_finalize()}
        with open(path, "w") as handle:
            json.dump(report, handle)


atexit.register(_write_report)  # registered at import, so it runs after the code under test's own atexit hooks


def _sim_errors() -> list[str]:
    """Every misuse recorded so far, as ``call: what was wrong (ret code)``."""
    return list(_S.errors)


def _sim_calls() -> list[str]:
    """Names of the API calls made so far, in order."""
    return list(_S.calls)


def _sim_fail_next(call: str, code: int) -> None:
    """Make the next call named ``call`` (e.g. ``"acl.mdl.execute"``) return ``code``."""
    _S.fail_next[call] = code


def _sim_leaks() -> list[str]:
    """Resources still held: memory, buffers, datasets, models, descs, streams, contexts, devices."""
    leaks = [f"{r.kind} memory {r.base:#x} ({r.size} bytes)" for r in _S.regions.values() if r.live and r.kind not in ("pybytes", "numpy")]
    leaks += [f"data buffer {h:#x}" for h in _S.buffers]
    leaks += [f"dataset {h:#x}" for h in _S.datasets]
    leaks += [f"model {m} ({_S.models[m].path})" for m in _S.models]
    leaks += [f"model desc {h:#x}" for h in _S.descs]
    leaks += [f"stream {h:#x}" for h in _S.streams]
    leaks += [f"context {h:#x}" for h in _S.contexts]
    leaks += [f"device {d} not reset" for d in sorted(_S.devices)]
    if _S.initialized:
        leaks.append("acl.init without acl.finalize")
    return leaks


def _sim_leaks_at_finalize() -> list[str]:
    return list(_S.leaks_at_finalize)


# ---------------------------------------------------------------- internals
def _error(call: str, code: int, message: str) -> int:
    _S.errors.append(f"{call}: {message} (ret {code})")
    return code


def _enter(call: str) -> int:
    """Record the call; return an injected error code or 0."""
    _S.calls.append(call)
    code = _S.fail_next.pop(call, 0)
    if code:
        _S.errors.append(f"{call}: injected failure (ret {code})")
    return code


def _need_runtime(call: str, context: bool = True) -> int:
    if not _S.initialized:
        return _error(call, ACL_ERROR_UNINITIALIZE, "acl.init has not been called")
    if context and _S.current_context is None:
        return _error(call, ACL_ERROR_INVALID_PARAM, "no current context (acl.rt.set_device / create_context first)")
    return ACL_SUCCESS


def _alloc(kind: str, data: Any) -> int:
    base = _S.next_base
    _S.next_base += (len(data) // 4096 + 2) * 4096  # never reused: freed pointers stay detectable
    _S.regions[base] = _Region(kind, base, data)
    _S.bases.append(base)
    return base


def _find(ptr: int) -> tuple[_Region | None, int]:
    """The region holding ``ptr`` (live or freed) and the offset into it."""
    i = bisect.bisect_right(_S.bases, ptr) - 1
    if i < 0:
        return None, 0
    region = _S.regions[_S.bases[i]]
    offset = ptr - region.base
    if offset >= max(region.size, 1):
        return None, 0
    return region, offset


def _resolve(call: str, ptr: int, what: str) -> tuple[_Region | None, int, int]:
    region, offset = _find(ptr) if isinstance(ptr, int) else (None, 0)
    if region is None:
        return None, 0, _error(call, ACL_ERROR_INVALID_PARAM, f"{what} {ptr!r} is not an allocated pointer")
    if not region.live:
        return None, 0, _error(call, ACL_ERROR_INVALID_PARAM, f"{what} {ptr:#x} used after free ({region.kind} memory)")
    return region, offset, ACL_SUCCESS


# ---------------------------------------------------------------- acl.*
def init(config_path: str | None = None) -> int:
    if code := _enter("acl.init"):
        return code
    _S.init_calls += 1
    if _S.ever_finalized:
        return _error("acl.init", ACL_ERROR_INTERNAL_ERROR, "acl.init after acl.finalize in the same process is not supported")
    if _S.initialized:
        return _error("acl.init", ACL_ERROR_REPEAT_INITIALIZE, "acl.init called twice")
    _S.initialized = True
    return ACL_SUCCESS


def finalize() -> int:
    if code := _enter("acl.finalize"):
        return code
    _S.finalize_calls += 1
    if not _S.initialized:
        if _S.ever_finalized:
            return _error("acl.finalize", ACL_ERROR_REPEAT_FINALIZE, "acl.finalize called twice")
        return _error("acl.finalize", ACL_ERROR_UNINITIALIZE, "acl.init has not been called")
    _S.initialized = False
    _S.ever_finalized = True
    _S.leaks_at_finalize = _sim_leaks()
    if _S.leaks_at_finalize:
        _S.errors.append("acl.finalize: resources still held: " + "; ".join(_S.leaks_at_finalize))
    return ACL_SUCCESS


def get_soc_name() -> str:
    """The simulated chip (``_sim_configure(soc_name=...)``), whatever OM is loaded."""
    _S.calls.append("acl.get_soc_name")
    return _S.soc_name


def create_data_buffer(ptr: int, size: int) -> int:
    call = "acl.create_data_buffer"
    _S.calls.append(call)
    region, offset, code = _resolve(call, ptr, "pointer")
    if code:
        return 0
    if size <= 0 or offset + size > region.size:
        _error(call, ACL_ERROR_INVALID_PARAM, f"size {size} does not fit the allocation at {ptr:#x} ({region.size - offset} bytes left)")
        return 0
    handle = next(_S.handles)
    _S.buffers[handle] = (ptr, size)
    return handle


def destroy_data_buffer(buf: int) -> int:
    call = "acl.destroy_data_buffer"
    if code := _enter(call):
        return code
    if buf not in _S.buffers:
        return _error(call, ACL_ERROR_INVALID_PARAM, f"data buffer {buf!r} does not exist (destroyed twice?)")
    del _S.buffers[buf]
    return ACL_SUCCESS


def get_data_buffer_addr(buf: int) -> int:
    _S.calls.append("acl.get_data_buffer_addr")
    if buf not in _S.buffers:
        _error("acl.get_data_buffer_addr", ACL_ERROR_INVALID_PARAM, f"data buffer {buf!r} does not exist")
        return 0
    return _S.buffers[buf][0]


def get_data_buffer_size(buf: int) -> int:
    _S.calls.append("acl.get_data_buffer_size")
    if buf not in _S.buffers:
        _error("acl.get_data_buffer_size", ACL_ERROR_INVALID_PARAM, f"data buffer {buf!r} does not exist")
        return 0
    return _S.buffers[buf][1]


get_data_buffer_size_v2 = get_data_buffer_size


# ---------------------------------------------------------------- acl.rt
class rt:  # noqa: N801 - mirrors the real submodule's name
    @staticmethod
    def set_device(device_id: int) -> int:
        call = "acl.rt.set_device"
        if (code := _enter(call)) or (code := _need_runtime(call, context=False)):
            return code
        if not 0 <= device_id < SIM_DEVICE_COUNT:
            return _error(call, ACL_ERROR_RT_INVALID_DEVICEID, f"device {device_id} does not exist ({SIM_DEVICE_COUNT} simulated)")
        _S.devices.add(device_id)
        return ACL_SUCCESS

    @staticmethod
    def reset_device(device_id: int) -> int:
        call = "acl.rt.reset_device"
        if code := _enter(call):
            return code
        if device_id not in _S.devices:
            return _error(call, ACL_ERROR_RT_INVALID_DEVICEID, f"device {device_id} was not set")
        if any(dev == device_id for dev in _S.contexts.values()):
            return _error(call, ACL_ERROR_INVALID_PARAM, "contexts still exist on the device (destroy_context first)")
        if any(r.live and r.kind in ("device", "host") for r in _S.regions.values()):
            return _error(call, ACL_ERROR_INVALID_PARAM, "memory still allocated (acl.rt.free / free_host first)")
        _S.devices.discard(device_id)
        return ACL_SUCCESS

    @staticmethod
    def get_run_mode() -> tuple[int, int]:
        _S.calls.append("acl.rt.get_run_mode")
        return _S.run_mode, ACL_SUCCESS  # ACL_HOST (1): a PCIe card in a server; ACL_DEVICE (0): on the device

    @staticmethod
    def set_context(ctx: int) -> int:
        call = "acl.rt.set_context"
        if (code := _enter(call)) or (code := _need_runtime(call, context=False)):
            return code
        if ctx not in _S.contexts:
            return _error(call, ACL_ERROR_INVALID_PARAM, f"context {ctx!r} does not exist")
        _S.current_context = ctx
        return ACL_SUCCESS

    @staticmethod
    def create_context(device_id: int) -> tuple[int, int]:
        call = "acl.rt.create_context"
        if (code := _enter(call)) or (code := _need_runtime(call, context=False)):
            return 0, code
        if device_id not in _S.devices:
            return 0, _error(call, ACL_ERROR_RT_INVALID_DEVICEID, f"device {device_id} was not set (acl.rt.set_device first)")
        ctx = next(_S.handles)
        _S.contexts[ctx] = device_id
        _S.current_context = ctx
        return ctx, ACL_SUCCESS

    @staticmethod
    def destroy_context(ctx: int) -> int:
        call = "acl.rt.destroy_context"
        if code := _enter(call):
            return code
        if ctx not in _S.contexts:
            return _error(call, ACL_ERROR_INVALID_PARAM, f"context {ctx!r} does not exist")
        if any(owner == ctx for owner in _S.streams.values()):
            return _error(call, ACL_ERROR_INVALID_PARAM, "streams still exist in the context (destroy_stream first)")
        if _S.models:
            return _error(call, ACL_ERROR_INVALID_PARAM, "models still loaded (acl.mdl.unload first)")
        del _S.contexts[ctx]
        if _S.current_context == ctx:
            _S.current_context = None
        return ACL_SUCCESS

    @staticmethod
    def create_stream() -> tuple[int, int]:
        call = "acl.rt.create_stream"
        if (code := _enter(call)) or (code := _need_runtime(call)):
            return 0, code
        stream = next(_S.handles)
        _S.streams[stream] = _S.current_context
        return stream, ACL_SUCCESS

    @staticmethod
    def destroy_stream(stream: int) -> int:
        call = "acl.rt.destroy_stream"
        if code := _enter(call):
            return code
        if stream not in _S.streams:
            return _error(call, ACL_ERROR_INVALID_PARAM, f"stream {stream!r} does not exist")
        if stream in _S.pending_streams:
            return _error(call, ACL_ERROR_INVALID_PARAM, "work still pending on the stream (synchronize_stream first)")
        del _S.streams[stream]
        return ACL_SUCCESS

    @staticmethod
    def synchronize_stream(stream: int) -> int:
        call = "acl.rt.synchronize_stream"
        if code := _enter(call):
            return code
        if stream not in _S.streams:
            return _error(call, ACL_ERROR_INVALID_PARAM, f"stream {stream!r} does not exist")
        _S.pending_streams.discard(stream)
        return ACL_SUCCESS

    @staticmethod
    def malloc(size: int, policy: int) -> tuple[int, int]:
        call = "acl.rt.malloc"
        if (code := _enter(call)) or (code := _need_runtime(call)):
            return 0, code
        if not isinstance(size, int) or size <= 0:
            return 0, _error(call, ACL_ERROR_INVALID_PARAM, f"size {size!r} must be a positive int")
        if policy not in (0, 1, 2):
            return 0, _error(call, ACL_ERROR_INVALID_PARAM, f"policy {policy!r} is not 0, 1 or 2")
        return _alloc("device", bytearray(size)), ACL_SUCCESS

    @staticmethod
    def malloc_host(size: int) -> tuple[int, int]:
        call = "acl.rt.malloc_host"
        if (code := _enter(call)) or (code := _need_runtime(call)):
            return 0, code
        if not isinstance(size, int) or size <= 0:
            return 0, _error(call, ACL_ERROR_INVALID_PARAM, f"size {size!r} must be a positive int")
        return _alloc("host", bytearray(size)), ACL_SUCCESS

    @staticmethod
    def _free(call: str, ptr: int, kind: str) -> int:
        if code := _enter(call):
            return code
        region = _S.regions.get(ptr)
        if region is None or region.kind != kind:
            return _error(call, ACL_ERROR_INVALID_PARAM, f"{ptr!r} is not the start of {kind} memory")
        if not region.live:
            return _error(call, ACL_ERROR_INVALID_PARAM, f"{ptr:#x} freed twice")
        users = [h for h, (p, s) in _S.buffers.items() if region.base <= p < region.base + region.size]
        if users:
            return _error(call, ACL_ERROR_INVALID_PARAM, f"{ptr:#x} still used by data buffer(s) {[hex(u) for u in users]} (destroy_data_buffer first)")
        region.live = False
        region.data = b""
        return ACL_SUCCESS

    @staticmethod
    def free(ptr: int) -> int:
        return rt._free("acl.rt.free", ptr, "device")

    @staticmethod
    def free_host(ptr: int) -> int:
        return rt._free("acl.rt.free_host", ptr, "host")

    @staticmethod
    def memcpy(dst: int, dst_size: int, src: int, count: int, kind: int) -> int:
        call = "acl.rt.memcpy"
        if (code := _enter(call)) or (code := _need_runtime(call)):
            return code
        directions = {0: ("host", "host"), 1: ("host", "device"), 2: ("device", "host"), 3: ("device", "device")}
        if kind not in directions:
            return _error(call, ACL_ERROR_INVALID_PARAM, f"kind {kind!r} is not 0-3")
        want_src, want_dst = directions[kind]
        dst_region, dst_off, code = _resolve(call, dst, "dst")
        if code:
            return code
        src_region, src_off, code = _resolve(call, src, "src")
        if code:
            return code
        src_kind = "host" if src_region.kind in ("pybytes", "numpy") else src_region.kind
        if _S.run_mode == ACL_DEVICE:  # running on the device: every buffer is device memory
            if kind != 3:
                return _error(call, ACL_ERROR_INVALID_PARAM, f"kind {kind} on ACL_DEVICE: the program runs on the device, copy with kind 3 (device->device)")
        elif src_kind != want_src or dst_region.kind != want_dst:
            return _error(call, ACL_ERROR_INVALID_PARAM,
                          f"kind {kind} copies {want_src}->{want_dst} but src is {src_region.kind} and dst is {dst_region.kind} memory")
        if count < 0 or count > dst_size:
            return _error(call, ACL_ERROR_INVALID_PARAM, f"count {count} exceeds dst_size {dst_size}")
        if dst_size > dst_region.size - dst_off:
            return _error(call, ACL_ERROR_INVALID_PARAM, f"dst_size {dst_size} exceeds the {dst_region.size - dst_off} bytes allocated at dst")
        if count > src_region.size - src_off:
            return _error(call, ACL_ERROR_INVALID_PARAM, f"count {count} reads past the {src_region.size - src_off} bytes at src")
        dst_region.data[dst_off:dst_off + count] = src_region.data[src_off:src_off + count]
        return ACL_SUCCESS


# ---------------------------------------------------------------- acl.util
def _register_host(kind: str, data: Any) -> int:
    ptr = _alloc(kind, data)
    _S.pybytes.append(ptr)
    while len(_S.pybytes) > BYTES_TO_PTR_KEEP:
        old = _S.regions[_S.pybytes.pop(0)]
        old.live, old.data = False, b""
    return ptr


def _read_host(call: str, ptr: int, size: int) -> bytes:
    region, offset, code = _resolve(call, ptr, "pointer")
    if code:
        raise SimulatedCrash(_S.errors[-1])
    if region.kind == "device" and _S.run_mode != ACL_DEVICE:
        _error(call, ACL_ERROR_INVALID_PARAM, f"{ptr:#x} is device memory: copy it to host memory first")
        raise SimulatedCrash(_S.errors[-1])
    if size > region.size - offset:
        _error(call, ACL_ERROR_INVALID_PARAM, f"size {size} reads past the {region.size - offset} bytes at {ptr:#x}")
        raise SimulatedCrash(_S.errors[-1])
    return bytes(region.data[offset:offset + size])


class _Cann6Util:
    """acl.util of CANN >= 6.0.1: bytes_to_ptr / ptr_to_bytes (no numpy_to_ptr)."""

    @staticmethod
    def bytes_to_ptr(data: bytes) -> int:
        """A pointer to ``data``'s buffer; valid while the bytes object lives (here: for the next
        ``BYTES_TO_PTR_KEEP`` registrations)."""
        _S.calls.append("acl.util.bytes_to_ptr")
        if not isinstance(data, (bytes, bytearray)) or not data:
            raise TypeError("bytes_to_ptr needs a non-empty bytes object")
        return _register_host("pybytes", bytes(data))

    @staticmethod
    def ptr_to_bytes(ptr: int, size: int) -> bytes:
        _S.calls.append("acl.util.ptr_to_bytes")
        return _read_host("acl.util.ptr_to_bytes", ptr, size)


class _Cann5Util:
    """acl.util of CANN 5.x (the recipe's): numpy_to_ptr / ptr_to_numpy (no bytes_to_ptr)."""

    @staticmethod
    def numpy_to_ptr(array: np.ndarray) -> int:
        _S.calls.append("acl.util.numpy_to_ptr")
        if not isinstance(array, np.ndarray) or not array.size:
            raise TypeError("numpy_to_ptr needs a non-empty numpy array")
        if not array.flags["C_CONTIGUOUS"] or not array.flags["OWNDATA"]:
            raise SimulatedCrash("numpy_to_ptr on a view or a non-contiguous array: undefined behaviour in pyacl")
        return _register_host("numpy", array.tobytes())

    @staticmethod
    def ptr_to_numpy(ptr: int, shape: tuple, npy_type: int) -> np.ndarray:
        _S.calls.append("acl.util.ptr_to_numpy")
        if npy_type not in _NPY_TYPES:
            raise TypeError(f"ptr_to_numpy: numpy type number {npy_type} is not simulated ({sorted(_NPY_TYPES)})")
        dtype = np.dtype(_NPY_TYPES[npy_type])
        size = int(np.prod(shape)) * dtype.itemsize
        return np.frombuffer(_read_host("acl.util.ptr_to_numpy", ptr, size), dtype=dtype).reshape(shape)


util = _Cann6Util


# ---------------------------------------------------------------- acl.mdl
def _model_of_desc(call: str, desc: int) -> tuple[_Model | None, int]:
    if desc not in _S.descs:
        return None, _error(call, ACL_ERROR_INVALID_PARAM, f"model desc {desc!r} does not exist")
    model_id = _S.descs[desc]
    if model_id is None or model_id not in _S.models:
        return None, _error(call, ACL_ERROR_INVALID_PARAM, "model desc is empty or its model was unloaded (acl.mdl.get_desc first)")
    return _S.models[model_id], ACL_SUCCESS


def _dims(name: str, dims: list[int]) -> dict:
    return {"name": name, "dimCount": len(dims), "dims": list(dims)}


def _weights_to_fp16(onnx_bytes: bytes) -> bytes:
    """The ONNX model with every float32 initializer rounded to float16 (and stored as float32)."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load_from_string(onnx_bytes)
    for init in model.graph.initializer:
        if init.data_type == onnx.TensorProto.FLOAT:
            rounded = numpy_helper.to_array(init).astype(np.float16).astype(np.float32)
            init.CopyFrom(numpy_helper.from_array(rounded, init.name))
    return model.SerializeToString()


def _load_model(path: str) -> _Model:
    import onnxruntime as ort

    header, onnx_bytes = read_om(path)
    fp16 = header.get("precision", "force_fp16") in FP16_PRECISIONS
    if fp16:
        onnx_bytes = _weights_to_fp16(onnx_bytes)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(onnx_bytes, options, providers=["CPUExecutionProvider"])
    dims = header["input_shape"]
    gears = header["batch_gears"]
    static_batch = None if gears else int(dims[0])
    batch = max(gears) if gears else static_batch
    onnx_output = session.get_outputs()[0].name
    probe = np.zeros([batch, *dims[1:]], dtype=np.float32)
    out = session.run([onnx_output], {header["input_name"]: probe})[0]
    out_dtype = np.dtype(np.float16 if header["output_type"] == "FP16" else np.float32)
    return _Model(path, header, session, header["input_name"], onnx_output, list(dims[1:]), gears, static_batch,
                  list(out.shape), out_dtype, list(out.shape), fp16=fp16)


class mdl:  # noqa: N801
    @staticmethod
    def load_from_file(path: str) -> tuple[int, int]:
        call = "acl.mdl.load_from_file"
        if (code := _enter(call)) or (code := _need_runtime(call)):
            return 0, code
        try:
            model = _load_model(path)
        except FileNotFoundError:
            return 0, _error(call, ACL_ERROR_READ_MODEL_FAILURE, f"cannot read {path}")
        except (NotAFakeOm, KeyError, ValueError) as exc:
            return 0, _error(call, ACL_ERROR_PARSE_MODEL, f"cannot parse {path}: {exc}")
        if model.header.get("soc_version") != _S.soc_name:
            return 0, _error(call, ACL_ERROR_PARSE_MODEL, f"{path} was built for {model.header.get('soc_version')}, this chip is {_S.soc_name}")
        model_id = next(_S.model_ids)
        _S.models[model_id] = model
        return model_id, ACL_SUCCESS

    @staticmethod
    def unload(model_id: int) -> int:
        call = "acl.mdl.unload"
        if code := _enter(call):
            return code
        if model_id not in _S.models:
            return _error(call, ACL_ERROR_INVALID_MODEL_ID, f"model {model_id!r} is not loaded")
        del _S.models[model_id]
        return ACL_SUCCESS

    @staticmethod
    def create_desc() -> int:
        _S.calls.append("acl.mdl.create_desc")
        handle = next(_S.handles)
        _S.descs[handle] = None
        return handle

    @staticmethod
    def destroy_desc(desc: int) -> int:
        call = "acl.mdl.destroy_desc"
        if code := _enter(call):
            return code
        if desc not in _S.descs:
            return _error(call, ACL_ERROR_INVALID_PARAM, f"model desc {desc!r} does not exist (destroyed twice?)")
        del _S.descs[desc]
        return ACL_SUCCESS

    @staticmethod
    def get_desc(desc: int, model_id: int) -> int:
        call = "acl.mdl.get_desc"
        if code := _enter(call):
            return code
        if desc not in _S.descs:
            return _error(call, ACL_ERROR_INVALID_PARAM, f"model desc {desc!r} does not exist")
        if model_id not in _S.models:
            return _error(call, ACL_ERROR_INVALID_MODEL_ID, f"model {model_id!r} is not loaded")
        _S.descs[desc] = model_id
        return ACL_SUCCESS

    @staticmethod
    def get_num_inputs(desc: int) -> int:
        model, code = _model_of_desc("acl.mdl.get_num_inputs", desc)
        return 0 if code else (2 if model.dynamic else 1)

    @staticmethod
    def get_num_outputs(desc: int) -> int:
        model, code = _model_of_desc("acl.mdl.get_num_outputs", desc)
        return 0 if code else 1

    @staticmethod
    def get_input_name_by_index(desc: int, index: int) -> str:
        model, code = _model_of_desc("acl.mdl.get_input_name_by_index", desc)
        if code or index not in ((0, 1) if model.dynamic else (0,)):
            return ""
        return model.onnx_input if index == 0 else DYNAMIC_BATCH_INPUT

    @staticmethod
    def get_input_index_by_name(desc: int, name: str) -> tuple[int, int]:
        call = "acl.mdl.get_input_index_by_name"
        if code := _enter(call):
            return 0, code
        model, code = _model_of_desc(call, desc)
        if code:
            return 0, code
        if name == model.onnx_input:
            return 0, ACL_SUCCESS
        if name == DYNAMIC_BATCH_INPUT and model.dynamic:
            return 1, ACL_SUCCESS
        return 0, _error(call, ACL_ERROR_INVALID_PARAM, f"the model has no input named {name!r}")

    @staticmethod
    def get_input_size_by_index(desc: int, index: int) -> int:
        model, code = _model_of_desc("acl.mdl.get_input_size_by_index", desc)
        if code:
            return 0
        if index == 0:
            return model.input_size(model.max_batch)
        return DYNAMIC_BATCH_INPUT_SIZE if (model.dynamic and index == 1) else 0

    @staticmethod
    def get_output_size_by_index(desc: int, index: int) -> int:
        model, code = _model_of_desc("acl.mdl.get_output_size_by_index", desc)
        return 0 if code or index != 0 else model.output_size(model.max_batch)

    @staticmethod
    def get_input_dims(desc: int, index: int) -> tuple[dict, int]:
        call = "acl.mdl.get_input_dims"
        model, code = _model_of_desc(call, desc)
        if code:
            return {}, code
        if index == 0:
            return _dims(model.onnx_input, [-1 if model.dynamic else model.static_batch, *model.frames_dims]), ACL_SUCCESS
        if model.dynamic and index == 1:
            return _dims(DYNAMIC_BATCH_INPUT, [1]), ACL_SUCCESS
        return {}, _error(call, ACL_ERROR_INVALID_PARAM, f"input index {index} out of range")

    @staticmethod
    def get_output_dims(desc: int, index: int) -> tuple[dict, int]:
        call = "acl.mdl.get_output_dims"
        model, code = _model_of_desc(call, desc)
        if code:
            return {}, code
        if index != 0:
            return {}, _error(call, ACL_ERROR_INVALID_PARAM, f"output index {index} out of range")
        return _dims(model.onnx_output, model.out_dims_max), ACL_SUCCESS

    @staticmethod
    def get_cur_output_dims(desc: int, index: int) -> tuple[dict, int]:
        call = "acl.mdl.get_cur_output_dims"
        if code := _enter(call):
            return {}, code
        model, code = _model_of_desc(call, desc)
        if code:
            return {}, code
        if index != 0:
            return {}, _error(call, ACL_ERROR_INVALID_PARAM, f"output index {index} out of range")
        return _dims(model.onnx_output, model.cur_out_dims), ACL_SUCCESS

    @staticmethod
    def get_output_data_type(desc: int, index: int) -> int:
        model, code = _model_of_desc("acl.mdl.get_output_data_type", desc)
        return -1 if code or index != 0 else _NP_TO_ACL[model.out_dtype]

    @staticmethod
    def get_input_data_type(desc: int, index: int) -> int:
        model, code = _model_of_desc("acl.mdl.get_input_data_type", desc)
        if code:
            return -1
        return 0 if index == 0 else 9

    @staticmethod
    def get_dynamic_batch(desc: int) -> tuple[dict, int]:
        call = "acl.mdl.get_dynamic_batch"
        if code := _enter(call):
            return {}, code
        model, code = _model_of_desc(call, desc)
        if code:
            return {}, code
        gears = list(model.gears or [])
        return {"batchCount": len(gears), "batch": gears}, ACL_SUCCESS

    @staticmethod
    def create_dataset() -> int:
        _S.calls.append("acl.mdl.create_dataset")
        handle = next(_S.handles)
        _S.datasets[handle] = []
        return handle

    @staticmethod
    def add_dataset_buffer(dataset: int, buf: int) -> tuple[int, int]:
        call = "acl.mdl.add_dataset_buffer"
        if code := _enter(call):
            return dataset, code
        if dataset not in _S.datasets:
            return dataset, _error(call, ACL_ERROR_INVALID_PARAM, f"dataset {dataset!r} does not exist")
        if buf not in _S.buffers:
            return dataset, _error(call, ACL_ERROR_INVALID_PARAM, f"data buffer {buf!r} does not exist")
        _S.datasets[dataset].append(buf)
        return dataset, ACL_SUCCESS

    @staticmethod
    def get_dataset_num_buffers(dataset: int) -> int:
        _S.calls.append("acl.mdl.get_dataset_num_buffers")
        if dataset not in _S.datasets:
            _error("acl.mdl.get_dataset_num_buffers", ACL_ERROR_INVALID_PARAM, f"dataset {dataset!r} does not exist")
            return 0
        return len(_S.datasets[dataset])

    @staticmethod
    def get_dataset_buffer(dataset: int, index: int) -> int:
        _S.calls.append("acl.mdl.get_dataset_buffer")
        buffers = _S.datasets.get(dataset)
        if buffers is None or not 0 <= index < len(buffers):
            _error("acl.mdl.get_dataset_buffer", ACL_ERROR_INVALID_PARAM, f"no buffer {index} in dataset {dataset!r}")
            return 0
        return buffers[index]

    @staticmethod
    def destroy_dataset(dataset: int) -> int:
        call = "acl.mdl.destroy_dataset"
        if code := _enter(call):
            return code
        if dataset not in _S.datasets:
            return _error(call, ACL_ERROR_INVALID_PARAM, f"dataset {dataset!r} does not exist (destroyed twice?)")
        alive = [b for b in _S.datasets[dataset] if b in _S.buffers]
        if alive:
            _S.errors.append(f"{call}: data buffers {[hex(b) for b in alive]} not destroyed first (they leak)")
        del _S.datasets[dataset]
        return ACL_SUCCESS

    @staticmethod
    def set_dynamic_batch_size(model_id: int, dataset: int, index: int, batch: int) -> int:
        call = "acl.mdl.set_dynamic_batch_size"
        if code := _enter(call):
            return code
        model = _S.models.get(model_id)
        if model is None:
            return _error(call, ACL_ERROR_INVALID_MODEL_ID, f"model {model_id!r} is not loaded")
        if not model.dynamic:
            return _error(call, ACL_ERROR_MODEL_NOT_DYNAMIC, "the model has a static batch")
        if index != 1:
            return _error(call, ACL_ERROR_INVALID_PARAM, f"index {index} is not the {DYNAMIC_BATCH_INPUT} input (1)")
        if len(_S.datasets.get(dataset, [])) <= index:
            return _error(call, ACL_ERROR_INVALID_PARAM, f"dataset {dataset!r} has no buffer at index {index}")
        if batch not in model.gears:
            return _error(call, ACL_ERROR_INVALID_PARAM, f"batch {batch} is not a gear of the model {model.gears}")
        model.dataset_batch[dataset] = batch
        return ACL_SUCCESS

    @staticmethod
    def _run(call: str, model_id: int, in_ds: int, out_ds: int) -> int:
        if code := _need_runtime(call):
            return code
        model = _S.models.get(model_id)
        if model is None:
            return _error(call, ACL_ERROR_INVALID_MODEL_ID, f"model {model_id!r} is not loaded")
        n_inputs = 2 if model.dynamic else 1
        ins, outs = _S.datasets.get(in_ds), _S.datasets.get(out_ds)
        if ins is None or outs is None:
            return _error(call, ACL_ERROR_INVALID_PARAM, "input or output dataset does not exist")
        if len(ins) != n_inputs:
            return _error(call, ACL_ERROR_MODEL_INPUT_NOT_MATCH, f"input dataset has {len(ins)} buffers, the model {n_inputs}")
        if len(outs) != 1:
            return _error(call, ACL_ERROR_MODEL_OUTPUT_NOT_MATCH, f"output dataset has {len(outs)} buffers, the model 1")
        if model.dynamic:
            batch = model.dataset_batch.get(in_ds)
            if batch is None:
                return _error(call, ACL_ERROR_INVALID_PARAM, "dynamic-batch model: acl.mdl.set_dynamic_batch_size not called on this dataset")
        else:
            batch = model.static_batch
        regions = []
        for what, buf, need in (("input", ins[0], model.input_size(batch)), ("output", outs[0], model.output_size(batch))):
            if buf not in _S.buffers:
                return _error(call, ACL_ERROR_INVALID_PARAM, f"{what} data buffer {buf:#x} was destroyed")
            ptr, size = _S.buffers[buf]
            region, offset, code = _resolve(call, ptr, f"{what} buffer address")
            if code:
                return code
            if region.kind != "device":
                return _error(call, ACL_ERROR_INVALID_PARAM, f"{what} buffer is {region.kind} memory, not device memory")
            if size < need:
                return _error(call, ACL_ERROR_INVALID_PARAM, f"{what} buffer has {size} bytes, batch {batch} needs {need}")
            regions.append((region, offset))
        (in_region, in_off), (out_region, out_off) = regions
        n_in = model.input_size(batch)
        x = np.frombuffer(bytes(in_region.data[in_off:in_off + n_in]), dtype=np.float32).reshape(batch, *model.frames_dims)
        y = model.compute(x)
        raw = y.tobytes()
        out_region.data[out_off:out_off + len(raw)] = raw
        model.cur_out_dims = list(y.shape)
        return ACL_SUCCESS

    @staticmethod
    def execute(model_id: int, in_ds: int, out_ds: int) -> int:
        if code := _enter("acl.mdl.execute"):
            return code
        return mdl._run("acl.mdl.execute", model_id, in_ds, out_ds)

    @staticmethod
    def execute_async(model_id: int, in_ds: int, out_ds: int, stream: int) -> int:
        call = "acl.mdl.execute_async"
        if code := _enter(call):
            return code
        if stream not in _S.streams:
            return _error(call, ACL_ERROR_INVALID_PARAM, f"stream {stream!r} does not exist")
        code = mdl._run(call, model_id, in_ds, out_ds)
        if not code:
            _S.pending_streams.add(stream)
        return code

