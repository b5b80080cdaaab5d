"""Catalogue: checkpoints, model outputs and ONNX files (docs/RELIABILITY.md, "Bad inputs:
checkpoints, models, backends and tools").

Every bad file is made in ``tmp_path`` from the workspace's smoke checkpoint (no training here).
"""
from __future__ import annotations

import argparse
import json
import os
import sqlite3
import sys
from pathlib import Path

import pytest
import torch

from catalogue import CHECKOUT, SMOKE, Workspace

PRETRAINED = ("model=pretrained",)


def smoke_checkpoint(workspace: Workspace) -> Path:
    """The checkpoint the workspace's first smoke run trained (other cases add other entries)."""
    return workspace.smoke_entries["train"] / "model.pt"


def smoke_prepared(workspace: Workspace) -> Path:
    """The prepared data the smoke checkpoint was trained on."""
    manifest = json.loads((smoke_checkpoint(workspace).parent / "_stage.json").read_text())
    return workspace.root / "cache" / "prepare" / manifest["upstream"][0]


def smoke_package(workspace: Workspace) -> dict:
    return torch.load(smoke_checkpoint(workspace), weights_only=True)


def units_file(workspace: Workspace, tmp_path: Path, drop: int = 0) -> Path:
    units = smoke_package(workspace)["units"]
    path = tmp_path / "units"
    path.write_text("".join(f"{name} {i}\n" for i, name in enumerate(units[: len(units) - drop])))
    return path


def original_checkpoint(workspace: Workspace, path: Path, **changes) -> Path:
    """The smoke weights as the recipe saves them (a bare state dict under 'state_dict', no units)."""
    state = dict(smoke_package(workspace)["state_dict"])
    for key, value in changes.items():
        if value is None:
            del state[key]
        else:
            state[key] = value
    torch.save({"state_dict": state, "epoch": 1}, path)
    return path


def run_pretrained(workspace: Workspace, checkpoint: Path, units: Path, *more: str):
    return workspace.run(*SMOKE, *PRETRAINED, f"model.checkpoint={checkpoint}", f"model.units_file={units}",
                         "backend=torch", *more)


# -- 1. checkpoints --------------------------------------------------------------------------
def test_checkpoint_of_another_architecture_than_configured(workspace, tmp_path):
    checkpoint = original_checkpoint(workspace, tmp_path / "ctc_best_model.pth")
    proc = run_pretrained(workspace, checkpoint, units_file(workspace, tmp_path), "model.hidden=32")
    line = workspace.assert_user_error(proc, str(checkpoint), "model.hidden")
    assert "32" in line and "16" in line


def test_checkpoint_missing_keys(workspace, tmp_path):
    checkpoint = original_checkpoint(workspace, tmp_path / "ctc_best_model.pth", **{"fc.0.bias": None})
    proc = run_pretrained(workspace, checkpoint, units_file(workspace, tmp_path))
    workspace.assert_user_error(proc, str(checkpoint), "fc.0.bias: missing")


