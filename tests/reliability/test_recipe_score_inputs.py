"""Catalogue: ``python -m lstm_exp.recipe_score`` on bad recipe files (info file, .npy outputs,
prepared data). Its contract: exit status 2, no traceback, one ``recipe_score: error: ...``
line naming the offending file. It records no MLflow run."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from catalogue import assert_tool_error, cli_env

ERROR = "recipe_score: error: "


@pytest.fixture(scope="module")
def recipe_files(workspace, tmp_path_factory):
    """The smoke workspace's prepared data, our info file and .bin batches of its dev split
    (batch 4, 390 frames) and a folder of well-formed log-prob outputs ``<n>.npy``."""
    from lstm_exp.backends.acl.inputs import output_path, read_info, write_bin_batches
    from lstm_exp.data.batching import load_split, load_units, plan_batches

    prepared = workspace.smoke_entries["prepare"]
    base = tmp_path_factory.mktemp("recipe")
    units = load_units(prepared / "units")
    info = write_bin_batches(plan_batches(load_split(prepared, "dev", units, progress=False), 4, "fixed", pad_to=390),
                             base / "bins")
    outputs = base / "outputs"
    outputs.mkdir()
    rng = np.random.default_rng(0)
    for entry in read_info(info):
        logits = rng.normal(size=(195, 4, len(units))).astype(np.float32)
        np.save(output_path(outputs, entry), logits - np.log(np.exp(logits).sum(-1, keepdims=True)))
    return prepared, info, outputs


def score(workspace, info, outputs, prepared) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lstm_exp.recipe_score", "--info", str(info), "--outputs",
                           str(outputs), "--prepared", str(prepared)], cwd=workspace.root, env=cli_env(),
                          capture_output=True, text=True, timeout=300)


def assert_one_line(proc: subprocess.CompletedProcess, *names: str) -> str:
    return assert_tool_error(proc, ERROR, *names)


def copy_outputs(outputs: Path, to: Path) -> Path:
    to.mkdir()
    for path in outputs.iterdir():
        (to / path.name).write_bytes(path.read_bytes())
    return to


def test_the_well_formed_files_score(workspace, recipe_files):
    prepared, info, outputs = recipe_files
    proc = score(workspace, info, outputs, prepared)
    assert proc.returncode == 0, proc.stderr
    assert "scored 12 of the 12 dev utterances in 3 batches of 4" in proc.stdout


def test_a_missing_output_file(workspace, recipe_files, tmp_path):
    prepared, info, outputs = recipe_files
    outputs = copy_outputs(outputs, tmp_path / "out")
    (outputs / "1.npy").unlink()
    assert_one_line(score(workspace, info, outputs, prepared), str(outputs / "1.npy"))


def test_a_corrupt_output_file(workspace, recipe_files, tmp_path):
    prepared, info, outputs = recipe_files
    outputs = copy_outputs(outputs, tmp_path / "out")
    (outputs / "2.npy").write_bytes(b"\x93NUMPY garbage")
    assert_one_line(score(workspace, info, outputs, prepared), str(outputs / "2.npy"))


def test_outputs_of_the_wrong_shape(workspace, recipe_files, tmp_path):
    prepared, info, outputs = recipe_files
    outputs = copy_outputs(outputs, tmp_path / "out")
    np.save(outputs / "0.npy", np.zeros((195, 4, 7), dtype=np.float32))
    assert_one_line(score(workspace, info, outputs, prepared), str(outputs / "0.npy"), "expected")


@pytest.mark.parametrize("bad", [np.nan, -np.inf], ids=["nan", "inf"])
def test_non_finite_outputs(workspace, recipe_files, tmp_path, bad):
    prepared, info, outputs = recipe_files
    outputs = copy_outputs(outputs, tmp_path / "out")
    log_probs = np.load(outputs / "1.npy")
    log_probs[10, 2, 3] = bad
    np.save(outputs / "1.npy", log_probs)
    line = assert_one_line(score(workspace, info, outputs, prepared), str(outputs / "1.npy"))
    assert "non-finite" in line


def test_a_malformed_info_file(workspace, recipe_files, tmp_path):
    prepared, _, outputs = recipe_files
    info = tmp_path / "lstm.info"
    info.write_text("0 ./lstm_bin/inputs_0.bin (16,390)\n")
    assert_one_line(score(workspace, info, outputs, prepared), str(info))


def test_prepared_data_that_is_not_there(workspace, recipe_files, tmp_path):
    _, info, outputs = recipe_files
    assert_one_line(score(workspace, info, outputs, tmp_path / "nothing"), str(tmp_path / "nothing"))
