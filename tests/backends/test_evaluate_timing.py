"""Timing and parity in lstm_exp.evaluate on a backend with a known delay: the statistics are
checked against the times the backend reports (never against wall-clock bounds that flake),
decoding happens once, passes and the cold start are counted, parity is logged."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from lstm_exp.backends.base import Backend, RunOutput, Variant
from lstm_exp.data.batching import Example
from lstm_exp.errors import DataError
from lstm_exp.evaluate import TimingPlan, evaluate

UNITS = ["blank", "UNK", "a", "b"]
LOAD_S = 0.02


class KnownDelayBackend(Backend):
    """Sleeps ``delay_ms`` per batch and reports exactly that as its model time; log-probs that
    spell each utterance's label (plus ``offset``) so that PER is known."""

    name = "known-delay"

    def __init__(self, delay_ms: float, offset: float = 0.0, labels_by_first_value=None) -> None:
        self.delay_ms, self.offset = delay_ms, offset
        self.labels = labels_by_first_value or {}
        self.runs, self.loaded = 0, False

    def load(self, artifact: Path) -> None:
        time.sleep(LOAD_S)
        self.loaded = True

    def run(self, x: np.ndarray) -> RunOutput:
        assert self.loaded
        self.runs += 1
        time.sleep(self.delay_ms / 1e3)
        frames = x.shape[1]
        out = np.full((frames, x.shape[0], len(UNITS)), -10.0, dtype=np.float32)
        out[:, :, 0] = 0.0  # blank everywhere ...
        for row in range(x.shape[0]):
            label = self.labels.get(int(x[row, 0, 0]), [])
            for t, unit in enumerate(label):  # ... except the label, one frame each, blank between
                out[2 * t, row, :] = -10.0
                out[2 * t, row, unit] = 0.0
        return RunOutput(log_probs=out + self.offset, infer_ms=self.delay_ms)

    def device_peak_mem_mb(self):
        return 12.5


class CountingGreedy:
    def __init__(self) -> None:
        self.calls = 0

    def decode(self, log_probs, lengths):
        self.calls += 1
        best = log_probs.argmax(-1)
        hyps = []
        for row, n in enumerate(lengths):
            seq, prev = [], 0
            for unit in best[:n, row]:
                if unit != prev and unit != 0:
                    seq.append(UNITS[unit])
                prev = unit
            hyps.append(seq)
        return hyps


def _examples(lengths):
    examples = []
    for i, n in enumerate(lengths):
        feats = np.zeros((n, 3), dtype=np.float32)
        feats[0, 0] = i + 1
        examples.append(Example(f"utt{i:02d}", feats, np.array([2, 3] if i % 2 else [3], dtype=np.int64)))
    return examples


def _labels(examples):
    return {i + 1: list(ex.labels) for i, ex in enumerate(examples)}


def _run(backend, examples, **kwargs):
    decoder = CountingGreedy()
    defaults = dict(batch_size=4, pad_to=None, warmup=2, audio_seconds=10.0, output_lengths=lambda f: np.asarray(f),
                    progress=False, artifact=Path("model.bin"))
    defaults.update(kwargs)
    plan = TimingPlan(**{name: defaults.pop(name) for name in TimingPlan.__dataclass_fields__ if name in defaults})
    result = evaluate(backend, decoder, examples, UNITS, defaults.pop("batch_size"), defaults.pop("pad_to"),
                      defaults.pop("audio_seconds"), plan=plan, **defaults)
    return result, decoder


def test_stats_come_from_every_timed_pass_and_decoding_happens_once(tmp_path):
    examples = _examples([6, 9, 4, 7, 8, 5, 6, 10, 4, 6])  # 3 batches of 4, 4, 2
    backend = KnownDelayBackend(delay_ms=3.0, labels_by_first_value=_labels(_examples([6, 9, 4, 7, 8, 5, 6, 10, 4, 6])))
    result, decoder = _run(backend, examples, repeats=4)
    m = result.metrics
    assert backend.runs == 1 + 2 + 4 * 3  # cold-start batch, warm-ups, 4 timed passes of 3 batches
    assert decoder.calls == 3  # the first pass only
    assert m["timed_passes"] == 4 and m["batches"] == 3
    assert m["infer_ms_mean"] == pytest.approx(3.0) and m["infer_ms_p50"] == pytest.approx(3.0)
    assert m["infer_ms_p99"] == pytest.approx(3.0) and m["infer_ms_std"] == pytest.approx(0.0)
    assert m["recipe_ms_per_batch"] == pytest.approx(3.0)
    assert m["recipe_utt_s"] == pytest.approx(1000.0 / 3.0 * 4)  # the guide's formula, nominal batch
    assert m["throughput_utt_s"] == pytest.approx(10 * 4 / (12 * 3.0 / 1e3))  # real utterances / model time
    assert m["rtf"] == pytest.approx(12 * 3.0 / 1e3 / (10.0 * 4))
    assert m["e2e_ms_min"] >= 3.0  # sleeps last at least their time
    assert m["cold_start_ms"] >= LOAD_S * 1e3 + 3.0
    assert m["device_peak_mem_mb"] == 12.5 and m["host_peak_rss_mb"] > 0
    assert m["per"] == 0.0  # the backend spells every label
    assert [row["utt_id"] for row in result.rows] == [ex.utt_id for ex in examples]


