"""A simulator of ``ais_bench.infer.interface.InferSession``, for tests only.

It runs on the pyacl simulator (``tests/acl_sim/acl.py``) the way the real one runs on
libascendcl: the first session of a process calls ``acl.init`` (the session owns the ACL
lifetime), each session opens its device and context and loads the OM; ``free_resource``
releases model, context and device; ``InferSession.finalize()`` calls ``acl.finalize``.

The API follows ais_bench: ``get_inputs()`` / ``get_outputs()`` (descs with ``name``,
``shape`` (-1 for a dynamic batch), ``datatype``, ``size``), ``infer(feeds, mode)`` with
``mode`` ``"static"`` (feed shapes must equal the model's) or ``"dymbatch"`` (the batch must be a
gear), returning a list of numpy arrays; ``summary().exec_time_list`` of ``(start_ms, end_ms)``
pairs, one per run, and ``reset_summaryinfo()``.  Wrong use raises ``RuntimeError`` as
ais_bench does.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from types import SimpleNamespace

import numpy as np

import acl


@dataclass
class _Summary:
    exec_time_list: list = field(default_factory=list)


class InferSession:
    _acl_initialised = False

    def __init__(self, device_id: int, model_path: str, acl_json_path: str | None = None, debug: bool = False, loop: int = 1) -> None:
        self.device_id = device_id
        self.model_path = model_path
        if not InferSession._acl_initialised:
            ret = acl.init()
            if ret != 0:
                raise RuntimeError(f"acl init failed ret={ret}")
            InferSession._acl_initialised = True
        if acl.rt.set_device(device_id) != 0:
            raise RuntimeError(f"open device {device_id} failed")
        self._context, ret = acl.rt.create_context(device_id)
        if ret != 0:
            raise RuntimeError(f"create context failed ret={ret}")
        self._model_id, ret = acl.mdl.load_from_file(model_path)
        if ret != 0:
            acl.rt.destroy_context(self._context)
            acl.rt.reset_device(device_id)
            raise RuntimeError(f"load model {model_path} failed ret={ret}")
        self._model = acl._S.models[self._model_id]
        self._summary = _Summary()
        self._freed = False

    def get_inputs(self):
        model = self._model
        batch = -1 if model.dynamic else model.static_batch
        shape = [batch, *model.frames_dims]
        return [SimpleNamespace(name=model.onnx_input, shape=shape, datatype="FLOAT32", size=model.input_size(model.max_batch))]

    def get_outputs(self):
        model = self._model
        return [SimpleNamespace(name=model.onnx_output, shape=list(model.out_dims_max), datatype="FLOAT32",
                                size=model.output_size(model.max_batch))]

    def infer(self, feeds, mode: str = "static", custom_sizes: int = 100000, out_array: bool = True):
        if self._freed:
            raise RuntimeError("session resources were freed")
        model = self._model
        if mode not in ("static", "dymbatch", "dymhw", "dymdims", "dymshape"):
            raise RuntimeError(f"wrong infer_mode:{mode}")
        if len(feeds) != 1:
            raise RuntimeError("input datas and intensors nums not matched!")
        x = np.ascontiguousarray(feeds[0])
        if x.dtype != np.float32:
            raise RuntimeError(f"input dtype {x.dtype} does not match the model's float32")
        if list(x.shape[1:]) != list(model.frames_dims):
            raise RuntimeError("input datas and intensors dim not matched!")
        if mode == "static":
            if model.dynamic or x.shape[0] != model.static_batch:
                raise RuntimeError("input datas and intensors dim not matched!")
        elif mode == "dymbatch":
            if not model.dynamic:
                raise RuntimeError("not a dymbatch model!")
            if x.shape[0] not in model.gears:
                raise RuntimeError(f"dymbatch {x.shape[0]} is not a gear of the model {model.gears}")
        else:
            raise RuntimeError(f"infer_mode {mode} is not simulated")
        start = time.perf_counter() * 1000.0
        y = model.compute(x)
        end = time.perf_counter() * 1000.0
        self._summary.exec_time_list.append((start, end))
        return [y]

    def summary(self):
        return self._summary

    def reset_summaryinfo(self):
        self._summary.exec_time_list.clear()

    def free_resource(self):
        if self._freed:
            return
        self._freed = True
        for call, ret in (("unload", acl.mdl.unload(self._model_id)), ("destroy_context", acl.rt.destroy_context(self._context)),
                          ("reset_device", acl.rt.reset_device(self.device_id))):
            if ret != 0:
                raise RuntimeError(f"{call} failed ret={ret}")

    @staticmethod
    def finalize():
        if InferSession._acl_initialised:
            InferSession._acl_initialised = False
            acl.finalize()
