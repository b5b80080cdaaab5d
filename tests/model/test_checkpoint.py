"""Loading original checkpoints (both layouts, all packagings) and refusing bad ones."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from lstm_exp.errors import CheckpointError
from lstm_exp.decode import GreedyDecoder
from lstm_exp.model import load_checkpoint, read_units, require_units, save_checkpoint
from reference_net import reference_forward
from test_ctc import gpu_to_npu_keys

PHONES = ["sil", "aa", "b", "iy", "k"]
UNITS = ["blank", "UNK", *PHONES]


@pytest.fixture
def recipe_units(tmp_path) -> Path:
    """The recipe's data/units: one phone per line, blank and UNK implied."""
    path = tmp_path / "units"
    path.write_text("\n".join(PHONES) + "\n")
    return path


def original_package(state: dict, layout: str, prefix: bool, packaging: str) -> object:
    state = dict(gpu_to_npu_keys(state) if layout == "npu" else state)
    if prefix:
        state = {"module." + k: v for k, v in state.items()}
    if packaging == "bare":
        return state
    if packaging == "nested":
        return {"state_dict": state}
    return {"state_dict": state, "epoch": 17, "num_class": 7, "_drop_out": 0.2,
            "cnn_param": {"batch_norm": True, "layer": [[[1, 4], [3, 3], [1, 2], [1, 1], None]]},
            "rnn_param": {"rnn_input_size": 243, "rnn_hidden_size": 8, "rnn_layers": 2,
                          "bidirectional": True, "batch_norm": True},
            "loss_results": torch.tensor([3.0, 2.0])}


@pytest.mark.parametrize("layout", ["gpu", "npu"])
@pytest.mark.parametrize("prefix", [False, True])
@pytest.mark.parametrize("packaging", ["bare", "nested", "nested_with_metadata"])
def test_original_checkpoints_reproduce_the_reference(tmp_path, tiny_gpu_model, padded_batch,
                                                       recipe_units, layout, prefix, packaging):
    reference_state = {k: v.clone() for k, v in tiny_gpu_model.state_dict().items()}
    path = tmp_path / "ctc_best_model.pth"
    torch.save(original_package(reference_state, layout, prefix, packaging), path)
    model = load_checkpoint(path, units_file=recipe_units)
    assert not model.training
    assert model.arch.layout == layout
    assert (model.arch.conv_channels, model.arch.lstm_layers, model.arch.hidden,
            model.arch.num_classes) == ([4, 3], 2, 8, 7)
    assert model.units == UNITS
    x, _ = padded_batch
    with torch.no_grad():
        got = model(x).double()
    want = reference_forward(reference_state, x)
    assert torch.max(torch.abs(got - want)) < 1e-4


def test_our_format_round_trip_is_weights_only(tmp_path, tiny_gpu_model, padded_batch):
    path = save_checkpoint(tmp_path / "model.pt", tiny_gpu_model, UNITS, epoch=3,
                           config={"path": tmp_path})
    package = torch.load(path, weights_only=True)
    assert package["units"] == UNITS and package["meta"]["epoch"] == 3
    model = load_checkpoint(path)
    assert model.units == UNITS and model.arch == tiny_gpu_model.arch
    x, _ = padded_batch
    with torch.no_grad():
        assert torch.equal(model(x), tiny_gpu_model(x))


def test_pickled_class_needs_explicit_trust(tmp_path, tiny_gpu_model, recipe_units):
    package = original_package(tiny_gpu_model.state_dict(), "gpu", True, "nested_with_metadata")
    package["rnn_param"]["rnn_type"] = torch.nn.LSTM   # as the GPU recipe's save_package does
    path = tmp_path / "package.pth"
    torch.save(package, path)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path, units_file=recipe_units)
    assert "model.trust_checkpoint=true" in str(info.value) and str(path) in str(info.value)
    model = load_checkpoint(path, units_file=recipe_units, trust=True)
    assert model.arch.hidden == 8


def _save_state(tmp_path, state) -> Path:
    path = tmp_path / "broken.pth"
    torch.save({"state_dict": state}, path)
    return path


def test_wrong_shapes_are_listed(tmp_path, tiny_gpu_model, recipe_units):
    state = dict(tiny_gpu_model.state_dict())
    state["conv.0.conv.weight"] = torch.zeros(4, 1, 3, 5)
    state["rnns.1.rnn.weight_hh_l0_reverse"] = torch.zeros(32, 9)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(_save_state(tmp_path, state), units_file=recipe_units)
    lines = str(info.value).splitlines()
    assert "2 problems; the first: conv.0.conv.weight: shape (4, 1, 3, 5)" in lines[0]
    assert lines[1].startswith("rnns.1.rnn.weight_hh_l0_reverse: shape (32, 9)")


