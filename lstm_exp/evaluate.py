"""Infer and score one split: batches -> backend -> log-probs -> decoder -> PER/CER + timings.

The per-job part of an experiment (never cached: it is what a sweep measures).  Timing follows
``lstm_exp.metrics.timing``: warm-up batches first (untimed), then for every batch the backend's
model-only ``infer_ms`` and the caller's ``e2e_ms`` around ``Backend.run``; decoding is timed
apart as ``decode_ms``.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
from tqdm import tqdm

from lstm_exp.backends.base import Backend
from lstm_exp.data.batching import Example, make_batches
from lstm_exp.errors import DataError
from lstm_exp.metrics.errors import recipe_scores, score_utterances
from lstm_exp.metrics.timing import latency_stats, throughput_stats

log = logging.getLogger(__name__)


@dataclass
class EvaluationResult:
    """Hypotheses, references, metrics and the per-utterance table of one split."""

    metrics: dict[str, float]
    rows: list[dict]
    confusions: list[tuple[str, str, int]] = field(default_factory=list)
    log_probs: dict[str, np.ndarray] = field(default_factory=dict)


def evaluate(
    backend: Backend,
    decoder,
    examples: Sequence[Example],
    units: Sequence[str],
    batch_size: int,
    pad_to: Optional[int],
    warmup: int,
    audio_seconds: float,
    output_lengths: Callable[[np.ndarray], np.ndarray],
    keep_log_probs: bool = False,
    progress: bool = True,
    recipe_leading_space: bool = True,
) -> EvaluationResult:
    """Run every example through ``backend`` and ``decoder``; return metrics and rows.

    ``output_lengths`` maps input frames to valid output frames (the model's
    ``CTCModel.output_lengths``): log-probs beyond them are padding and are not decoded.

    ``recipe_leading_space``: the recipe's greedy decoder prefixes every hypothesis with a space
    (its beam decoder does not); ``cer_recipe`` reproduces that artefact when true."""
    if not examples:
        raise DataError("no utterances to evaluate")
    batches = list(make_batches(examples, batch_size, pad_to=pad_to))
    if warmup:
        backend.warmup(batches[0].x, warmup)
    infer_ms: list[float] = []
    e2e_ms: list[float] = []
    decode_ms: list[float] = []
    sizes: list[int] = []
    hyps: dict[str, list[str]] = {}
    kept: dict[str, np.ndarray] = {}
    for batch in tqdm(batches, desc=f"infer {backend.name} b{batch_size}", disable=not progress, unit="batch"):
        t0 = time.perf_counter()
        out = backend.run(batch.x)
        e2e_ms.append((time.perf_counter() - t0) * 1e3)
        infer_ms.append(out.infer_ms)
        sizes.append(len(batch.ids))
        log_probs = out.log_probs
        if log_probs.ndim != 3 or log_probs.shape[1] != len(batch.ids) or log_probs.shape[2] != len(units):
            raise DataError(
                f"backend {backend.name} returned log-probs of shape {log_probs.shape}; expected [T', {len(batch.ids)}, {len(units)}]"
            )
        lengths = np.minimum(output_lengths(batch.lengths), log_probs.shape[0])
        t1 = time.perf_counter()
        decoded = decoder.decode(log_probs, lengths)
        decode_ms.append((time.perf_counter() - t1) * 1e3)
        for i, (utt, hyp) in enumerate(zip(batch.ids, decoded)):
            hyps[utt] = list(hyp)
            if keep_log_probs:
                kept[utt] = np.array(log_probs[: lengths[i], i])
    refs = {ex.utt_id: [units[i] for i in ex.labels] for ex in examples}
    report = score_utterances(refs, hyps)
    order = [ex.utt_id for ex in examples]
    per_recipe, cer_recipe = recipe_scores([(u, refs[u]) for u in order], [(u, hyps[u]) for u in order], batch_size,
                                         hyp_leading_space=recipe_leading_space)
    metrics = {
        "per": report.per,
        "cer": report.cer,
        "per_recipe": per_recipe,
        "cer_recipe": cer_recipe,
        "substitutions": report.substitutions,
        "deletions": report.deletions,
        "insertions": report.insertions,
        "ref_phones": report.ref_phones,
        "unk_ref_phones": report.unk_ref_phones,
        "utterances": len(examples),
        "batches": len(batches),
        "decode_ms_total": float(np.sum(decode_ms)),
    }
    metrics.update(latency_stats("infer_ms", infer_ms))
    metrics.update(latency_stats("e2e_ms", e2e_ms))
    metrics.update(latency_stats("decode_ms", decode_ms))
    metrics.update(throughput_stats(infer_ms, sizes, audio_seconds))
    confusions = [(ref, hyp, count) for (ref, hyp), count in report.top_confusions(10)]
    return EvaluationResult(metrics=metrics, rows=report.rows(), confusions=confusions, log_probs=kept)


def audio_seconds_of(prepared_dir: Path, split: str, utt_ids: Sequence[str], frame_shift_s: float = 0.010,
                     frame_length_s: float = 0.025) -> float:
    """Audio duration of ``utt_ids`` from ``utt2num_frames`` (snip_edges: (n - 1) * shift + length)."""
    from lstm_exp.data.kaldi_dir import read_table

    frames_file = prepared_dir / split / "utt2num_frames"
    rows, faults = read_table(frames_file)
    frames = {utt: rest for _, utt, rest in rows}
    faults += [f"{frames_file}: no frame count for {utt}" for utt in utt_ids if not frames.get(utt, "").isdigit()]
    if faults:
        raise DataError("\n".join([f"{frames_file}: {len(faults)} problem(s); re-run the prepare stage", *faults[:10]]))
    return sum((int(frames[utt]) - 1) * frame_shift_s + frame_length_s for utt in utt_ids)
