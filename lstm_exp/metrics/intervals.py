"""Uncertainty of a job's numbers: bootstrap intervals on PER and on speed, paired comparisons.

Contracts (every function is pure and seeded: same inputs, same numbers, on any machine):

* :func:`per_interval`: the utterance-level bootstrap of Bisani & Ney (2004), as Kaldi's
  ``compute-wer-bootci`` computes it, through the maintained implementation
  ``kaldialign.bootstrap_wer_ci`` (k2-fsa): ``REPLICATIONS`` resamples of the utterances, seed
  ``SEED``; the interval is the bootstrap mean +- 1.96 standard deviations, in percent.
* :func:`speaker_per_interval`: the same resampling over *speakers* (an utterance's errors are not
  independent of its speaker's), percentile interval; numpy, seeded.
* :func:`paired_per_delta`: two systems on the same utterances, resampled together: the PER
  delta (``other - baseline``, points), its 95 % percentile interval, and the probability that
  ``other`` is better (fewer errors) over the resamples, ties counted half, so identical systems
  give 0.5 (Kaldi / kaldialign count strict improvements only, which gives 0 for identical
  systems; their strict figure is ``p_strictly_better``).
* :func:`timing_intervals`: throughput (utterances / model seconds) and p50 latency, resampling the
  timed batches; :func:`speedup_interval`: the ratio of two jobs' throughputs, each job's batches
  resampled independently (two runs are not paired in time).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

#: bootstrap resamples (Bisani & Ney use 10^3 - 10^4; Kaldi's default is 10^4)
REPLICATIONS = 2000
#: the one seed of every bootstrap here
SEED = 0
#: two-sided 95 %: the percentiles of a percentile interval
CI_PERCENTILES = (2.5, 97.5)


@dataclass(frozen=True)
class Interval:
    """A point estimate with its 95 % interval."""

    value: float
    low: float
    high: float

    def contains(self, x: float) -> bool:
        return self.low <= x <= self.high

    def text(self, digits: int = 2) -> str:
        return f"{self.value:.{digits}f} [{self.low:.{digits}f}, {self.high:.{digits}f}]"


def per_interval(refs: Sequence[Sequence[str]], hyps: Sequence[Sequence[str]], replications: int = REPLICATIONS,
                 seed: int = SEED) -> Interval:
    """PER (percent) over all utterances with kaldialign's bootstrap interval (see module doc)."""
    import kaldialign

    if not refs or sum(len(r) for r in refs) == 0:
        raise ValueError("per_interval needs at least one non-empty reference")
    found = kaldialign.bootstrap_wer_ci([list(r) for r in refs], [list(h) for h in hyps],
                                        replications=replications, seed=seed)
    errors = sum(kaldialign.edit_distance(list(r), list(h))["total"] for r, h in zip(refs, hyps))
    point = 100.0 * errors / sum(len(r) for r in refs)
    return Interval(point, 100.0 * found["ci95min"], 100.0 * found["ci95max"])


def _percentile_interval(point: float, samples: np.ndarray) -> Interval:
    low, high = np.percentile(samples, CI_PERCENTILES)
    return Interval(float(point), float(low), float(high))


def speaker_per_interval(errors: Sequence[int], ref_phones: Sequence[int], speakers: Sequence[str],
                         replications: int = REPLICATIONS, seed: int = SEED) -> Interval:
    """PER with a speaker-blocked percentile bootstrap (speakers resampled with replacement)."""
    names = sorted(set(speakers))
    index = {name: i for i, name in enumerate(names)}
    per_spk_err = np.zeros(len(names))
    per_spk_ref = np.zeros(len(names))
    for e, r, s in zip(errors, ref_phones, speakers):
        per_spk_err[index[s]] += e
        per_spk_ref[index[s]] += r
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(names), size=(replications, len(names)))
    refs = per_spk_ref[picks].sum(axis=1)
    rates = 100.0 * per_spk_err[picks].sum(axis=1) / np.where(refs > 0, refs, np.nan)
    point = 100.0 * per_spk_err.sum() / per_spk_ref.sum()
    return _percentile_interval(point, rates[np.isfinite(rates)])


