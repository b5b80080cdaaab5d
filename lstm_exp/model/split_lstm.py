"""The split-direction form of a trained :class:`~lstm_exp.model.ctc.CTCModel` (``backend.lstm_form=split_direction``).

Contract: :func:`split_direction` takes a stock model (either checkpoint layout) and returns a
network that computes the same function from the same weights, with every bidirectional layer
rebuilt as two one-direction, one-layer ``nn.LSTM`` (forward, and forward over the time-flipped
input, flipped back), and each layer's input zero-padded up to a multiple of
:data:`PERSISTENT_ALIGN` features, the input-to-hidden weights zero-padded to match (layer 1 of
the recipe: 1952 -> 2048; later layers' 768 inputs are already aligned).  The padded columns
multiply zeros, so the outputs equal the stock network's up to float rounding.

Why: cuDNN runs its persistent LSTM kernels only for one-layer, one-direction fp16 LSTMs whose
input and hidden sizes are multiples of 128 (and batch % 8 == 0, <= 128 on sm_80+): on the H100
this form took batch 16 from 5.71 ms (stock fp16, CUDA graph) to 2.71 ms
(``benchmarks/results/h100-2026-11-24/``).  On other precisions and on CPU it is the same maths
in another layout.  It is built at load time from the stock checkpoint, never stored.
"""
from __future__ import annotations

import math
from typing import Optional

import torch
from torch import nn

from lstm_exp.model.ctc import BiLSTMLayer, CTCModel, _time_major_batch_norm

#: input sizes are padded to a multiple of this (cuDNN's persistent-kernel requirement)
PERSISTENT_ALIGN = 128


def padded_size(size: int, align: int = PERSISTENT_ALIGN) -> int:
    """``size`` rounded up to a multiple of ``align`` (1952 -> 2048)."""
    return math.ceil(size / align) * align


def _direction_weights(layer: BiLSTMLayer) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    """(w_ih, w_hh) of the forward and of the backward direction, in either checkpoint layout."""
    rnn = layer.rnn
    if layer.layout == "gpu":
        return ((rnn.weight_ih_l0, rnn.weight_hh_l0), (rnn.weight_ih_l0_reverse, rnn.weight_hh_l0_reverse))
    back = layer.rnn_w
    return ((rnn.weight_ih_l0, rnn.weight_hh_l0), (back.weight_ih_l0, back.weight_hh_l0))


def _one_direction(w_ih: torch.Tensor, w_hh: torch.Tensor, input_size: int) -> nn.LSTM:
    """A bias-free one-layer LSTM over ``input_size`` features holding ``w_ih`` zero-padded on the right."""
    hidden = w_hh.shape[1]
    lstm = nn.LSTM(input_size, hidden, bias=False)
    with torch.no_grad():
        lstm.weight_ih_l0.zero_()
        lstm.weight_ih_l0[:, : w_ih.shape[1]].copy_(w_ih)
        lstm.weight_hh_l0.copy_(w_hh)
    return lstm


class SplitDirectionLayer(nn.Module):
    """One bidirectional layer as two one-direction LSTMs over the zero-padded input."""

    def __init__(self, layer: BiLSTMLayer, align: int = PERSISTENT_ALIGN) -> None:
        super().__init__()
        self.batch_norm: Optional[nn.BatchNorm1d] = layer.batch_norm
        (f_ih, f_hh), (b_ih, b_hh) = _direction_weights(layer)
        size = f_ih.shape[1]
        self.pad = padded_size(size, align) - size
        self.forward_rnn = _one_direction(f_ih, f_hh, size + self.pad)
        self.backward_rnn = _one_direction(b_ih, b_hh, size + self.pad)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.batch_norm is not None:
            x = _time_major_batch_norm(self.batch_norm, x)
        if self.pad:
            x = nn.functional.pad(x, (0, self.pad))
        forward_out, _ = self.forward_rnn(x)
        backward_out, _ = self.backward_rnn(torch.flip(x, dims=[0]))
        return torch.cat([forward_out, torch.flip(backward_out, dims=[0])], dim=2)


class SplitDirectionCTC(nn.Module):
    """The CTC model with each BiLSTM layer as a :class:`SplitDirectionLayer`; convs and head shared."""

    def __init__(self, model: CTCModel, align: int = PERSISTENT_ALIGN) -> None:
        super().__init__()
        self.arch = model.arch
        self.units = model.units
        self.conv = model.conv
        self.rnns = nn.Sequential(*[SplitDirectionLayer(layer, align) for layer in model.rnns])
        self.fc = model.fc
        self.train(model.training)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x [B, T, input_dim]`` -> log-probs ``[T', B, num_classes]``, as :meth:`CTCModel.forward`."""
        x = self.conv(x.unsqueeze(1))
        batch, channels, steps, width = x.shape
        x = x.permute(2, 0, 1, 3).reshape(steps, batch, channels * width)
        x = self.rnns(x)
        logits = self.fc(x.reshape(steps * batch, -1)).reshape(steps, batch, -1)
        return torch.log_softmax(logits, dim=-1)

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        return CTCModel.output_lengths(self, lengths)


def split_direction(model: CTCModel, align: int = PERSISTENT_ALIGN) -> SplitDirectionCTC:
    """The split-direction form of ``model`` (same weights, same function); see the module docstring."""
    return SplitDirectionCTC(model, align)
