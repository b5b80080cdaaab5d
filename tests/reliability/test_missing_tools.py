"""Catalogue: runtimes, tools and devices that are absent, and batches the split cannot fill
(docs/RELIABILITY.md, "Bad inputs: checkpoints, models, backends and tools")."""
from __future__ import annotations

import os
import re
from pathlib import Path

from catalogue import CHECKOUT, SMOKE

ACL_SIM = CHECKOUT / "tests" / "acl_sim"
#: the smoke corpus's dev split
DEV_UTTERANCES = 12


def acl_simulator_env() -> dict:
    """PYTHONPATH with the ACL simulator (tests/acl_sim: pyacl's `acl` module), as on an Ascend host."""
    return {"PYTHONPATH": os.pathsep.join([str(ACL_SIM), str(CHECKOUT)])}


# -- 5. a batch larger than the split ----------------------------------------------------------
def test_batch_larger_than_the_split(workspace):
    proc = workspace.run(*SMOKE, "batch=64")
    line = workspace.assert_user_error(proc, "batch=64", f"{DEV_UTTERANCES} utterances")
    assert "split dev" in line


def test_batch_larger_than_the_utterances_evaluated(workspace):
    proc = workspace.run(*SMOKE, "batch=8", "infer.max_utterances=5")
    line = workspace.assert_user_error(proc, "batch=8", "infer.max_utterances=5")
    assert "5 utterances evaluated" in line


def test_batch_larger_than_the_split_in_acls_preprocess_stage(workspace):
    proc = workspace.run(*SMOKE, "backend=acl", "stage=preprocess", "batch=64", env=acl_simulator_env())
    workspace.assert_user_error(proc, "batch=64", f"{DEV_UTTERANCES} utterances")


# -- 4. runtimes, tools and devices --------------------------------------------------------------
def test_missing_pyacl(workspace):
    proc = workspace.run(*SMOKE, "backend=acl")  # no simulator on PYTHONPATH: `import acl` fails
    line = workspace.assert_user_error(proc, "backend=acl", "pyacl")
    assert "set_env.sh" in line


def test_missing_atc(workspace):
    # an OM that other cases converted would be reused without atc (atc_path is not in the convert key):
    # backend.atc.log=error asks for an OM nobody built
    proc = workspace.run(*SMOKE, "backend=acl", "backend.atc.atc_path=/nonexistent/atc", "backend.atc.log=error",
                         env=acl_simulator_env())
    line = workspace.assert_user_error(proc, "/nonexistent/atc")
    assert "CANN" in line


def test_cuda_absent(workspace):
    proc = workspace.run(*SMOKE, "backend=torch", "backend.device=cuda")
    line = workspace.assert_user_error(proc, "backend.device=cuda")
    assert "no CUDA device" in line


def test_execution_provider_absent(workspace):
    proc = workspace.run(*SMOKE, "backend=onnxruntime", "backend.providers=[CUDAExecutionProvider,CPUExecutionProvider]")
    line = workspace.assert_user_error(proc, "CUDAExecutionProvider")
    assert "not available" in line


# -- Ascend without CANN: what needs neither pyacl nor atc still works -----------------------------
def test_acls_export_stage_runs_without_cann(workspace):
    """The static ONNX of acl (the porting engineer's file) needs no CANN: the run FINISHES."""
    proc = workspace.run(*SMOKE, "backend=acl", "stage=export")  # no simulator: no pyacl, no atc
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stdout + proc.stderr
    new = [s for run_id, s in workspace.runs().items() if run_id not in workspace.runs_before]
    assert new == ["FINISHED"]
    workspace.assert_earlier_outputs_intact()


def test_acls_convert_stage_without_cann_saves_the_atc_command_and_says_where_to_run_it(workspace):
    # a SoC no other case converts for: an OM that is cached would be reused without atc
    proc = workspace.run(*SMOKE, "backend=acl", "stage=convert", "backend.atc.soc_version=Ascend310P3")
    line = workspace.assert_user_error(proc, "backend.atc.atc_path=atc", "atc_command.txt")
    assert "on a host with CANN" in line
    saved = Path(re.search(r"the command saved in (\S+) on a host", line).group(1))
    command = saved.read_text()
    assert saved.parent == workspace.root / "cache" / "convert" and command.startswith("atc ") and "--model=" in command and "--soc_version=Ascend310P3" in command
    assert f"--output={saved.parent / saved.name.split('.')[0]}/model" in command  # the entry, not the build folder
    saved.unlink()  # not part of the catalogue's shared state
