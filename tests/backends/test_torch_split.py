"""The split-direction form (``backend.lstm_form=split_direction``) computes the stock network's
function from the stock weights: max |log-prob difference| <= 1e-5 on CPU, for random weights in
both checkpoint layouts (the recipe's 1952 -> 2048 padding included) and for the smoke-trained
model on real batches of several sizes and paddings; the torch backend builds it at load time
from the stock checkpoint and scores the same PER."""
from __future__ import annotations

import pytest
import torch

from lstm_exp.model.ctc import CTCModel, ModelArch
from lstm_exp.model.split_lstm import PERSISTENT_ALIGN, padded_size, split_direction

PARITY_ATOL = 1e-5
#: (batch, frames, valid lengths): padded batches, as the batch planner writes them
SHAPES = [(1, 390, [390]), (3, 120, [120, 77, 5]), (8, 64, [64, 60, 51, 40, 33, 20, 9, 2])]


def _randomised(model: CTCModel, seed: int) -> CTCModel:
    """Random weights and non-trivial BatchNorm statistics, in eval mode."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            param.copy_(torch.randn(param.shape, generator=gen) * 0.1)
        for module in model.modules():
            if isinstance(module, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
                module.running_mean.copy_(torch.randn(module.running_mean.shape, generator=gen) * 0.1)
                module.running_var.copy_(torch.rand(module.running_var.shape, generator=gen) + 0.5)
    return model.eval()


def _padded_batch(batch: int, frames: int, lengths: list[int], seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, frames, 243, generator=gen)
    for row, length in enumerate(lengths):
        x[row, length:] = 0.0
    return x


def max_log_prob_diff(model: torch.nn.Module, x: torch.Tensor) -> float:
    split = split_direction(model)
    with torch.inference_mode():
        stock, other = model(x), split(x)
    assert stock.shape == other.shape
    return float((stock - other).abs().max())


def test_padding_reaches_the_persistent_kernel_alignment():
    assert padded_size(1952) == 2048 and padded_size(768) == 768 and PERSISTENT_ALIGN == 128
    model = _randomised(CTCModel(ModelArch()), seed=0)  # the recipe's network: 1952 LSTM inputs
    split = split_direction(model)
    first = split.rnns[0]
    assert first.forward_rnn.input_size == 2048 and first.backward_rnn.input_size == 2048
    assert first.forward_rnn.num_layers == 1 and not first.forward_rnn.bidirectional
    assert torch.count_nonzero(first.forward_rnn.weight_ih_l0[:, 1952:]) == 0
    assert torch.equal(first.backward_rnn.weight_ih_l0[:, :1952], model.rnns[0].rnn.weight_ih_l0_reverse)
    assert all(layer.pad == 0 and layer.forward_rnn.input_size == 768 for layer in split.rnns[1:])


@pytest.mark.parametrize("layout", ["gpu", "npu"])
@pytest.mark.parametrize("batch,frames,lengths", SHAPES, ids=[f"b{b}-t{t}" for b, t, _ in SHAPES])
def test_random_weights_split_equals_stock(layout, batch, frames, lengths):
    arch = ModelArch(conv_channels=[8, 8], lstm_layers=3, hidden=64, layout=layout)  # 488 -> 512 inputs
    model = _randomised(CTCModel(arch), seed=batch)
    assert split_direction(model).rnns[0].pad == 512 - 488
    assert max_log_prob_diff(model, _padded_batch(batch, frames, lengths, seed=batch)) <= PARITY_ATOL


def test_recipe_size_network_split_equals_stock():
    model = _randomised(CTCModel(ModelArch()), seed=1)
    assert max_log_prob_diff(model, _padded_batch(2, 200, [200, 130], seed=2)) <= PARITY_ATOL


def test_split_form_changes_the_outputs_when_a_weight_is_not_carried_over():
    """The parity check can fail: a split network missing one direction's recurrent weight differs."""
    model = _randomised(CTCModel(ModelArch(conv_channels=[4], lstm_layers=1, hidden=16)), seed=3)
    split = split_direction(model)
    with torch.no_grad():
        split.rnns[0].backward_rnn.weight_hh_l0.zero_()
    x = _padded_batch(2, 40, [40, 30], seed=4)
    with torch.inference_mode():
        assert float((model(x) - split(x)).abs().max()) > PARITY_ATOL
