"""The ``scenario`` group: how a job presents the split to its backend and what it measures.

``offline_batches`` (the default) is the guide's loop: fixed batches back to back, timed per
batch (``lstm_exp.evaluate``; its batching and timing plan are the ``infer`` group's).  The four
others are MLPerf Inference's scenarios, driven by MLCommons LoadGen (``mlperf_loadgen``):

* ``single_stream``: one utterance at a time, the next when the previous answered: p90 latency;
* ``multi_stream``: ``samples_per_query`` utterances per query, back to back: p99 latency;
* ``server``: queries arrive Poisson-distributed at ``target_qps``; p99 against ``latency_bound_ms``;
* ``offline``: every utterance at once: samples per second.

``mode``: ``both`` (an accuracy run, whose ``mlperf_log_accuracy.json`` gives PER/CER, then a
performance run), ``performance`` or ``accuracy``.  LoadGen's minimums are small by default
(``min_duration_ms``, ``min_query_count``: seconds, for a laptop and CI); ``mlperf_rules=true``
takes LoadGen's own ``mlperf.conf`` for the RNN-T model instead (600 s, the official query counts,
early stopping) and tags the run ``lstm_exp.mlperf_rules=true``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from lstm_exp.errors import ConfigError

#: scenario names (configs/scenario/<name>.yaml; lstm_exp/scenarios/<name>.py)
SCENARIOS = ("offline_batches", "single_stream", "multi_stream", "server", "offline")
#: the scenarios LoadGen drives
LOADGEN_SCENARIOS = SCENARIOS[1:]
MODES = ("both", "performance", "accuracy")


@dataclass
class ScenarioConfig:
    """One scenario's settings (the LoadGen ones are ignored by ``offline_batches``)."""

    name: str = "offline_batches"
    #: both (accuracy run for PER/CER, then performance run) | performance | accuracy
    mode: str = "both"
    #: server: the p99 latency a query must meet (MLPerf's RNN-T bound: 1000 ms)
    latency_bound_ms: float = 1000.0
    #: server: scheduled queries per second (Poisson arrivals); offline: LoadGen's expected QPS,
    #: which sizes its one query (expected_qps x min_duration, at least min_query_count samples)
    target_qps: float = 20.0
    #: server and offline: how long the batcher waits for more arrivals before it runs a batch
    #: smaller than ``batch`` (dynamic batching; single_stream runs every utterance alone)
    batch_timeout_ms: float = 5.0
    #: multi_stream: utterances per query (MLPerf: 8)
    samples_per_query: int = 8
    #: LoadGen runs at least this long ... (MLPerf's rules: 600000)
    min_duration_ms: int = 2000
    #: ... and at least this many queries (64: LoadGen's floor for a p90 claim; 662 for p99)
    min_query_count: int = 64
    #: LoadGen stops issuing after this long (null: no cap)
    max_duration_ms: Optional[int] = 60000
    #: true: LoadGen's own mlperf.conf for rnnt (600 s minimum, early stopping); tagged on the run
    mlperf_rules: bool = False

    def __post_init__(self) -> None:
        if self.name not in SCENARIOS:
            raise ConfigError(f"scenario.name={self.name!r} is not a scenario: write scenario=<one of "
                              f"{', '.join(SCENARIOS)}>")
        if self.mode not in MODES:
            raise ConfigError(f"scenario.mode={self.mode!r}: write one of {', '.join(MODES)}")
        for name in ("latency_bound_ms", "target_qps"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"scenario.{name}={getattr(self, name)} must be > 0: e.g. "
                                  f"scenario.{name}={getattr(ScenarioConfig, name):g}")
        if self.batch_timeout_ms < 0:
            raise ConfigError(f"scenario.batch_timeout_ms={self.batch_timeout_ms} must be >= 0 (0: run what has arrived)")
        for name in ("samples_per_query", "min_query_count"):
            if getattr(self, name) < 1:
                raise ConfigError(f"scenario.{name}={getattr(self, name)} must be >= 1")
        if self.min_duration_ms < 0:
            raise ConfigError(f"scenario.min_duration_ms={self.min_duration_ms} must be >= 0")
        if self.max_duration_ms is not None and self.max_duration_ms < self.min_duration_ms:
            raise ConfigError(f"scenario.max_duration_ms={self.max_duration_ms} is below scenario.min_duration_ms="
                              f"{self.min_duration_ms}: write a cap >= min_duration_ms, or null (no cap)")

    @property
    def loadgen(self) -> bool:
        """Whether LoadGen drives this scenario."""
        return self.name in LOADGEN_SCENARIOS
