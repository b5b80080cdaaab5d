"""The LoadGen system under test over any backend, and the query sample library over the split.

:class:`BackendSUT`: LoadGen's ``issue_query`` hands query samples to a
:class:`~lstm_exp.scenarios.batcher.LengthBatcher`; one worker thread takes batches from it, pads
them (``pad_to`` frames, or the batch's longest; with a static artefact, an OM, zero rows up to its
batch too), runs ``Backend.run`` and answers every sample
with its log-probs ``float32 [T'_valid, C]`` (the valid frames only, C-contiguous), which LoadGen
copies into ``mlperf_log_accuracy.json`` in accuracy mode.  Each batch is a row of ``timings``
(utterances, ``infer_ms`` from the backend, ``e2e_ms`` around ``run``, ``queue_ms``: how long its
oldest sample waited).  A backend error is kept (``error``) and every sample still answered
(empty), so LoadGen ends; the caller raises it after the test.

The QSL: the split's features are in memory before the test starts (``load_split``), so LoadGen's
load / unload callbacks have nothing to do.
"""
from __future__ import annotations

import threading
import time
from typing import Any, Callable, List, Optional, Sequence

import numpy as np

from lstm_exp.backends.base import Backend
from lstm_exp.data.batching import Example, make_batches
from lstm_exp.scenarios.batcher import LengthBatcher


class BackendSUT:
    def __init__(self, backend: Backend, examples: Sequence[Example], batcher: LengthBatcher, pad_to: Optional[int],
                 output_lengths: Callable[[np.ndarray], np.ndarray], check: Callable[[Any, np.ndarray], None],
                 static_batch: Optional[int] = None) -> None:
        self.backend = backend
        self.examples = examples
        self.batcher = batcher
        self.pad_to = pad_to
        self.output_lengths = output_lengths
        self.check = check
        self.static_batch = static_batch
        self.timings: List[dict] = []
        #: the sample indices answered, in order (a sample LoadGen issued twice is here twice)
        self.answered: List[int] = []
        self.error: Optional[BaseException] = None
        self._worker = threading.Thread(target=self._serve, name="lstm_exp-sut", daemon=True)

    # -- LoadGen's callbacks -----------------------------------------------------------------
    def issue_query(self, samples: Sequence[Any]) -> None:
        self.batcher.put(samples)

    def flush_queries(self) -> None:
        """Nothing is held back beyond the batcher's timeout."""

    # -- the worker --------------------------------------------------------------------------
    def start(self) -> None:
        self._worker.start()

    def stop(self) -> None:
        self.batcher.close()
        self._worker.join()

    def _serve(self) -> None:
        while True:
            group = self.batcher.next_group()
            if group is None:
                return
            self._answer(group)

    def _answer(self, group: List[Any]) -> None:
        import mlperf_loadgen as lg

        if self.error is not None:
            lg.QuerySamplesComplete([lg.QuerySampleResponse(s.id, 0, 0) for s in group])
            return
        try:
            answers = self._run(group)
        except BaseException as exc:  # kept for the caller; LoadGen must still see every sample answered
            self.error = exc
            lg.QuerySamplesComplete([lg.QuerySampleResponse(s.id, 0, 0) for s in group])
            return
        lg.QuerySamplesComplete([lg.QuerySampleResponse(s.id, a.ctypes.data, a.nbytes) for s, a in zip(group, answers)])

    def _run(self, group: List[Any]) -> List[np.ndarray]:
        """Pad, run, cut each sample's valid frames; one ``timings`` row."""
        batch = next(make_batches([self.examples[s.index] for s in group], len(group), pad_to=self.pad_to))
        x = batch.x
        if self.static_batch and len(group) < self.static_batch:  # a static artefact (an OM) takes its batch only
            x = np.pad(x, ((0, self.static_batch - len(group)), (0, 0), (0, 0)))
        started = time.perf_counter()
        out = self.backend.run(x)
        e2e_ms = (time.perf_counter() - started) * 1e3
        log_probs = out.log_probs[:, : len(group)]
        self.check(batch, log_probs)
        lengths = np.minimum(self.output_lengths(batch.lengths), log_probs.shape[0])
        self.answered.extend(s.index for s in group)
        self.timings.append({"pass": 0, "batch": len(self.timings), "utterances": len(group), "infer_ms": out.infer_ms,
                             "e2e_ms": e2e_ms, "frames": int(batch.x.shape[1])})
        return [np.ascontiguousarray(log_probs[: int(n), i], dtype=np.float32) for i, n in enumerate(lengths)]


class SplitQSL:
    """LoadGen's query sample library: sample index i is ``examples[i]``, already in memory."""

    def __init__(self, count: int) -> None:
        self.count = count

    def load_samples(self, indices: Sequence[int]) -> None:
        """The features were loaded before the test (nothing to do)."""

    def unload_samples(self, indices: Sequence[int]) -> None:
        """They stay loaded for the job's life (nothing to do)."""
