"""Training-time augmentation of spliced fbank batches: mel-axis warp and SpecAugment masks.

Batches arrive as ``[B, T, 243]``: three spliced copies (frames t, t+1, t+2) of the 81-dim
Kaldi fbank, each ``[energy, mel_0 .. mel_79]`` (Kaldi puts the energy first), after global
CMVN.  Every augmentation is applied to the 80 mel bins of all three blocks identically (they
are the same signal at different times) and leaves the energy columns alone:

* warp: per utterance a factor ``alpha`` from ``[warp_min, warp_max]``; output bin ``j`` takes
  the value at position ``j * alpha`` of the mel axis (linear interpolation, clamped at the
  edges), a vocal-tract-length style stretch;
* frequency masks: bands of up to ``freq_mask_width`` mel bins set to 0 (the CMVN mean);
* time masks: runs of up to ``time_mask_width`` frames set to 0, inside the valid frames.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

FBANK_DIM = 81
MEL_BINS = 80
ENERGY_COLUMN = 0


@dataclass
class AugmentParams:
    """What :func:`augment_batch` does; the defaults live in ``conf_schemas.model.TrainConfig``."""

    warp_min: float
    warp_max: float
    freq_masks: int
    freq_mask_width: int
    time_masks: int
    time_mask_width: int


def _mel_columns(dim: int) -> torch.Tensor:
    """Column indices ``[blocks, 80]`` of the mel bins in a ``dim``-wide spliced frame."""
    if dim % FBANK_DIM:
        raise ValueError(f"feature dim {dim} is not a multiple of {FBANK_DIM} (energy + 80 mel)")
    blocks = dim // FBANK_DIM
    base = torch.arange(blocks).unsqueeze(1) * FBANK_DIM
    return base + (ENERGY_COLUMN + 1) + torch.arange(MEL_BINS).unsqueeze(0)


def warp_mel(x: torch.Tensor, alphas: torch.Tensor) -> torch.Tensor:
    """Warp the mel axis of ``x [B, T, D]`` by one factor per utterance (``alphas [B]``)."""
    columns = _mel_columns(x.shape[2]).to(x.device)              # [K, 80]
    mel = x[:, :, columns]                                        # [B, T, K, 80]
    source = torch.arange(MEL_BINS, device=x.device, dtype=x.dtype).unsqueeze(0) \
        * alphas.to(x.dtype).unsqueeze(1)                         # [B, 80]
    source = source.clamp(0, MEL_BINS - 1)
    low = source.floor().long().clamp(max=MEL_BINS - 2)
    frac = (source - low.to(x.dtype))[:, None, None, :]
    index = low[:, None, None, :].expand_as(mel)
    left = torch.gather(mel, 3, index)
    right = torch.gather(mel, 3, index + 1)
    out = x.clone()
    out[:, :, columns] = left + frac * (right - left)
    return out


def augment_batch(x: torch.Tensor, lengths: torch.Tensor, params: AugmentParams,
                  generator: torch.Generator) -> torch.Tensor:
    """Return an augmented copy of ``x [B, T, D]`` (``lengths``: valid frames per row)."""
    batch, steps, dim = x.shape
    columns = _mel_columns(dim).to(x.device)
    if params.warp_max > params.warp_min:
        alphas = params.warp_min + (params.warp_max - params.warp_min) * torch.rand(
            batch, generator=generator)
        x = warp_mel(x, alphas.to(x.device))
    else:
        x = x.clone()
    for row in range(batch):
        for _ in range(params.freq_masks):
            width = int(torch.randint(0, params.freq_mask_width + 1, (1,), generator=generator))
            if width == 0:
                continue
            start = int(torch.randint(0, MEL_BINS - width + 1, (1,), generator=generator))
            x[row, :, columns[:, start:start + width].reshape(-1)] = 0.0
        valid = int(lengths[row])
        for _ in range(params.time_masks):
            width = int(torch.randint(0, params.time_mask_width + 1, (1,), generator=generator))
            if width == 0 or width >= valid:
                continue
            start = int(torch.randint(0, valid - width + 1, (1,), generator=generator))
            x[row, start:start + width, :] = 0.0
    return x