@dataclass(frozen=True)
class PairedDelta:
    """``other`` minus ``baseline`` on the same utterances."""

    delta: Interval
    p_better: float
    p_strictly_better: float
    utterances: int


def paired_per_delta(base_errors: Sequence[int], other_errors: Sequence[int], ref_phones: Sequence[int],
                     replications: int = REPLICATIONS, seed: int = SEED) -> PairedDelta:
    """PER delta in points with its paired-bootstrap interval and P(other better); see module doc.

    The three sequences are aligned: entry i of each is the same utterance."""
    base = np.asarray(base_errors, dtype=np.float64)
    other = np.asarray(other_errors, dtype=np.float64)
    refs = np.asarray(ref_phones, dtype=np.float64)
    if not (len(base) == len(other) == len(refs)) or len(refs) == 0 or refs.sum() == 0:
        raise ValueError("paired_per_delta needs the same non-empty utterances with references in both systems")
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(refs), size=(replications, len(refs)))
    diff = other - base
    total_refs = refs[picks].sum(axis=1)
    valid = total_refs > 0
    deltas = 100.0 * diff[picks].sum(axis=1)[valid] / total_refs[valid]
    point = 100.0 * diff.sum() / refs.sum()
    strictly = float(np.mean(deltas < 0))
    return PairedDelta(_percentile_interval(point, deltas), strictly + 0.5 * float(np.mean(deltas == 0)), strictly,
                       len(refs))


def _throughput(ms: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    return 1e3 * sizes.sum(axis=-1) / ms.sum(axis=-1)


def _resampled(ms: Sequence[float], sizes: Sequence[int], rng: np.random.Generator, replications: int):
    ms_arr = np.asarray(ms, dtype=np.float64)
    sizes_arr = np.asarray(sizes, dtype=np.float64)
    picks = rng.integers(0, len(ms_arr), size=(replications, len(ms_arr)))
    return ms_arr, sizes_arr, ms_arr[picks], sizes_arr[picks]


def timing_intervals(infer_ms: Sequence[float], sizes: Sequence[int], replications: int = REPLICATIONS,
                     seed: int = SEED) -> Mapping[str, Interval]:
    """``throughput_utt_s`` and ``infer_ms_p50`` with percentile intervals over the timed batches."""
    if len(infer_ms) == 0 or len(infer_ms) != len(sizes):
        raise ValueError("timing_intervals needs one batch size per timed batch")
    rng = np.random.default_rng(seed)
    ms, size, ms_r, size_r = _resampled(infer_ms, sizes, rng, replications)
    if ms.sum() <= 0:  # a backend that reports no time: no rate to bound
        return {"infer_ms_p50": _percentile_interval(float(np.median(ms)), np.median(ms_r, axis=1))}
    return {
        "throughput_utt_s": _percentile_interval(float(_throughput(ms, size)), _throughput(ms_r, size_r)),
        "infer_ms_p50": _percentile_interval(float(np.median(ms)), np.median(ms_r, axis=1)),
    }


def speedup_interval(base_ms: Sequence[float], base_sizes: Sequence[int], other_ms: Sequence[float],
                     other_sizes: Sequence[int], replications: int = REPLICATIONS, seed: int = SEED) -> Interval:
    """``throughput(other) / throughput(baseline)`` with a percentile interval (independent resamples)."""
    rng = np.random.default_rng(seed)
    b_ms, b_size, b_ms_r, b_size_r = _resampled(base_ms, base_sizes, rng, replications)
    o_ms, o_size, o_ms_r, o_size_r = _resampled(other_ms, other_sizes, rng, replications)
    point = float(_throughput(o_ms, o_size) / _throughput(b_ms, b_size))
    return _percentile_interval(point, _throughput(o_ms_r, o_size_r) / _throughput(b_ms_r, b_size_r))
