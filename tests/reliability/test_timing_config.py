"""Catalogue cases of issue 19 (docs/RELIABILITY.md): timing and noise settings that cannot work
fail the run with one line naming the value and what to write instead."""
from __future__ import annotations

import pytest

from tests.reliability.catalogue import SMOKE


@pytest.mark.parametrize("overrides, named", [
    (("infer.min_seconds=5", "infer.max_seconds=1"), "infer.max_seconds=1.0 is below infer.min_seconds=5.0"),
    (("infer.noisy_cv=0",), "infer.noisy_cv=0.0 must be > 0"),
    (("infer.min_batches=-1",), "infer.min_batches=-1 must be >= 0"),
])
def test_an_impossible_timing_plan_fails_the_run_naming_it(workspace, overrides, named):
    proc = workspace.run(*SMOKE, *overrides)
    workspace.assert_user_error(proc, named)
