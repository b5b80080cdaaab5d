"""Fixtures of the model tests: a tiny architecture and randomly initialised weights."""

from __future__ import annotations

import pytest
import torch

from lstm_exp.model import CTCModel, ModelArch

TINY = dict(input_dim=243, conv_channels=[4, 3], lstm_layers=2, hidden=8, num_classes=7)


def randomize_batch_norms(model: torch.nn.Module, seed: int) -> None:
    """Give every BatchNorm non-trivial running statistics and affine parameters."""
    generator = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            n = module.num_features
            module.running_mean.copy_(torch.randn(n, generator=generator) * 0.5)
            module.running_var.copy_(torch.rand(n, generator=generator) + 0.5)
            module.weight.data.copy_(torch.rand(n, generator=generator) + 0.5)
            module.bias.data.copy_(torch.randn(n, generator=generator) * 0.2)


@pytest.fixture
def tiny_gpu_model() -> CTCModel:
    """A GPU-layout tiny model with random weights and BatchNorm statistics, in eval mode."""
    torch.manual_seed(0)
    model = CTCModel(ModelArch(**TINY, layout="gpu"))
    randomize_batch_norms(model, seed=1)
    return model.eval()


@pytest.fixture
def padded_batch() -> tuple[torch.Tensor, torch.Tensor]:
    """Three utterances of 17, 12 and 6 frames, zero-padded to 17."""
    generator = torch.Generator().manual_seed(2)
    lengths = torch.tensor([17, 12, 6])
    x = torch.zeros(3, 17, 243)
    for row, length in enumerate(lengths.tolist()):
        x[row, :length] = torch.randn(length, 243, generator=generator)
    return x, lengths
