"""``server``: MLPerf's Server through LoadGen, one-utterance queries arriving Poisson-distributed
at ``scenario.target_qps``; the results are the scheduled and completed rates
(``loadgen_scheduled_qps``, ``loadgen_samples_s``), p99 latency and whether it met
``scenario.latency_bound_ms`` (``loadgen_bound_met``).  The batcher groups arrivals by length into
batches of up to ``batch``, waiting at most ``scenario.batch_timeout_ms`` for more (dynamic
batching), so its PER is its own: it depends on which arrivals shared a batch."""
from __future__ import annotations

from lstm_exp.scenarios.loadgen import LoadGenScenario


class Server(LoadGenScenario):
    name = "server"

    def timeout_s(self) -> float:
        return self.config.batch_timeout_ms / 1e3
