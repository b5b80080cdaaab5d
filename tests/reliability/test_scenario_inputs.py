"""Catalogue cases of issue 23 (docs/RELIABILITY.md): scenario settings that cannot work fail the
run with one line naming the value and what to write; an unknown scenario is Hydra's refusal,
listing the scenarios, before any run."""
from __future__ import annotations

import pytest

from tests.reliability.catalogue import SMOKE


@pytest.mark.parametrize("overrides, named", [
    (("scenario=server", "scenario.latency_bound_ms=0"), "scenario.latency_bound_ms=0.0 must be > 0"),
    (("scenario=server", "scenario.target_qps=-5"), "scenario.target_qps=-5.0 must be > 0"),
    (("scenario=single_stream", "scenario.name=streaming"), "scenario.name='streaming' is not a scenario"),
    (("scenario=offline", "infer.parity=true"), "infer.parity=true is measured by scenario=offline_batches only"),
])
def test_an_impossible_scenario_setting_fails_the_run_naming_it(workspace, overrides, named):
    proc = workspace.run(*SMOKE, *overrides)
    workspace.assert_user_error(proc, named)


def test_an_unknown_scenario_is_refused_before_any_run(workspace):
    proc = workspace.run(*SMOKE, "scenario=streaming")
    workspace.assert_config_rejected(proc, "scenario/streaming", "single_stream")
