"""An independent, deliberately plain forward pass of the recipe network (RECIPE.md, "Model").

Written from the recipe's description only, not from lstm_exp.model: convolutions through
``F.conv2d``, BatchNorm as explicit arithmetic on running statistics, every LSTM as an explicit
loop over time with PyTorch's gate order (input, forget, cell, output).  It reads a
prefix-free GPU-layout state dict (``rnns.N.rnn.weight_ih_l0[_reverse]``) and serves as the
ground truth the model and the checkpoint loader are checked against.
"""

from __future__ import annotations

from typing import Mapping

import torch
import torch.nn.functional as F

EPS = 1e-5


def batch_norm(x: torch.Tensor, state: Mapping[str, torch.Tensor], prefix: str,
               channel_dim: int) -> torch.Tensor:
    shape = [1] * x.dim()
    shape[channel_dim] = -1
    mean = state[prefix + "running_mean"].view(shape)
    var = state[prefix + "running_var"].view(shape)
    weight = state[prefix + "weight"].view(shape)
    bias = state[prefix + "bias"].view(shape)
    return (x - mean) / torch.sqrt(var + EPS) * weight + bias


def lstm_direction(x: torch.Tensor, w_ih: torch.Tensor, w_hh: torch.Tensor) -> torch.Tensor:
    """One bias-free LSTM direction over ``x [T, B, D]`` from zero state; returns ``[T, B, H]``."""
    hidden = w_hh.shape[1]
    h = x.new_zeros(x.shape[1], hidden)
    c = x.new_zeros(x.shape[1], hidden)
    outputs = []
    for t in range(x.shape[0]):
        gates = x[t] @ w_ih.T + h @ w_hh.T
        i = torch.sigmoid(gates[:, 0 * hidden:1 * hidden])
        f = torch.sigmoid(gates[:, 1 * hidden:2 * hidden])
        g = torch.tanh(gates[:, 2 * hidden:3 * hidden])
        o = torch.sigmoid(gates[:, 3 * hidden:4 * hidden])
        c = f * c + i * g
        h = o * torch.tanh(c)
        outputs.append(h)
    return torch.stack(outputs)


def reference_forward(state: Mapping[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """Log-probs ``[T', B, C]`` of the recipe network with GPU-layout weights ``state``."""
    state = {k: v.double() if v.is_floating_point() else v for k, v in state.items()}
    h = x.double().unsqueeze(1)                               # [B, 1, T, D]
    n_convs = len({k.split(".")[1] for k in state if k.startswith("conv.")})
    for n in range(n_convs):
        stride = (1, 2) if n == 0 else (2, 2)
        h = F.conv2d(h, state[f"conv.{n}.conv.weight"], state[f"conv.{n}.conv.bias"],
                     stride=stride, padding=(1, 1))
        h = torch.relu(batch_norm(h, state, f"conv.{n}.batch_norm.", channel_dim=1))
    b, c, t, w = h.shape
    h = h.permute(2, 0, 1, 3).reshape(t, b, c * w)            # channel-major features
    n_layers = len({k.split(".")[1] for k in state if k.startswith("rnns.")})
    for n in range(n_layers):
        if n > 0:
            h = batch_norm(h, state, f"rnns.{n}.batch_norm.", channel_dim=2)
        p = f"rnns.{n}.rnn."
        forward = lstm_direction(h, state[p + "weight_ih_l0"], state[p + "weight_hh_l0"])
        backward = lstm_direction(h.flip(0), state[p + "weight_ih_l0_reverse"],
                                  state[p + "weight_hh_l0_reverse"]).flip(0)
        h = torch.cat([forward, backward], dim=2)
    h = batch_norm(h, state, "fc.0.", channel_dim=2)
    logits = h @ state["fc.1.weight"].T
    return torch.log_softmax(logits, dim=-1)
