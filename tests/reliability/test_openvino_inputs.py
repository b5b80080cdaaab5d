"""Catalogue: backend=openvino's bad values and missing pieces (docs/RELIABILITY.md, "Missing
tools and runtimes"): one ``lstm_exp: error:`` line naming the value and the fix, the run FAILED,
earlier outputs intact."""
from __future__ import annotations

import pytest
from catalogue import CHECKOUT, SMOKE

from lstm_exp.backends.openvino.plugin import BF16_CPU_FLAGS, cpu_flags

pytest.importorskip("openvino")


def test_missing_openvino(workspace, tmp_path):
    # sitecustomize runs first in the job's interpreter: `import openvino` finds nothing, as without the package
    (tmp_path / "sitecustomize.py").write_text("import sys\nsys.modules['openvino'] = None\n")
    proc = workspace.run(*SMOKE, "backend=openvino", env={"PYTHONPATH": f"{tmp_path}:{CHECKOUT}"})
    line = workspace.assert_user_error(proc, "backend=openvino", "pip install -e '.[cpu]'")
    assert "needs OpenVINO" in line


@pytest.mark.parametrize("override, named", [
    ("backend.precision=fp16", "fp32, bf16"),
    ("backend.performance_hint=fast", "auto, latency, throughput"),
    ("backend.threads=-1", "backend.threads=-1"),
    ("backend.device=gpu", "backend.device='gpu'"),
])
def test_bad_openvino_value_fails_the_run_naming_it(workspace, override, named):
    proc = workspace.run(*SMOKE, "backend=openvino", override)
    workspace.assert_user_error(proc, override.split("=")[0], named)


def test_openvino_value_of_the_wrong_type_is_refused_by_hydra(workspace):
    proc = workspace.run(*SMOKE, "backend=openvino", "backend.threads=two")
    workspace.assert_config_rejected(proc, "two")


def test_bf16_on_a_cpu_without_bf16_names_the_flag(workspace):
    proc = workspace.run(*SMOKE, "backend=openvino", "backend.precision=bf16")
    if cpu_flags() & set(BF16_CPU_FLAGS):  # this CPU has them: the run finishes (PER: tests/backends/test_openvino.py)
        assert proc.returncode == 0, proc.stderr[-3000:]
        return
    line = workspace.assert_user_error(proc, "backend.precision=bf16", "avx512_bf16")
    assert "write backend.precision=fp32" in line
