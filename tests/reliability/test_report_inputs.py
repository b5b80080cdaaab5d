"""Catalogue: ``python -m lstm_exp.report`` when there is nothing to report. Exit status 2, one
``lstm_exp.report: error: ...`` line, no traceback, and reading never creates a store."""
from __future__ import annotations

import subprocess
import sys

import pytest

from catalogue import assert_tool_error, cli_env


def report(cwd, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lstm_exp.report", *args], cwd=cwd, env=cli_env(),
                          capture_output=True, text=True, timeout=300)


def assert_one_line(proc: subprocess.CompletedProcess, *names: str) -> str:
    return assert_tool_error(proc, "lstm_exp.report: error: ", *names)


def test_no_store_here_creates_none(tmp_path):
    assert_one_line(report(tmp_path), str(tmp_path / "mlflow.db"))
    assert not (tmp_path / "mlflow.db").exists()


@pytest.mark.parametrize("args,named", [(("--experiment", "no_such_experiment"), "no sweep in experiment 'no_such_experiment'"),
                                        (("--sweep", "0123456789abcdef"), "no run 0123456789abcdef")],
                         ids=["no-sweep-yet", "unknown-sweep-id"])
def test_a_store_without_that_sweep(workspace, args, named):
    workspace.snapshot()
    assert_one_line(report(workspace.root, *args), named)
    workspace.assert_earlier_outputs_intact()