def test_min_seconds_adds_passes_beyond_repeats():
    examples = _examples([4, 4, 4, 4])
    backend = KnownDelayBackend(delay_ms=5.0, labels_by_first_value=_labels(examples))
    result, decoder = _run(backend, examples, warmup=0, repeats=1, min_seconds=0.05)
    assert result.metrics["timed_passes"] > 1  # one pass takes ~5 ms
    assert result.metrics["infer_ms_mean"] == pytest.approx(5.0)
    assert decoder.calls == 1


@pytest.mark.parametrize("batching", ["fixed", "longest", "sorted"])
def test_every_batching_mode_keeps_the_split_order(batching):
    lengths = [6, 12, 4, 7, 8, 3, 6, 10, 4]
    examples = _examples(lengths)
    backend = KnownDelayBackend(delay_ms=0.0, labels_by_first_value=_labels(examples))
    result, _ = _run(backend, examples, batching=batching, pad_to=20 if batching == "fixed" else None, warmup=0)
    assert [row["utt_id"] for row in result.rows] == [ex.utt_id for ex in examples]
    assert result.metrics["per"] == 0.0
    # batches of 4, 4, 1: fixed pads all to 20; longest pads [6,12,4,7] [8,3,6,10] [4]; sorted [12,10,8,7] [6,6,4,4] [3]
    padded = {"fixed": 9 * 20, "longest": 4 * 12 + 4 * 10 + 1 * 4, "sorted": 4 * 12 + 4 * 6 + 1 * 3}[batching]
    assert result.metrics["padded_frames"] == padded


def test_parity_against_a_reference_backend_is_logged():
    examples = _examples([6, 9, 4, 7, 8])
    labels = _labels(examples)
    backend = KnownDelayBackend(delay_ms=0.0, offset=0.25, labels_by_first_value=labels)
    wrong = {k: [3] for k in labels}  # the reference says "b" for every utterance
    reference = KnownDelayBackend(delay_ms=0.0, labels_by_first_value=wrong)
    reference.load(Path("unused"))
    result, _ = _run(backend, examples, warmup=0, reference=reference)
    m = result.metrics
    assert m["parity_max_abs_diff"] == pytest.approx(10.25)  # -10 vs 0 where the labels differ, plus the offset
    assert m["per"] == 0.0 and m["parity_reference_per"] > 0
    assert m["parity_per_delta"] == pytest.approx(-m["parity_reference_per"])
    assert reference.runs == 2  # the first pass's batches, nothing else


class NonFiniteBackend(KnownDelayBackend):
    """Log-probs with one NaN in the batch that starts at the ``bad_batch``-th call (first pass)."""

    def __init__(self, bad_call: int) -> None:
        super().__init__(delay_ms=0.0)
        self.bad_call = bad_call

    def run(self, x):
        out = super().run(x)
        if self.runs == self.bad_call:
            out.log_probs[0, 0, 0] = np.nan
        return out


def test_non_finite_log_probs_are_refused_on_the_decode_pass_naming_variant_utterance_and_precision():
    """The variant is typed (issue 22): its precision is read from it, never parsed from its name."""
    examples = _examples([6, 8, 6, 8])
    # call 1: cold start, 2: warm-up, 3: first batch of the first pass, 4: its second batch (utt02)
    with pytest.raises(DataError) as caught:
        _run(NonFiniteBackend(bad_call=4), examples, batch_size=2, warmup=1, variant=Variant("fake", "cpu", "fp16"))
    message = str(caught.value)
    assert "\n" not in message
    assert "fake-cpu-fp16" in message and "starting at utt02" in message and "precision fp16" in message
    assert "1 NaN, 0 inf" in message


def test_later_timed_passes_are_not_checked_for_non_finite_values():
    examples = _examples([6, 8, 6, 8])
    # call 6: the first batch of the second (timed, model-only) pass
    result, _ = _run(NonFiniteBackend(bad_call=6), examples, batch_size=2, warmup=1, repeats=2)
    assert result.metrics["timed_passes"] == 2


