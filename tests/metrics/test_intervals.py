"""Interval code against hand-checked cases: identical systems, a strictly better system, the
point estimate inside its interval, seeds that make results repeatable, and kaldialign's own
figures where both compute the same thing."""
from __future__ import annotations

import kaldialign
import numpy as np
import pytest

from lstm_exp.metrics.intervals import (REPLICATIONS, paired_per_delta, per_interval, speaker_per_interval,
                                        speedup_interval, timing_intervals)


def _random_errors(seed=1, n=60):
    rng = np.random.default_rng(seed)
    refs = rng.integers(10, 40, size=n)
    errors = rng.binomial(refs, 0.2)
    return errors, refs


def test_identical_systems_give_delta_zero_and_probability_one_half():
    errors, refs = _random_errors()
    paired = paired_per_delta(errors, errors, refs)
    assert paired.delta.value == 0.0 and paired.delta.low == 0.0 and paired.delta.high == 0.0
    assert paired.p_better == 0.5
    assert paired.p_strictly_better == 0.0  # what Kaldi / kaldialign report for identical systems


def test_strictly_fewer_errors_on_every_utterance_gives_probability_one():
    errors, refs = _random_errors()
    fewer = errors - 1
    assert (fewer >= 0).all()
    paired = paired_per_delta(errors, fewer, refs)
    assert paired.p_better == 1.0 and paired.p_strictly_better == 1.0
    # delta by hand: one error fewer on each of the 60 utterances
    assert paired.delta.value == pytest.approx(-100.0 * 60 / refs.sum())
    assert paired.delta.high < 0
    worse = paired_per_delta(errors, errors + 2, refs)
    assert worse.p_better == 0.0 and worse.delta.low > 0


def test_paired_probability_agrees_with_kaldialign_on_a_mixed_case():
    rng = np.random.default_rng(3)
    phones = list("abcdefgh")
    refs = [list(rng.choice(phones, size=rng.integers(5, 15))) for _ in range(80)]
    hyp1 = [r[:-1] if i % 3 == 0 else list(r) for i, r in enumerate(refs)]  # deletions on a third
    hyp2 = [r[:-1] if i % 4 == 0 else list(r) for i, r in enumerate(refs)]  # on a quarter, not nested
    errs1 = [kaldialign.edit_distance(r, h)["total"] for r, h in zip(refs, hyp1)]
    errs2 = [kaldialign.edit_distance(r, h)["total"] for r, h in zip(refs, hyp2)]
    ours = paired_per_delta(errs1, errs2, [len(r) for r in refs])
    theirs = kaldialign.bootstrap_wer_ci(refs, hyp1, hyp2, replications=REPLICATIONS, seed=0)
    assert ours.p_strictly_better == pytest.approx(theirs["p_s2_improv_over_s1"], abs=0.03)
    assert 0.0 < ours.p_better < 1.0 and ours.delta.contains(ours.delta.value)


def test_per_interval_contains_the_point_and_matches_kaldialign():
    refs = [list("abcde"), list("abc"), list("xyz"), list("pqrs")] * 10
    hyps = [list("abde"), list("abc"), list("xyzz"), list("pqrs")] * 10
    interval = per_interval(refs, hyps)
    assert interval.value == pytest.approx(100.0 * 20 / 150)  # 2 errors per 15 phones, by hand
    assert interval.low < interval.value < interval.high
    theirs = kaldialign.bootstrap_wer_ci(refs, hyps, replications=REPLICATIONS, seed=0)
    assert (interval.low, interval.high) == pytest.approx((100 * theirs["ci95min"], 100 * theirs["ci95max"]))
    assert per_interval(refs, hyps) == interval  # seeded: the same numbers again


def test_a_perfect_system_has_a_zero_width_interval():
    refs = [list("abc"), list("de")] * 5
    interval = per_interval(refs, refs)
    assert (interval.value, interval.low, interval.high) == (0.0, 0.0, 0.0)


def test_speaker_blocked_interval_is_wider_when_errors_cluster_by_speaker():
    errors, refs = _random_errors(n=80)
    speakers = [f"s{i // 8}" for i in range(80)]  # 10 speakers of 8 utterances
    clustered = np.where(np.arange(80) < 16, refs // 2, 0)  # two speakers make every error
    blocked = speaker_per_interval(clustered, refs, speakers)
    assert blocked.contains(blocked.value)
    assert blocked.value == pytest.approx(100.0 * clustered.sum() / refs.sum())
    plain = paired_per_delta(np.zeros(80), clustered, refs).delta  # utterance-level resampling
    assert blocked.high - blocked.low > plain.high - plain.low


def test_timing_intervals_collapse_on_constant_times_and_contain_the_point():
    steady = timing_intervals([4.0] * 20, [8] * 19 + [3])
    assert steady["infer_ms_p50"].low == steady["infer_ms_p50"].high == 4.0
    rng = np.random.default_rng(0)
    ms = rng.gamma(20.0, 0.5, size=100)
    found = timing_intervals(ms, [8] * 100)
    for interval in found.values():
        assert interval.low < interval.value < interval.high
    assert found["throughput_utt_s"].value == pytest.approx(1e3 * 800 / ms.sum())


def test_speedup_of_a_twice_as_fast_job_is_two():
    same = speedup_interval([10.0] * 30, [4] * 30, [10.0] * 30, [4] * 30)
    assert (same.value, same.low, same.high) == (1.0, 1.0, 1.0)
    rng = np.random.default_rng(2)
    base = rng.normal(10.0, 1.0, size=50)
    faster = speedup_interval(base, [4] * 50, base / 2, [4] * 50)
    assert faster.value == pytest.approx(2.0)
    assert faster.low < 2.0 < faster.high
