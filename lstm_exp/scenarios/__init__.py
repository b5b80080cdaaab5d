"""Scenarios: how a job presents its split to the backend, and what it measures (``scenario=``).

``offline_batches`` (default, :mod:`.offline_batches`): the guide's loop of fixed batches.
LoadGen-driven (:mod:`.loadgen`, MLCommons ``mlperf_loadgen``): :mod:`.single_stream` (p90),
:mod:`.multi_stream` (p99), :mod:`.server` (QPS at a p99 bound), :mod:`.offline` (samples/s).

    scenario = scenario_class(exp.scenario.name)(exp.scenario, job)   # job: base.ScenarioJob
    result = scenario.run(backend)                                    # an EvaluationResult

Scenarios use only the Backend interface (``load``, ``run``, ``warmup``), so each runs on every
backend.  This package never imports :mod:`lstm_exp.evaluate` at import time (evaluate imports it).
"""
from __future__ import annotations

from importlib import import_module

from lstm_exp.scenarios.base import Scenario, ScenarioJob

#: scenario.name -> "module:Class" (conf_schemas.scenario.SCENARIOS lists the same names)
REGISTRY = {
    "offline_batches": "offline_batches:OfflineBatches",
    "single_stream": "single_stream:SingleStream",
    "multi_stream": "multi_stream:MultiStream",
    "server": "server:Server",
    "offline": "offline:Offline",
}


def scenario_class(name: str) -> type:
    """The class implementing ``scenario.name`` (LoadGen is imported only by those that use it)."""
    from lstm_exp.errors import ConfigError

    if name not in REGISTRY:
        raise ConfigError(f"scenario={name!r} is not a scenario: write one of {', '.join(REGISTRY)}")
    module, cls = REGISTRY[name].split(":")
    return getattr(import_module(f"lstm_exp.scenarios.{module}"), cls)


__all__ = ["REGISTRY", "Scenario", "ScenarioJob", "scenario_class"]
