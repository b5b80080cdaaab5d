"""One ACL lifetime per process: ``acl.init`` once, devices and contexts reused, ``acl.finalize`` at exit.

A ``-m`` sweep runs its jobs in one process.  pyacl's documentation describes ``acl.finalize``
(which waits up to about 2 s to flush logs) as the end of the process's use of ACL and nothing
documents initialising again after it, so the pyacl backend must not go init -> finalize ->
init per job.  As mmdeploy's Ascend wrapper does, :func:`acquire` initialises ACL the first time
(an "already initialised" code, ACL_ERROR_REPEAT_INITIALIZE, counts as success and leaves
finalize to whoever initialised), opens each device and its context once and hands them out
again for later jobs; :func:`release` only counts users; :func:`shutdown`, registered with
``atexit``, destroys the contexts, resets the devices and finalises.

ais_bench (Ascend's ait/msit benchmark ``InferSession``) initialises and finalises ACL itself.
Two owners of one process-wide ACL would finalise each other's state, so :func:`claim` lets only
one of ``pyacl`` and ``ais_bench`` use ACL in a process and refuses the other with one line.
"""
from __future__ import annotations

import atexit
import logging
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, Callable

from lstm_exp.errors import LstmExpError

log = logging.getLogger(__name__)

ACL_ERROR_REPEAT_INITIALIZE = 100002
#: acl.rt.get_run_mode() values (acl_rt.h): the program runs on the device's own CPU, or on a host
ACL_DEVICE, ACL_HOST = 0, 1
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


class AclCallError(LstmExpError):
    """A pyacl call returned a non-zero error code."""


class AclLifetimeError(LstmExpError):
    """ACL cannot be used this way in this process (second owner, or after finalize)."""


def error_text(code: int) -> str:
    name = ACL_ERROR_NAMES.get(code)
    return f"{code} ({name})" if name else str(code)


@dataclass
class _ProcessState:
    owner: str | None = None  # "pyacl" | "ais_bench"
    acl: ModuleType | None = None
    initialised: bool = False
    owns_finalize: bool = False
    finalized: bool = False
    run_mode: int | None = None
    contexts: dict[int, Any] = field(default_factory=dict)  # device id -> context
    users: dict[int, int] = field(default_factory=dict)  # device id -> jobs holding it
    exit_hooks: list[Callable[[], None]] = field(default_factory=list)
    atexit_registered: bool = False


_STATE = _ProcessState()

_OWNER_HINT = {
    "pyacl": "backend.runtime=pyacl",
    "ais_bench": "backend.runtime=ais_bench",
}


def claim(owner: str) -> None:
    """Make ``owner`` (``pyacl`` or ``ais_bench``) the one user of ACL in this process."""
    if _STATE.owner not in (None, owner):
        raise AclLifetimeError(
            f"{_OWNER_HINT[owner]} cannot run in this process: {_OWNER_HINT[_STATE.owner]} already owns ACL here "
            "(each initialises and finalises ACL itself); run the two runtimes as separate commands"
        )
    _STATE.owner = owner
    _register_atexit()


def at_exit(hook: Callable[[], None]) -> None:
    """Run ``hook`` when the process ends, before pyacl's own finalize (e.g. ais_bench's finalize)."""
    if hook not in _STATE.exit_hooks:
        _STATE.exit_hooks.append(hook)
    _register_atexit()


def _register_atexit() -> None:
    if not _STATE.atexit_registered:
        atexit.register(shutdown)
        _STATE.atexit_registered = True


def _check(call: str, ret: int) -> None:
    if ret != 0:
        raise AclCallError(
            f"{call} failed with error code {error_text(ret)}; see the CANN log (export ASCEND_SLOG_PRINT_TO_STDOUT=1, or ~/ascend/log)"
        )


