"""The network against the independent reference forward pass, and its shapes."""

from __future__ import annotations

import pytest
import torch

from lstm_exp.errors import ConfigError
from lstm_exp.model import CTCModel, ModelArch
from reference_net import reference_forward


def gpu_to_npu_keys(state: dict) -> dict:
    """Rename GPU-layout LSTM keys to the NPU layout (reverse direction -> rnn_w)."""
    out = {}
    for key, value in state.items():
        if key.endswith("_reverse"):
            key = key.replace(".rnn.", ".rnn_w.").replace("_reverse", "")
        out[key] = value
    return out


def test_recipe_shapes_and_parameter_count():
    model = CTCModel(ModelArch())
    assert model.arch.lstm_input_dim == 61 * 32
    out = model.eval()(torch.zeros(2, 390, 243))
    assert out.shape == (195, 2, 41)
    # Counted by hand from RECIPE.md: per direction 4*H*(in + H) LSTM weights (no biases).
    lstm = 2 * 4 * 384 * (1952 + 384) + 3 * 2 * 4 * 384 * (768 + 384)
    convs = (32 * 9 + 32) + (32 * 32 * 9 + 32) + 2 * (2 * 32)
    norms = 3 * 2 * 768 + 2 * 768
    head = 768 * 41
    assert model.num_parameters() == lstm + convs + norms + head == 17_840_352
    # RECIPE.md: "~17.8 M of them in the LSTMs" (its total, "about 18.2 M", is 0.36 M high).
    assert sum(p.numel() for n, p in model.named_parameters() if ".rnn." in n) == lstm


def test_recipe_state_dict_keys():
    keys = set(CTCModel(ModelArch()).state_dict())
    assert "rnns.0.rnn.weight_ih_l0_reverse" in keys and "rnns.3.rnn.weight_hh_l0" in keys
    assert "rnns.0.batch_norm.weight" not in keys and "rnns.1.batch_norm.running_var" in keys
    assert {"conv.0.conv.weight", "conv.1.conv.bias", "conv.1.batch_norm.running_mean",
            "fc.0.weight", "fc.1.weight"} <= keys
    assert "fc.1.bias" not in keys and not any("bias_ih" in k for k in keys)
    npu = set(CTCModel(ModelArch(layout="npu")).state_dict())
    assert "rnns.2.rnn_w.weight_ih_l0" in npu and not any(k.endswith("_reverse") for k in npu)


def test_gpu_layout_matches_reference(tiny_gpu_model, padded_batch):
    x, _ = padded_batch
    with torch.no_grad():
        got = tiny_gpu_model(x).double()
    want = reference_forward(tiny_gpu_model.state_dict(), x)
    assert got.shape == want.shape == (9, 3, 7)
    assert torch.max(torch.abs(got - want)) < 1e-4


def test_npu_layout_is_the_same_network(tiny_gpu_model, padded_batch):
    x, _ = padded_batch
    npu = CTCModel(ModelArch(**{**tiny_gpu_model.arch.to_dict(), "layout": "npu"})).eval()
    npu.load_state_dict(gpu_to_npu_keys(tiny_gpu_model.state_dict()), strict=True)
    with torch.no_grad():
        got = npu(x).double()
    want = reference_forward(tiny_gpu_model.state_dict(), x)
    assert torch.max(torch.abs(got - want)) < 1e-4


def test_output_lengths_follow_the_convs(tiny_gpu_model):
    lengths = torch.tensor([1, 2, 3, 6, 17, 390])
    assert tiny_gpu_model.output_lengths(lengths).tolist() == [1, 1, 2, 3, 9, 195]
    for t in (5, 6):
        assert tiny_gpu_model(torch.zeros(1, t, 243)).shape[0] == \
            int(tiny_gpu_model.output_lengths(torch.tensor([t]))[0])


def test_bad_arch_lists_every_fault():
    with pytest.raises(ConfigError) as info:
        ModelArch(conv_channels=[], hidden=0, layout="tpu")
    message = str(info.value)
    assert message.splitlines()[0].startswith("invalid model architecture: 3 problems; the first: model.")
    assert "model.conv_channels" in message and "model.hidden" in message and "'tpu'" in message
