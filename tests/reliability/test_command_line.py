"""Catalogue, the command line (docs/RELIABILITY.md, "The command line"): what
``lstm_exp.cli_args`` checks or mends before Hydra composes anything."""
from __future__ import annotations

from catalogue import SMOKE


def test_a_misspelt_group_says_which_name_was_meant(workspace):
    proc = workspace.run(*SMOKE, "bakend=torch")
    line = workspace.assert_refused_before_any_run(proc, "bakend=torch", "did you mean backend?")
    assert "write backend=torch" in line


def test_an_unknown_name_without_a_close_one_lists_the_groups_and_keys(workspace):
    proc = workspace.run(*SMOKE, "no_such_key=1")
    line = workspace.assert_refused_before_any_run(proc, "no_such_key=1")
    assert "did you mean" not in line and "groups: backend, data" in line


def test_overrides_after_the_multirun_flag_are_taken(workspace):
    """``-m`` before an override (Hydra's argparse said only 'unrecognized arguments')."""
    folder = workspace.root / "multirun" / "overrides-after-m"
    proc = workspace.run(*SMOKE, "-m", "batch=4", f"hydra.sweep.dir={folder}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "unrecognized arguments" not in proc.stderr
    (job,) = [p for p in folder.iterdir() if p.is_dir() and p.name.startswith("0_")]
    assert "batch=4" in job.name
    workspace.assert_earlier_outputs_intact()
