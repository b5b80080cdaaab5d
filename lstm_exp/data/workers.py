"""Worker processes for the data stages (feature extraction, corpus synthesis)."""
from __future__ import annotations

import multiprocessing
from multiprocessing.context import BaseContext


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
