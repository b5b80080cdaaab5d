"""Dynamic batching for the LoadGen SUT: arrivals grouped by length, up to a batch size, with a timeout.

:class:`LengthBatcher` holds the query samples LoadGen issued and not yet run.  ``next_group``
blocks until one is there, then waits until ``max_batch`` are there or ``timeout_s`` has passed
since the oldest arrived, and returns the oldest sample plus the ``max_batch - 1`` waiting ones
nearest to it in length (so each batch pads little, and no sample waits behind shorter ones for
ever).  A timeout of 0 runs what has arrived: a multi-stream query or the offline query arrives
whole, so it is cut into length-grouped batches at once.  ``close`` ends ``next_group`` (None).
"""
from __future__ import annotations

import threading
import time
from typing import Any, List, Optional, Sequence


class LengthBatcher:
    def __init__(self, lengths: Sequence[int], max_batch: int, timeout_s: float) -> None:
        self.lengths = lengths
        self.max_batch = max_batch
        self.timeout_s = timeout_s
        self._pending: List[tuple[float, Any]] = []  # (arrival, LoadGen QuerySample)
        self._ready = threading.Condition()
        self._closed = False

    def put(self, samples: Sequence[Any]) -> None:
        """Queue the samples of one ``issue_query`` call (one arrival time for all)."""
        now = time.perf_counter()
        with self._ready:
            self._pending.extend((now, sample) for sample in samples)
            self._ready.notify()

    def close(self) -> None:
        with self._ready:
            self._closed = True
            self._ready.notify_all()

    def next_group(self) -> Optional[List[Any]]:
        """The next batch's samples (oldest first), or None once closed and empty."""
        with self._ready:
            while not self._pending and not self._closed:
                self._ready.wait()
            if not self._pending:
                return None
            deadline = self._pending[0][0] + self.timeout_s
            while len(self._pending) < self.max_batch and not self._closed:
                left = deadline - time.perf_counter()
                if left <= 0:
                    break
                self._ready.wait(left)
            return self._take_group()

    def _take_group(self) -> List[Any]:
        """The oldest pending sample and the ``max_batch - 1`` pending ones closest to it in length."""
        oldest = self._pending[0][1]
        length = self.lengths[oldest.index]
        rest = sorted(range(1, len(self._pending)), key=lambda i: (abs(self.lengths[self._pending[i][1].index] - length), i))
        chosen = sorted([0, *rest[: self.max_batch - 1]])
        group = [self._pending[i][1] for i in chosen]
        for i in reversed(chosen):
            del self._pending[i]
        return group
