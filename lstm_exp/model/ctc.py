"""The recipe's CTC network (CNN + BiLSTM), in either of its two checkpoint layouts.

Input ``[B, T, input_dim]`` (batch-major, spliced fbank), output log-probabilities
``[T', B, num_classes]`` (time-major), ``T' = ceil(T / 2)`` with the recipe's two convs.

Network (RECIPE.md, "Model"):

* Conv2d layers over (time, feature), kernel 3x3, padding (1, 1); the first strides (1, 2),
  every later one (2, 2); each conv -> BatchNorm2d -> ReLU (-> dropout in training).
* ``lstm_layers`` bidirectional LSTMs without biases; layers 2..N first apply BatchNorm1d over
  their input channels.
* Head: BatchNorm1d -> Linear (no bias) -> log-softmax.

Parameter names reproduce the original checkpoints exactly so that their state dicts load
strictly:

* ``layout="gpu"`` (Diamondfan/CTC_pytorch): one ``nn.LSTM(bidirectional=True)`` per layer,
  ``rnns.N.rnn.weight_{ih,hh}_l0[_reverse]``.
* ``layout="npu"`` (Ascend ModelZoo): two one-direction LSTMs per layer, ``rnns.N.rnn`` and
  ``rnns.N.rnn_w``; the latter runs over the time-flipped input and its output is flipped
  back before the two are concatenated.

Neither layout packs sequences: the backward direction also runs over the padding, as in the
recipe.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, Mapping, Tuple

import torch
from torch import nn

from lstm_exp.errors import ConfigError, fault_message

LAYOUTS = ("gpu", "npu")
CONV_KERNEL = (3, 3)
CONV_PADDING = (1, 1)
FIRST_CONV_STRIDE = (1, 2)
LATER_CONV_STRIDE = (2, 2)


def conv_strides(num_convs: int) -> List[Tuple[int, int]]:
    """(time, feature) stride of each conv layer: (1, 2) first, (2, 2) after."""
    return [FIRST_CONV_STRIDE] + [LATER_CONV_STRIDE] * (num_convs - 1)


def conv_out_size(size: int, stride: int) -> int:
    """Output length of a kernel-3, padding-1 convolution along one axis."""
    return (size + 2 * CONV_PADDING[0] - CONV_KERNEL[0]) // stride + 1


@dataclass
class ModelArch:
    """Everything that fixes the network's shape (the weights of a checkpoint determine it)."""

    input_dim: int = 243
    conv_channels: List[int] = field(default_factory=lambda: [32, 32])
    lstm_layers: int = 4
    hidden: int = 384
    num_classes: int = 41
    layout: str = "gpu"
    dropout: float = 0.0

    def __post_init__(self) -> None:
        self.conv_channels = [int(c) for c in self.conv_channels]
        faults = []
        if not (isinstance(self.input_dim, int) and self.input_dim >= 3):
            faults.append(f"model.input_dim: {self.input_dim!r} must be an integer >= 3 "
                          "(recipe: 243)")
        if not self.conv_channels or any(c < 1 for c in self.conv_channels):
            faults.append(f"model.conv_channels: {self.conv_channels!r} must be a non-empty list "
                          "of positive integers (recipe: [32, 32])")
        if not (isinstance(self.lstm_layers, int) and self.lstm_layers >= 1):
            faults.append(f"model.lstm_layers: {self.lstm_layers!r} must be an integer >= 1 "
                          "(recipe: 4)")
        if not (isinstance(self.hidden, int) and self.hidden >= 1):
            faults.append(f"model.hidden: {self.hidden!r} must be an integer >= 1 (recipe: 384)")
        if not (isinstance(self.num_classes, int) and self.num_classes >= 2):
            faults.append(f"model.num_classes: {self.num_classes!r} must be an integer >= 2 "
                          "(recipe: 41 = blank + UNK + 39 phones)")
        if self.layout not in LAYOUTS:
            faults.append(f"model.layout: {self.layout!r} is not a layout; write 'gpu' "
                          "(one bidirectional LSTM per layer) or 'npu' (rnn + time-flipped rnn_w)")
        if not 0.0 <= float(self.dropout) < 1.0:
            faults.append(f"model.dropout: {self.dropout!r} must be in [0, 1)")
        if faults:
            raise ConfigError(fault_message("invalid model architecture", faults))

    @property
    def conv_out_width(self) -> int:
        """Feature-axis size after the convs (243 -> 122 -> 61 for the recipe)."""
        width = self.input_dim
        for _, stride in conv_strides(len(self.conv_channels)):
            width = conv_out_size(width, stride)
        return width

    @property
    def lstm_input_dim(self) -> int:
        """Input size of the first LSTM (61 * 32 = 1952 for the recipe)."""
        return self.conv_out_width * self.conv_channels[-1]

    def to_dict(self) -> Dict[str, Any]:
        """Plain-type dict (stored in our checkpoints)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "ModelArch":
        known = {k: values[k] for k in cls.__dataclass_fields__ if k in values}
        return cls(**known)


class ConvBlock(nn.Module):
    """Conv2d -> BatchNorm2d -> ReLU -> Dropout (keys ``conv.*``, ``batch_norm.*``)."""

    def __init__(self, in_channels: int, out_channels: int, stride: Tuple[int, int],
                 dropout: float) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size=CONV_KERNEL, stride=stride,
                              padding=CONV_PADDING)
        self.batch_norm = nn.BatchNorm2d(out_channels)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(torch.relu(self.batch_norm(self.conv(x))))


def _time_major_batch_norm(norm: nn.BatchNorm1d, x: torch.Tensor) -> torch.Tensor:
    """BatchNorm1d over the channels of a ``[T, B, C]`` tensor (statistics over T and B)."""
    steps, batch, channels = x.shape
    return norm(x.reshape(steps * batch, channels)).reshape(steps, batch, channels)


class BiLSTMLayer(nn.Module):
    """Optional BatchNorm1d, then a bias-free bidirectional LSTM over ``[T, B, C]``."""

    def __init__(self, input_size: int, hidden: int, layout: str, batch_norm: bool,
                 dropout: float) -> None:
        super().__init__()
        self.layout = layout
        if batch_norm:
            self.batch_norm = nn.BatchNorm1d(input_size)
        else:
            self.batch_norm = None
        if layout == "gpu":
            self.rnn = nn.LSTM(input_size, hidden, bias=False, bidirectional=True)
        else:
            self.rnn = nn.LSTM(input_size, hidden, bias=False)
            self.rnn_w = nn.LSTM(input_size, hidden, bias=False)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.batch_norm is not None:
            x = _time_major_batch_norm(self.batch_norm, x)
        if self.layout == "gpu":
            out, _ = self.rnn(x)
        else:
            forward_out, _ = self.rnn(x)
            backward_out, _ = self.rnn_w(torch.flip(x, dims=[0]))
            out = torch.cat([forward_out, torch.flip(backward_out, dims=[0])], dim=2)
        return self.dropout(out)


class CTCModel(nn.Module):
    """The recipe's CNN + BiLSTM CTC acoustic model; see the module docstring."""

    def __init__(self, arch: ModelArch) -> None:
        super().__init__()
        self.arch = arch
        self.units: List[str] = []
        blocks = []
        in_channels = 1
        for index, (channels, stride) in enumerate(
                zip(arch.conv_channels, conv_strides(len(arch.conv_channels)))):
            blocks.append((str(index), ConvBlock(in_channels, channels, stride, arch.dropout)))
            in_channels = channels
        self.conv = nn.Sequential(OrderedDict(blocks))
        layers = []
        size = arch.lstm_input_dim
        for index in range(arch.lstm_layers):
            layers.append((str(index), BiLSTMLayer(size, arch.hidden, arch.layout,
                                                   batch_norm=index > 0, dropout=arch.dropout)))
            size = 2 * arch.hidden
        self.rnns = nn.Sequential(OrderedDict(layers))
        self.fc = nn.Sequential(nn.BatchNorm1d(size),
                                nn.Linear(size, arch.num_classes, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x [B, T, input_dim]`` -> log-probs ``[T', B, num_classes]``."""
        x = self.conv(x.unsqueeze(1))                    # [B, C, T', W]
        batch, channels, steps, width = x.shape
        x = x.permute(2, 0, 1, 3).reshape(steps, batch, channels * width)  # [T', B, C*W]
        x = self.rnns(x)
        logits = self.fc(x.reshape(steps * batch, -1)).reshape(steps, batch, -1)
        return torch.log_softmax(logits, dim=-1)

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        """Valid output frames for inputs of ``lengths`` valid frames (int64)."""
        out = torch.as_tensor(lengths, dtype=torch.int64)
        for time_stride, _ in conv_strides(len(self.arch.conv_channels)):
            out = torch.div(out + 2 * CONV_PADDING[0] - CONV_KERNEL[0], time_stride,
                            rounding_mode="floor") + 1
        return out

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
