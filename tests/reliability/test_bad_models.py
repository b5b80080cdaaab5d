"""Catalogue: checkpoints, model outputs and ONNX files (docs/RELIABILITY.md, "Bad inputs:
checkpoints, models, backends and tools").

Every bad file is made in ``tmp_path`` from the workspace's smoke checkpoint (no training here).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
import torch

from catalogue import SMOKE, Workspace

PRETRAINED = ("model=pretrained",)


def smoke_checkpoint(workspace: Workspace) -> Path:
    """The checkpoint the workspace's smoke experiment trained (not one a case imported)."""
    for entry in sorted((workspace.root / "cache" / "train").iterdir()):
        manifest = entry / "_stage.json"
        if manifest.is_file() and "source" not in json.loads(manifest.read_text()).get("summary", {}):
            return entry / "model.pt"
    raise AssertionError("the workspace has no trained smoke checkpoint")


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
    assert "not a readable torch checkpoint" in line


def test_file_that_is_not_a_checkpoint(workspace, tmp_path):
    checkpoint = tmp_path / "ctc_best_model.pth"
    checkpoint.write_text("epoch 30: dev PER 18.7%\n")
    proc = run_pretrained(workspace, checkpoint, units_file(workspace, tmp_path))
    line = workspace.assert_user_error(proc, str(checkpoint))
    assert "not a readable torch checkpoint" in line


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
