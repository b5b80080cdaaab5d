"""Worker processes for the data stages (feature extraction, corpus synthesis)."""
from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
from multiprocessing.context import BaseContext
from typing import Optional


def process_context(method: str) -> BaseContext:
    """The ``multiprocessing`` context ``method`` (``spawn``, ``forkserver``), usable also inside a
    process that another library started with its own start method.

    A job of a ``hydra/launcher=parallel`` sweep runs in a joblib (loky) worker whose default
    start method is ``loky``. Children started by ``spawn`` or ``forkserver`` are told the
    parent's default start method and fail at start-up when it is one they do not know
    (``ValueError: cannot find context for 'loky'``), so an unknown default is replaced by
    ``method`` first.
    """
    current = multiprocessing.get_start_method(allow_none=True)
    if current is not None and current not in multiprocessing.get_all_start_methods():
        multiprocessing.set_start_method(method, force=True)
    return multiprocessing.get_context(method)


def die_with_parent(parent: Optional[int] = None) -> None:
    """Worker initializer: on Linux, ask the kernel to SIGKILL this worker when the process that
    started it dies, however that dies (SIGKILL, the OOM killer, a scheduler's hard kill).

    Without it, a worker of a pool whose job was killed outright waits forever: it holds both
    ends of the pool's pipes itself, so it never sees the end of its input, and the feature
    workers also block SIGINT/SIGTERM (:mod:`lstm_exp.data.features`). Elsewhere a no-op.
    ``parent``: the pid of the process that started the worker (``initargs=(os.getpid(),)``),
    to catch a parent that died before the request took effect; None: the worker exits if it
    has already been handed to init.
    """
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        prctl = libc.prctl
    except (OSError, AttributeError):  # not Linux (no prctl)
        return
    pr_set_pdeathsig = 1
    if prctl(pr_set_pdeathsig, int(signal.SIGKILL), 0, 0, 0) != 0:
        return
    orphaned = os.getppid() != parent if parent is not None else os.getppid() == 1
    if orphaned:  # the parent died before the request took effect
        os._exit(1)
