"""Best-path (greedy) CTC decoding, vectorised over the batch with NumPy.

Also holds what every decoder shares: the unit table (class id -> phone name, where blank and
UNK are) and the validation of a ``[T, B, C]`` log-prob batch with its lengths.

UNK policy (all decoders): the UNK column is masked to ``-inf`` *before* decoding, so a frame
whose best class is UNK takes its best remaining class instead.  UNK is never a training
target, so it carries no phone identity; dropping UNK tokens *after* decoding would instead
treat those frames as silent and could merge the phones either side of them.  With a trained
model the UNK posterior is tiny and both choices give the same output; masking keeps the
greedy and beam decoders consistent (the beam search never sees UNK at all).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import numpy as np

from lstm_exp.errors import CheckpointError, DataError

BLANK = "blank"
UNK = "UNK"
#: the one line every consumer of phone names gives for a model without units
NO_UNITS_MESSAGE = ("carries no unit list, so its class ids cannot be mapped to phones; set "
                    "model.units_file to the units it was trained with (the recipe's data/units)")


@dataclass(frozen=True)
class UnitTable:
    """The class list of a model: ``names[i]`` is class ``i``; blank must be class 0."""

    names: Tuple[str, ...]
    blank_id: int
    unk_id: Optional[int]

    @classmethod
    def from_units(cls, units: Optional[Sequence[str]]) -> "UnitTable":
        """Check ``units`` (``["blank", "UNK", phones...]``) and locate blank and UNK.

        ``None`` (a model loaded from a checkpoint without units) is refused in one line that
        names ``model.units_file``."""
        if units is None:
            raise CheckpointError(f"the model {NO_UNITS_MESSAGE}")
        names = tuple(str(u) for u in units)
        faults: List[str] = []
        if len(names) < 2:
            faults.append(f"units: {len(names)} classes; expected blank, UNK and the phones")
        elif names[0] != BLANK:
            faults.append(f"units[0]: {names[0]!r}; class 0 must be {BLANK!r} (the CTC blank)")
        seen = set()
        for idx, name in enumerate(names):
            if not name or any(ch.isspace() for ch in name):
                faults.append(f"units[{idx}]: {name!r} is empty or contains whitespace")
            if name in seen:
                faults.append(f"units[{idx}]: {name!r} appears twice")
            seen.add(name)
        if faults:
            raise DataError("invalid unit list:\n" + "\n".join(faults))
        return cls(names=names, blank_id=0, unk_id=names.index(UNK) if UNK in names else None)

    @property
    def num_classes(self) -> int:
        return len(self.names)


def check_batch(log_probs: np.ndarray, lengths: np.ndarray, num_classes: int) -> Tuple[np.ndarray, np.ndarray]:
    """Validate a time-major ``[T, B, C]`` batch and its ``[B]`` lengths; return them as arrays."""
    log_probs = np.asarray(log_probs)
    lengths = np.asarray(lengths)
    if log_probs.ndim != 3:
        raise DataError(f"log_probs: shape {log_probs.shape}; expected time-major [T, B, C]")
    frames, batch, classes = log_probs.shape
    if classes != num_classes:
        raise DataError(
            f"log_probs: {classes} classes but the unit list has {num_classes}; "
            "decode with the units the model was trained with"
        )
    if lengths.shape != (batch,):
        raise DataError(f"lengths: shape {lengths.shape}; expected ({batch},), one length per utterance")
    if not np.issubdtype(lengths.dtype, np.integer):
        raise DataError(f"lengths: dtype {lengths.dtype}; expected integer frame counts")
    bad = np.flatnonzero((lengths < 0) | (lengths > frames))
    if bad.size:
        raise DataError(
            f"lengths: {lengths[bad].tolist()} at batch positions {bad.tolist()} outside 0..{frames} frames"
        )
    return log_probs, lengths.astype(np.int64)


def mask_unk(log_probs: np.ndarray, unk_id: Optional[int], dtype: type = np.float32) -> np.ndarray:
    """Copy of ``log_probs`` as ``dtype`` with the UNK column set to ``-inf`` (see module doc)."""
    out = np.array(log_probs, dtype=dtype, copy=True)
    if unk_id is not None:
        out[..., unk_id] = -np.inf
    return out


def collapse_best_path(best: np.ndarray, lengths: np.ndarray, blank_id: int) -> List[np.ndarray]:
    """CTC collapse of per-frame class ids ``[T, B]``: merge repeats, drop blanks, cut at length.

    Repeats are merged only when adjacent; a blank between two equal labels keeps both.
    Returns one int array of class ids per utterance.
    """
    frames, batch = best.shape
    if frames == 0:
        return [np.empty(0, dtype=best.dtype) for _ in range(batch)]
    by_utt = np.ascontiguousarray(best.T)  # [B, T]
    previous = np.empty_like(by_utt)
    previous[:, 0] = blank_id
    previous[:, 1:] = by_utt[:, :-1]
    inside = np.arange(frames)[None, :] < lengths[:, None]
    keep = inside & (by_utt != blank_id) & (by_utt != previous)
    counts = keep.sum(axis=1)
    kept_ids = by_utt[keep]  # row-major order: utterance by utterance, frames in order
    return np.split(kept_ids, np.cumsum(counts)[:-1]) if batch else []


class GreedyDecoder:
    """Best-path decoder: ``decode(log_probs [T, B, C], lengths [B]) -> list of phone lists``."""

    def __init__(self, units: Sequence[str]) -> None:
        self.units = UnitTable.from_units(units)

    def decode(self, log_probs: np.ndarray, lengths: np.ndarray) -> List[List[str]]:
        log_probs, lengths = check_batch(log_probs, lengths, self.units.num_classes)
        scores = log_probs
        if self.units.unk_id is not None:
            float_type = log_probs.dtype if np.issubdtype(log_probs.dtype, np.floating) else np.float32
            scores = mask_unk(log_probs, self.units.unk_id, dtype=float_type)
        best = np.argmax(scores, axis=2)  # [T, B]
        names = self.units.names
        return [[names[i] for i in ids.tolist()] for ids in collapse_best_path(best, lengths, self.units.blank_id)]