# -- issue 19: the timing plan, intervals, the noise verdict ------------------------------------

def test_min_batches_adds_passes_until_the_passes_hold_enough_batches():
    examples = _examples([6, 9, 4, 7, 8, 5, 6, 10, 4, 6])  # 3 batches per pass
    backend = KnownDelayBackend(delay_ms=1.0, labels_by_first_value=_labels(examples))
    result, decoder = _run(backend, examples, warmup=0, repeats=1, min_batches=10)
    m = result.metrics
    assert m["timed_passes"] == 4 and m["timed_batches"] == 12  # 3 passes hold 9 < 10
    assert [(row["pass"], row["batch"]) for row in result.timings] == [(p, b) for p in range(4) for b in range(3)]
    assert sum(row["utterances"] for row in result.timings) == 4 * 10
    assert m["timing_supported_percentile"] == 50  # 12 batches: fewer than MLPerf's 64 for p90
    assert decoder.calls == 3


def test_max_seconds_caps_the_additions_but_never_repeats():
    examples = _examples([4, 4, 4, 4])
    backend = KnownDelayBackend(delay_ms=5.0, labels_by_first_value=_labels(examples))
    capped, _ = _run(backend, examples, warmup=0, repeats=1, min_batches=10**6, max_seconds=0.05)
    assert 1 < capped.metrics["timed_passes"] < 1000  # stopped by the cap, not by min_batches
    floor, _ = _run(KnownDelayBackend(delay_ms=5.0, labels_by_first_value=_labels(examples)), examples, warmup=0,
                    repeats=3, min_batches=10**6, max_seconds=0.0)
    assert floor.metrics["timed_passes"] == 3


def test_intervals_contain_their_point_estimates():
    examples = _examples([6, 9, 4, 7, 8, 5, 6, 10, 4, 6])
    labels = _labels(examples)
    labels[1] = [2, 2, 3]  # one utterance decoded wrong: PER > 0
    backend = JitteryBackend(labels_by_first_value=labels)
    m = _run(backend, examples, warmup=0, repeats=5)[0].metrics
    assert m["per"] > 0 and m["sentence_errors"] == 1
    for name in ("per", "throughput_utt_s", "infer_ms_p50"):
        assert m[f"{name}_ci95_low"] <= m[name] <= m[f"{name}_ci95_high"], name
    assert m["per_ci95_low"] < m["per_ci95_high"] and m["throughput_utt_s_ci95_low"] < m["throughput_utt_s_ci95_high"]
    assert m["timing_cv"] > 0


class JitteryBackend(KnownDelayBackend):
    """Reports 1, 2, 3, 4, 1, 2 ... ms: known times that vary within and across passes."""

    def __init__(self, **kwargs) -> None:
        super().__init__(delay_ms=0.0, **kwargs)

    def run(self, x):
        out = super().run(x)
        return RunOutput(out.log_probs, infer_ms=float(1 + self.runs % 4))


BUSY_LOOP = "import time\nend = time.time() + 60\nwhile time.time() < end: pass\n"


def _timed_under_load(busy_processes: int, **thresholds):
    """A job whose timed passes sleep (the backend's 'model' uses no CPU) while ``busy_processes``
    busy loops run."""
    import os
    import subprocess
    import sys

    examples = _examples([4] * 8)
    loops = [subprocess.Popen([sys.executable, "-c", BUSY_LOOP]) for _ in range(busy_processes)]
    try:
        time.sleep(0.3 if loops else 0.0)
        backend = KnownDelayBackend(delay_ms=20.0, labels_by_first_value=_labels(examples))
        return _run(backend, examples, warmup=0, repeats=1, min_seconds=1.0, **thresholds)[0]
    finally:
        for loop in loops:
            loop.kill()
            loop.wait()


def test_a_job_timed_while_other_processes_load_the_cores_is_tagged_noisy():
    import os

    result = _timed_under_load(os.cpu_count() or 1, noisy_cv=1e9, noisy_other_cpu=0.05)
    assert result.metrics["other_cpu_fraction"] > 0.05
    assert result.noisy and "other processes took" in result.noisy_reason
    assert "infer.noisy_other_cpu=0.05" in result.noisy_reason
    assert result.host_load.measured_at and result.metrics["timed_seconds"] >= 1.0


def test_an_idle_job_under_high_thresholds_is_not_tagged():
    result = _timed_under_load(0, noisy_cv=1e9, noisy_other_cpu=2.0)
    assert not result.noisy and result.noisy_reason == ""
    assert "other_cpu_fraction" in result.metrics  # measured, just under the threshold