def test_missing_and_unexpected_keys_are_listed(tmp_path, tiny_gpu_model, recipe_units):
    state = dict(tiny_gpu_model.state_dict())
    del state["rnns.1.batch_norm.running_mean"], state["fc.0.bias"]
    state["rnns.0.batch_norm.weight"] = torch.ones(12)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(_save_state(tmp_path, state), units_file=recipe_units)
    lines = str(info.value).splitlines()
    assert "3 problems; the first: " in lines[0]
    faults = [lines[0].split("the first: ", 1)[1], *lines[1:]]
    assert "rnns.1.batch_norm.running_mean: missing" in faults
    assert "fc.0.bias: missing" in faults
    assert "rnns.0.batch_norm.weight: unexpected key" in faults


def test_old_checkpoints_without_num_batches_tracked_load(tmp_path, tiny_gpu_model,
                                                          recipe_units):
    state = {k: v for k, v in tiny_gpu_model.state_dict().items()
             if not k.endswith("num_batches_tracked")}
    model = load_checkpoint(_save_state(tmp_path, state), units_file=recipe_units)
    assert model.arch.num_classes == 7


def test_config_values_are_checked_against_the_weights(tmp_path, tiny_gpu_model, recipe_units):
    path = _save_state(tmp_path, tiny_gpu_model.state_dict())
    expected = {"name": "ctc_recipe", "conv_channels": [4, 3], "lstm_layers": 2, "hidden": 32,
                "layout": "npu", "dropout": 0.2, "checkpoint": str(path)}
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path, units_file=recipe_units, expected=expected)
    lines = str(info.value).splitlines()
    assert "2 problems; the first: model.hidden: config says 32, the checkpoint's weights say 8" in lines[0]
    assert lines[1].startswith("model.layout: config says 'npu'")
    expected.update(hidden=8, layout="gpu")
    assert load_checkpoint(path, units_file=recipe_units, expected=expected).arch.hidden == 8


def test_unitless_original_checkpoint_gives_log_probs_and_decoding_refuses(tmp_path, tiny_gpu_model,
                                                                            padded_batch):
    path = tmp_path / "ctc_best_model.pth"  # the recipe's file: weights and metadata, no units
    torch.save(original_package(tiny_gpu_model.state_dict(), "gpu", True, "nested_with_metadata"), path)
    model = load_checkpoint(path)
    assert model.units is None
    x, lengths = padded_batch
    with torch.no_grad():
        log_probs = model(x)
    assert log_probs.shape[2] == 7
    torch.testing.assert_close(log_probs.exp().sum(dim=2), torch.ones(log_probs.shape[:2]))
    with pytest.raises(CheckpointError) as caught:
        GreedyDecoder(model.units)
    message = str(caught.value)
    assert "model.units_file" in message and "\n" not in message
    with pytest.raises(CheckpointError, match=f"{path.name}: carries no unit list.*model.units_file"):
        require_units(model, path)
    resaved = save_checkpoint(tmp_path / "model.pt", model, None)  # the app's import keeps units=None
    assert load_checkpoint(resaved).units is None


def test_units_must_match_the_classes(tmp_path, tiny_gpu_model):
    path = _save_state(tmp_path, tiny_gpu_model.state_dict())
    ours = tmp_path / "units.txt"
    ours.write_text("".join(f"{u} {i}\n" for i, u in enumerate(UNITS)))
    assert read_units(ours) == UNITS
    assert load_checkpoint(path, units_file=ours).units == UNITS
    short = tmp_path / "short"
    short.write_text("sil\naa\n")
    with pytest.raises(CheckpointError, match="4 units but the checkpoint has 7"):
        load_checkpoint(path, units_file=short)


def test_unreadable_files_are_refused(tmp_path):
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="not a torch checkpoint"):
        load_checkpoint(garbage)
    whole = tmp_path / "whole.pth"
    torch.save({"state_dict": {"w": torch.zeros(3)}}, whole)
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(whole.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="truncated or damaged zip archive"):
        load_checkpoint(truncated)
    empty = tmp_path / "empty.pth"
    empty.write_bytes(b"")
    with pytest.raises(CheckpointError, match="an empty file"):
        load_checkpoint(empty)
    legacy = tmp_path / "legacy.pth"  # torch < 1.6's pickle format still loads
    torch.save({"state_dict": {"encoder.weight": torch.zeros(2, 2)}}, legacy, _use_new_zipfile_serialization=False)
    with pytest.raises(CheckpointError, match="not the recipe's CTC network"):
        load_checkpoint(legacy)
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "absent.pth")
    other = tmp_path / "other.pth"
    torch.save({"state_dict": {"encoder.weight": torch.zeros(2, 2)}}, other)
    with pytest.raises(CheckpointError, match="not the recipe's CTC network"):
        load_checkpoint(other)