def test_truncated_checkpoint(workspace, tmp_path):
    whole = original_checkpoint(workspace, tmp_path / "whole.pth").read_bytes()
    checkpoint = tmp_path / "ctc_best_model.pth"
    checkpoint.write_bytes(whole[: len(whole) // 2])
    proc = run_pretrained(workspace, checkpoint, units_file(workspace, tmp_path))
    line = workspace.assert_user_error(proc, str(checkpoint))
    assert "truncated or damaged zip archive" in line


def test_file_that_is_not_a_checkpoint(workspace, tmp_path):
    checkpoint = tmp_path / "ctc_best_model.pth"
    checkpoint.write_text("epoch 30: dev PER 18.7%\n")
    proc = run_pretrained(workspace, checkpoint, units_file(workspace, tmp_path))
    line = workspace.assert_user_error(proc, str(checkpoint))
    assert "not a torch checkpoint" in line


def test_checkpoint_that_needs_full_unpickling(workspace, tmp_path):
    checkpoint = tmp_path / "ctc_best_model.pth"
    state = smoke_package(workspace)["state_dict"]
    # as training scripts often do: the run's argparse options pickled with the weights
    torch.save({"state_dict": state, "args": argparse.Namespace(lr=1e-3, epochs=30)}, checkpoint)
    proc = run_pretrained(workspace, checkpoint, units_file(workspace, tmp_path))
    line = workspace.assert_user_error(proc, str(checkpoint), "model.trust_checkpoint=true")
    assert "argparse.Namespace" in line


def test_units_file_that_does_not_match_the_output_layer(workspace, tmp_path):
    checkpoint = original_checkpoint(workspace, tmp_path / "ctc_best_model.pth")
    units = units_file(workspace, tmp_path, drop=3)
    proc = run_pretrained(workspace, checkpoint, units)
    line = workspace.assert_user_error(proc, str(units))
    assert "output classes" in line


# -- 2. NaN or infinite model outputs --------------------------------------------------------
def overflowing_checkpoint(workspace: Workspace, tmp_path: Path) -> Path:
    """Finite weights whose last layer is scaled up to 3e38 (float32's largest is 3.4e38): its
    outputs overflow to inf, and log-softmax turns inf - inf into NaN."""
    weight = smoke_package(workspace)["state_dict"]["fc.1.weight"]
    huge = (weight.double() * (3e38 / weight.abs().max().item())).float()
    assert torch.isfinite(huge).all()
    return original_checkpoint(workspace, tmp_path / "ctc_best_model.pth", **{"fc.1.weight": huge})


def test_non_finite_log_probs_stop_the_evaluation(workspace, tmp_path):
    checkpoint = overflowing_checkpoint(workspace, tmp_path)
    proc = run_pretrained(workspace, checkpoint, units_file(workspace, tmp_path))
    first_dev_utt = (smoke_prepared(workspace) / "dev" / "feats.scp").read_text().split()[0]
    line = workspace.assert_user_error(proc, "torch-cpu-fp32", first_dev_utt, "precision fp32")
    assert "non-finite log-probs" in line


def test_non_finite_log_probs_fail_the_export_check(workspace, tmp_path):
    checkpoint = overflowing_checkpoint(workspace, tmp_path)
    proc = workspace.run(*SMOKE, *PRETRAINED, f"model.checkpoint={checkpoint}",
                         f"model.units_file={units_file(workspace, tmp_path)}", "backend=onnxruntime")
    line = workspace.assert_user_error(proc, str(checkpoint), "export check's dev batch")
    assert "non-finite log-probs" in line


# -- 3. an ONNX made elsewhere (export.onnx_file) ------------------------------------------------
def tiny_onnx(path: Path, features: int, classes: int) -> Path:
    """A conv + log-softmax ONNX in the recipe's names and layout, dynamic axes:
    [B, T, features] -> [T/2, B, classes]."""

    class Tiny(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = torch.nn.Conv1d(features, classes, kernel_size=3, stride=2, padding=1)

        def forward(self, x):
            return torch.log_softmax(self.conv(x.transpose(1, 2)).permute(2, 0, 1), dim=-1)

    torch.onnx.export(Tiny().eval(), (torch.zeros(2, 390, features),), str(path), dynamo=False, opset_version=11,
                      input_names=["actual_input_1"], output_names=["output1"],
                      dynamic_axes={"actual_input_1": {0: "batch", 1: "frames"}, "output1": {0: "frames", 1: "batch"}})
    return path


def test_onnx_file_whose_input_does_not_match_the_features(workspace, tmp_path):
    onnx_file = tiny_onnx(tmp_path / "lstm.onnx", features=80, classes=len(smoke_package(workspace)["units"]))
    proc = workspace.run(*SMOKE, "backend=onnxruntime", f"export.onnx_file={onnx_file}")
    workspace.assert_user_error(proc, f"export.onnx_file={onnx_file}", "takes 80 features", "have 243")


def test_onnx_file_whose_classes_do_not_match_the_units(workspace, tmp_path):
    onnx_file = tiny_onnx(tmp_path / "lstm.onnx", features=243, classes=7)
    proc = workspace.run(*SMOKE, "backend=onnxruntime", f"export.onnx_file={onnx_file}")
    units = len(smoke_package(workspace)["units"])
    workspace.assert_user_error(proc, f"export.onnx_file={onnx_file}", "7 output classes", f"{units} units")


def test_onnx_file_that_is_not_onnx(workspace, tmp_path):
    onnx_file = tmp_path / "lstm.onnx"
    onnx_file.write_bytes(smoke_checkpoint(workspace).read_bytes()[:4096])  # a torch zip, not a protobuf
    proc = workspace.run(*SMOKE, "backend=onnxruntime", f"export.onnx_file={onnx_file}")
    line = workspace.assert_user_error(proc, f"export.onnx_file={onnx_file}")
    assert "not an ONNX model" in line


def test_onnx_file_with_a_static_input_says_which_batching_to_write(workspace, tmp_path):
    from lstm_exp.model import load_checkpoint
    from lstm_exp.model.export import export_onnx

    onnx_file = export_onnx(load_checkpoint(smoke_checkpoint(workspace)), tmp_path / "lstm.onnx", batch=4,
                            frames=390, dynamic=False)
    proc = workspace.run(*SMOKE, "backend=onnxruntime", f"export.onnx_file={onnx_file}", "batch=4")
    workspace.assert_user_error(proc, f"export.onnx_file={onnx_file}", "infer.batching=fixed infer.pad_to=390")
    # what the line says to write runs it
    proc = workspace.run(*SMOKE, "backend=onnxruntime", f"export.onnx_file={onnx_file}", "batch=4",
                         "infer.batching=fixed", "infer.pad_to=390")
    assert proc.returncode == 0, proc.stderr[-3000:]


def per_of(workspace: Workspace, run_id: str) -> float:
    with sqlite3.connect(workspace.root / "mlflow.db") as connection:
        return connection.execute("SELECT value FROM latest_metrics WHERE run_uuid = ? AND key = 'per'",
                                  (run_id,)).fetchone()[0]


def smoke_run(workspace: Workspace) -> str:
    """The MLflow run of the workspace's smoke experiment (the first one)."""
    with sqlite3.connect(workspace.root / "mlflow.db") as connection:
        return connection.execute("SELECT run_uuid FROM runs ORDER BY start_time LIMIT 1").fetchone()[0]


def test_onnx_file_exported_from_the_smoke_checkpoint_gives_the_same_per(workspace, tmp_path):
    from lstm_exp.model import load_checkpoint
    from lstm_exp.model.export import export_onnx

    onnx_file = export_onnx(load_checkpoint(smoke_checkpoint(workspace)), tmp_path / "lstm.onnx", dynamic=True)
    proc = workspace.run(*SMOKE, f"export.onnx_file={onnx_file}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    new = [run for run in workspace.runs() if run not in workspace.runs_before]
    assert [workspace.runs()[run] for run in new] == ["FINISHED"]
    assert per_of(workspace, new[0]) == pytest.approx(per_of(workspace, smoke_run(workspace)), abs=1e-12)
    # nothing was trained for it: the only train entries are the smoke run's and imported checkpoints
    assert "train: " not in proc.stdout + proc.stderr


def test_onnx_file_goes_through_atc_for_acl_and_gives_the_same_per(workspace, tmp_path):
    """backend=acl (simulator + fake atc): our static export given back as export.onnx_file is
    converted by ATC like our own and scores the same PER."""
    sim = Path(__file__).resolve().parents[1] / "acl_sim"
    env = {"PYTHONPATH": os.pathsep.join([str(sim), str(CHECKOUT)])}
    atc = tmp_path / "atc"
    atc.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{sim / "fake_atc"}" "$@"\n')
    atc.chmod(0o755)
    acl = (*SMOKE, "backend=acl", f"backend.atc.atc_path={atc}")
    ours = workspace.run(*acl, env=env)
    assert ours.returncode == 0, ours.stderr[-3000:]
    (ours_run,) = [run for run in workspace.runs() if run not in workspace.runs_before]
    with sqlite3.connect(workspace.root / "mlflow.db") as connection:
        export_key = connection.execute("SELECT value FROM tags WHERE run_uuid = ? AND key = 'cache.export'",
                                        (ours_run,)).fetchone()[0]
    onnx_file = tmp_path / "lstm.onnx"
    onnx_file.write_bytes((workspace.root / "cache" / "export" / export_key / "model.onnx").read_bytes())
    given = workspace.run(*acl, f"export.onnx_file={onnx_file}", env=env)
    assert given.returncode == 0, given.stderr[-3000:]
    (given_run,) = [run for run in workspace.runs() if run not in workspace.runs_before]
    assert "convert: built" in given.stdout + given.stderr  # ATC ran on the given file
    assert per_of(workspace, given_run) == pytest.approx(per_of(workspace, ours_run), abs=1e-12)
