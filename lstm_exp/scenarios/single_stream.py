"""``single_stream``: MLPerf's SingleStream through LoadGen, one utterance per query, the next
issued when the last answered; the headline is p90 latency (``loadgen_p90_ms``).  Every utterance
runs alone, padded as ``infer.batching`` pads (so its PER is the ``offline_batches`` PER at
``batch=1``), whatever ``batch`` is; nothing waits for company."""
from __future__ import annotations

from lstm_exp.scenarios.loadgen import LoadGenScenario


class SingleStream(LoadGenScenario):
    name = "single_stream"

    def max_batch(self) -> int:
        return 1
