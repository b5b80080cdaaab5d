"""``multi_stream``: MLPerf's MultiStream through LoadGen, ``scenario.samples_per_query``
utterances per query, the next query when the last answered; the headline is p99 query latency
(``loadgen_p99_ms``).  A query arrives whole, so its utterances are cut at once into batches of up
to ``batch`` grouped by length (each padded to its longest, or to ``infer.pad_to``)."""
from __future__ import annotations

from lstm_exp.scenarios.loadgen import LoadGenScenario


class MultiStream(LoadGenScenario):
    name = "multi_stream"