def acquire(acl: ModuleType, device_id: int) -> Any:
    """ACL initialised, ``device_id`` open and its context current; returns the context.

    The first call in a process runs ``acl.init``; the first call for a device runs
    ``set_device`` and ``create_context``; later calls make the existing context current.
    """
    claim("pyacl")
    if _STATE.finalized:
        raise AclLifetimeError(
            "ACL was already finalised in this process and cannot be initialised again: run the job in a new process"
        )
    if not _STATE.initialised:
        ret = acl.init()
        if ret == ACL_ERROR_REPEAT_INITIALIZE:
            _STATE.owns_finalize = False  # initialised by someone else in this process: leave finalize to them
        else:
            _check("acl.init", ret)
            _STATE.owns_finalize = True
        _STATE.acl, _STATE.initialised = acl, True
    if device_id in _STATE.contexts:
        _check("acl.rt.set_context", acl.rt.set_context(_STATE.contexts[device_id]))
    else:
        _check("acl.rt.set_device", acl.rt.set_device(device_id))
        _STATE.users.setdefault(device_id, 0)
        try:
            context, ret = acl.rt.create_context(device_id)
            _check("acl.rt.create_context", ret)
        except BaseException:
            acl.rt.reset_device(device_id)
            _STATE.users.pop(device_id, None)
            raise
        _STATE.contexts[device_id] = context
    _STATE.users[device_id] = _STATE.users.get(device_id, 0) + 1
    return _STATE.contexts[device_id]


def run_mode(acl: ModuleType) -> int:
    """``acl.rt.get_run_mode()``: ACL_DEVICE (0, the program runs on the device) or ACL_HOST (1)."""
    if _STATE.run_mode is None:
        mode, ret = acl.rt.get_run_mode()
        _check("acl.rt.get_run_mode", ret)
        if mode not in (ACL_DEVICE, ACL_HOST):
            raise AclCallError(f"acl.rt.get_run_mode returned {mode}, neither ACL_DEVICE (0) nor ACL_HOST (1)")
        _STATE.run_mode = mode
    return _STATE.run_mode


def release(device_id: int) -> None:
    """A job is done with ``device_id``; the device and its context stay open for the next one."""
    if _STATE.users.get(device_id, 0) > 0:
        _STATE.users[device_id] -= 1


def jobs_holding(device_id: int) -> int:
    return _STATE.users.get(device_id, 0)


def is_initialised() -> bool:
    return _STATE.initialised


def shutdown() -> list[str]:
    """End the process's ACL use (``atexit``): exit hooks, contexts, devices, then ``acl.finalize``.

    Returns the teardown failures (also logged); never raises, since it runs at exit.
    """
    failures: list[str] = []
    for hook in list(_STATE.exit_hooks):
        try:
            hook()
        except Exception as exc:  # noqa: BLE001 - at exit every step is attempted
            failures.append(f"exit hook {getattr(hook, '__qualname__', hook)}: {exc}")
    _STATE.exit_hooks.clear()
    acl = _STATE.acl
    if acl is not None and _STATE.initialised:
        busy = {dev: n for dev, n in _STATE.users.items() if n}
        if busy:
            failures.append(f"devices {busy} still had jobs holding them at shutdown")
        for device_id, context in list(_STATE.contexts.items()):
            for call, ret in (("acl.rt.destroy_context", acl.rt.destroy_context(context)),
                              ("acl.rt.reset_device", acl.rt.reset_device(device_id))):
                if ret != 0:
                    failures.append(f"{call}({device_id}) returned {error_text(ret)}")
        _STATE.contexts.clear()
        _STATE.users.clear()
        if _STATE.owns_finalize:
            ret = acl.finalize()
            if ret != 0:
                failures.append(f"acl.finalize returned {error_text(ret)}")
        _STATE.initialised = False
        _STATE.finalized = True
    for failure in failures:
        log.warning("ACL shutdown: %s", failure)
    return failures


def _new_process_for_tests() -> None:
    """Forget all state, as a fresh process would (tests that also reset the pyacl simulator)."""
    global _STATE
    registered = _STATE.atexit_registered
    _STATE = _ProcessState(atexit_registered=registered)
