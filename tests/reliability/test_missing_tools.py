"""Catalogue: runtimes, tools and devices that are absent, and batches the split cannot fill
(docs/RELIABILITY.md, "Bad inputs: checkpoints, models, backends and tools")."""
from __future__ import annotations

import os

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
