"""Baseline for ``bench_beam.py``: a straightforward NumPy CTC prefix beam search + bigram LM.

The textbook prefix beam search: every hypothesis is a label prefix with two log-scores, ending
in blank (``pb``) and ending in its last label (``pnb``); at each frame each prefix is extended
by every class (vectorised over the classes with NumPy, the bookkeeping in a Python dict), then
the ``beam_width`` best prefixes by ``acoustic + lm_weight * LM`` survive.  The LM is the same
ARPA phone bigram the flashlight decoder uses, turned into a dense table of natural-log
probabilities ``P(w | h)`` (with back-off where a bigram is absent), ``<s>`` before the first
phone and ``</s>`` after the last.  UNK is masked like in ``lstm_exp.decode``.  No pruning
beyond the beam: this is the simple reference the fast decoder is measured against.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

NEG_INF = -np.inf


class DenseBigramLM:
    """ARPA bigram as a table: ``table[h, w]`` = ln P(w | h); row ``C`` is ``<s>``, column ``C`` is ``</s>``."""

    def __init__(self, arpa_path: Path, units: Sequence[str]) -> None:
        unigram: Dict[str, Tuple[float, float]] = {}
        bigram: Dict[Tuple[str, str], float] = {}
        section = None
        with open(arpa_path, "r", encoding="utf-8") as handle:
            for raw in handle:
                line = raw.strip()
                if line.startswith("\\"):
                    section = line
                    continue
                if not line:
                    continue
                fields = line.split()
                if section == "\\1-grams:":
                    backoff = float(fields[2]) if len(fields) > 2 else 0.0
                    unigram[fields[1]] = (float(fields[0]), backoff)
                elif section == "\\2-grams:":
                    bigram[(fields[1], fields[2])] = float(fields[0])
        num_classes = len(units)
        contexts = list(units) + ["<s>"]
        targets = list(units) + ["</s>"]
        unk = unigram.get("<unk>", (-100.0, 0.0))
        table = np.empty((num_classes + 1, num_classes + 1))
        for h, context in enumerate(contexts):
            backoff = unigram.get(context, unk)[1]
            for w, target in enumerate(targets):
                if (context, target) in bigram:
                    table[h, w] = bigram[(context, target)]
                else:
                    table[h, w] = backoff + unigram.get(target, unk)[0]
        self.table = table * math.log(10.0)
        self.bos = num_classes
        self.eos = num_classes


def _logaddexp(a: float, b: float) -> float:
    if a == NEG_INF:
        return b
    if b == NEG_INF:
        return a
    top = a if a > b else b
    return top + math.log1p(math.exp(-abs(a - b)))


def prefix_beam_search(
    log_probs: np.ndarray,
    beam_width: int = 10,
    lm: Optional[DenseBigramLM] = None,
    lm_weight: float = 0.0,
    blank_id: int = 0,
    unk_id: Optional[int] = 1,
) -> List[int]:
    """Best label sequence (class ids) for one utterance's ``[T, C]`` log-probs."""
    frames, num_classes = log_probs.shape
    log_probs = np.array(log_probs, dtype=np.float64)
    if unk_id is not None:
        log_probs[:, unk_id] = NEG_INF
    emitting = np.ones(num_classes, dtype=bool)
    emitting[blank_id] = False
    if unk_id is not None:
        emitting[unk_id] = False
    labels = np.flatnonzero(emitting)
    use_lm = lm is not None and lm_weight != 0.0

    # prefix -> [log P(prefix, ends in blank), log P(prefix, ends in label), LM ln-prob of prefix]
    beams: Dict[Tuple[int, ...], List[float]] = {(): [0.0, NEG_INF, 0.0]}
    for t in range(frames):
        frame = log_probs[t]
        grown: Dict[Tuple[int, ...], List[float]] = {}
        for prefix, (p_blank, p_label, lm_score) in beams.items():
            total = _logaddexp(p_blank, p_label)
            entry = grown.setdefault(prefix, [NEG_INF, NEG_INF, lm_score])
            entry[0] = _logaddexp(entry[0], total + frame[blank_id])
            last = prefix[-1] if prefix else None
            if last is not None:
                entry[1] = _logaddexp(entry[1], p_label + frame[last])
            # extend with every label at once; a repeat of the last label needs a blank between
            extend = total + frame[labels]
            if last is not None:
                extend[labels == last] = p_blank + frame[last]
            lm_row = lm.table[lm.bos if last is None else last] if use_lm else None
            for label, score in zip(labels.tolist(), extend.tolist()):
                if score == NEG_INF:
                    continue
                longer = prefix + (label,)
                child = grown.get(longer)
                if child is None:
                    grown[longer] = [NEG_INF, score, lm_score + (lm_row[label] if use_lm else 0.0)]
                else:
                    child[1] = _logaddexp(child[1], score)
        ranked = sorted(
            grown.items(),
            key=lambda item: _logaddexp(item[1][0], item[1][1]) + lm_weight * item[1][2],
            reverse=True,
        )
        beams = dict(ranked[:beam_width])

    def final_score(item) -> float:
        prefix, (p_blank, p_label, lm_score) = item
        if use_lm:
            last = prefix[-1] if prefix else lm.bos
            lm_score = lm_score + lm.table[last, lm.eos]
        return _logaddexp(p_blank, p_label) + lm_weight * lm_score

    best_prefix, _ = max(beams.items(), key=final_score)
    return list(best_prefix)


def decode_batch(
    log_probs: np.ndarray,
    lengths: np.ndarray,
    units: Sequence[str],
    beam_width: int = 10,
    lm: Optional[DenseBigramLM] = None,
    lm_weight: float = 0.0,
) -> List[List[str]]:
    """Decode a time-major ``[T, B, C]`` batch utterance by utterance."""
    unk_id = list(units).index("UNK") if "UNK" in units else None
    out = []
    for b in range(log_probs.shape[1]):
        ids = prefix_beam_search(log_probs[: int(lengths[b]), b], beam_width, lm, lm_weight, 0, unk_id)
        out.append([units[i] for i in ids])
    return out
