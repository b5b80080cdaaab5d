"""``offline``: MLPerf's Offline through LoadGen, every sample in one query; the headline is
samples per second (``loadgen_samples_s``).  The query arrives whole, so the batcher cuts it at
once into batches of ``batch`` grouped by length (each padded to its longest, or ``infer.pad_to``).
``scenario.target_qps`` is LoadGen's expected QPS, which sizes the query."""
from __future__ import annotations

from lstm_exp.scenarios.loadgen import LoadGenScenario


class Offline(LoadGenScenario):
    name = "offline"
