"""Infer and score one split: batches -> backend -> log-probs -> decoder -> PER/CER + timings.

The per-job part of an experiment (never cached: it is what a sweep measures).  Timing follows
``lstm_exp.metrics.timing``:

1. cold start: ``load(artifact)`` plus the first batch, timed together (``cold_start_ms``);
2. ``warmup`` untimed runs of the first batch;
3. timed passes over every batch of the split: at least ``repeats`` of them, more until the
   passes hold ``min_batches`` timed batches *and* have run ``min_seconds`` (whichever is later),
   but none started after ``max_seconds`` (a cap on the additions, never on ``repeats``).  The
   first pass also decodes and scores (and runs the parity reference); later passes only re-run
   the model.  ``infer_ms`` (the backend's model-execute time) and ``e2e_ms`` (around
   ``Backend.run``: numpy in, numpy out) cover every batch of every timed pass.
4. around the timed passes, :class:`lstm_exp.metrics.host.CpuWatch` records the CPU time other
   processes took, the load average and the CPU frequency; with ``timing_cv`` (per-pass
   throughput) they give the noise verdict (``timing_noisy`` + reason, thresholds ``noisy_cv`` /
   ``noisy_other_cpu``).  Intervals (``lstm_exp.metrics.intervals``): PER (utterance bootstrap),
   throughput and p50 latency (bootstrap over the timed batches), all seeded.

Batches come from the one planner, :func:`lstm_exp.data.batching.plan_batches`; results are
keyed by utterance id, so per-utterance rows keep the split's order whatever the batching, and
recipe-compatible scoring keeps the recipe's file order.
"""
from __future__ import annotations

import logging
import resource
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np
from tqdm import tqdm

from lstm_exp.backends.base import Backend
from lstm_exp.data.batching import Batch, Example, plan_batches
from lstm_exp.errors import DataError, fault_message, non_finite
from lstm_exp.metrics.errors import ErrorReport, recipe_scores, score_utterances
from lstm_exp.metrics.host import CpuWatch, HostLoad, host_facts, noise_verdict, supported_percentile, timing_cv
from lstm_exp.metrics.intervals import per_interval, timing_intervals
from lstm_exp.metrics.timing import latency_stats, recipe_figures, throughput_stats

log = logging.getLogger(__name__)


@dataclass
class EvaluationResult:
    """Hypotheses, references, metrics and the per-utterance table of one split."""

    metrics: dict[str, float]
    rows: list[dict]
    confusions: list[tuple[str, str, int]] = field(default_factory=list)
    log_probs: dict[str, np.ndarray] = field(default_factory=dict)
    #: one row per timed batch: pass, batch, utterances, infer_ms, e2e_ms (``timings.tsv``)
    timings: list[dict] = field(default_factory=list)
    #: the host's load over the timed passes (None: not measured)
    host_load: Optional[HostLoad] = None
    #: ``lstm_exp.timing_noisy`` and its reason ("" when not noisy)
    noisy: bool = False
    noisy_reason: str = ""


def host_peak_rss_mb() -> float:
    """This process's peak resident set size so far, in MiB (ru_maxrss: KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


def _checked(backend: Backend, batch: Batch, log_probs: np.ndarray, classes: int) -> None:
    if log_probs.ndim != 3 or log_probs.shape[1] != len(batch.ids) or log_probs.shape[2] != classes:
        raise DataError(
            f"backend {backend.name} returned log-probs of shape {log_probs.shape}; expected [T', {len(batch.ids)}, {classes}]"
        )


def _check_finite(variant: str, batch: Batch, log_probs: np.ndarray) -> None:
    """Refuse NaN / inf log-probs: decoding them gives a silently wrong hypothesis."""
    found = non_finite(log_probs)
    if found:
        parts = variant.split("-")  # <backend>-<device>-<precision>[-options]
        precision = parts[2] if len(parts) > 2 else parts[-1]
        raise DataError(
            f"backend {variant} returned non-finite log-probs ({found}) for the batch of {len(batch.ids)} utterances "
            f"starting at {batch.ids[0]}, precision {precision}: the model's outputs overflow (check the checkpoint's "
            "weights, or run a wider precision)")


def _score(examples: Sequence[Example], refs: dict, hyps: dict, batch_size: int, recipe_leading_space: bool):
    report = score_utterances(refs, hyps)
    order = [ex.utt_id for ex in examples]  # the split's (the recipe's file) order
    per_recipe, cer_recipe = recipe_scores([(u, refs[u]) for u in order], [(u, hyps[u]) for u in order], batch_size,
                                           hyp_leading_space=recipe_leading_space)
    return report, per_recipe, cer_recipe


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
    *,
    batching: Optional[str] = None,
    repeats: int = 1,
    min_seconds: float = 0.0,
    min_batches: int = 0,
    max_seconds: Optional[float] = None,
    noisy_cv: float = float("inf"),
    noisy_other_cpu: float = float("inf"),
    artifact: Optional[Path] = None,
    reference: Optional[Backend] = None,
    variant: Optional[str] = None,
) -> EvaluationResult:
    """Run every example through ``backend`` and ``decoder``; return metrics and rows.

    ``output_lengths`` maps input frames to valid output frames (the model's
    ``CTCModel.output_lengths``): log-probs beyond them are padding and are not decoded.
    ``batching``: an ``infer.batching`` mode (None: fixed when ``pad_to`` is given, else longest).
    ``artifact``: load it here, so that the cold start (load + first batch) is measured; None
    when ``backend`` is loaded already.  ``reference``: a loaded backend (torch fp32) run on the
    same batches in the first pass for ``parity_*``.  ``variant``: the backend's variant (e.g.
    torch-cpu-fp32), named when the first pass finds non-finite log-probs (later passes are not
    checked, so the timed re-runs pay nothing for it).  ``repeats``, ``min_batches``,
    ``min_seconds``, ``max_seconds``: the timing plan (module doc, 3.); ``noisy_cv`` and
    ``noisy_other_cpu``: the noise thresholds (4.).

    ``recipe_leading_space``: the recipe's greedy decoder prefixes every hypothesis with a space
    (its beam decoder does not); ``cer_recipe`` reproduces that artefact when true."""
    if not examples:
        raise DataError("no utterances to evaluate")
    if repeats < 1:
        raise ValueError(f"repeats={repeats} must be >= 1")
    variant = variant or backend.name
    batching = batching or ("fixed" if pad_to else "longest")
    batches = plan_batches(examples, batch_size, batching, pad_to=pad_to)
    metrics: dict[str, float] = {}
    if artifact is not None:
        t0 = time.perf_counter()
        backend.load(artifact)
        backend.run(batches[0].x)
        metrics["cold_start_ms"] = (time.perf_counter() - t0) * 1e3
    if warmup:
        backend.warmup(batches[0].x, warmup)

    infer_ms: list[float] = []
    e2e_ms: list[float] = []
    decode_ms: list[float] = []
    sizes: list[int] = []
    hyps: dict[str, list[str]] = {}
    ref_hyps: dict[str, list[str]] = {}
    kept: dict[str, np.ndarray] = {}
    parity_diff = 0.0
    passes = 0
    rerun_pass_s: list[float] = []  # wall time of each pass after the first (model only, nothing else)
    timings: list[dict] = []
    watch = CpuWatch()
    watch.start()
    passes_started = time.perf_counter()
    while _another_pass(passes, len(infer_ms), time.perf_counter() - passes_started,
                        repeats, min_batches, min_seconds, max_seconds):
        first = passes == 0
        pass_started = time.perf_counter()
        desc = f"infer {backend.name} b{batch_size} pass {passes + 1}"
        for batch in tqdm(batches, desc=desc, disable=not progress, unit="batch"):
            t0 = time.perf_counter()
            out = backend.run(batch.x)
            e2e_ms.append((time.perf_counter() - t0) * 1e3)
            infer_ms.append(out.infer_ms)
            sizes.append(len(batch.ids))
            timings.append({"pass": passes, "batch": len(timings) % len(batches), "utterances": len(batch.ids),
                            "infer_ms": out.infer_ms, "e2e_ms": e2e_ms[-1]})
            if not first:
                continue
            log_probs = out.log_probs
            _checked(backend, batch, log_probs, len(units))
            _check_finite(variant, batch, log_probs)
            lengths = np.minimum(output_lengths(batch.lengths), log_probs.shape[0])
            t1 = time.perf_counter()
            decoded = decoder.decode(log_probs, lengths)
            decode_ms.append((time.perf_counter() - t1) * 1e3)
            for i, (utt, hyp) in enumerate(zip(batch.ids, decoded)):
                hyps[utt] = list(hyp)
                if keep_log_probs:
                    kept[utt] = np.array(log_probs[: lengths[i], i])
            if reference is not None:
                ref_lp = reference.run(batch.x).log_probs
                _checked(reference, batch, ref_lp, len(units))
                _check_finite("parity reference torch-fp32", batch, ref_lp)
                for i in range(len(batch.ids)):
                    n = int(lengths[i])
                    parity_diff = max(parity_diff, float(np.max(np.abs(log_probs[:n, i] - ref_lp[:n, i]))))
                for utt, hyp in zip(batch.ids, decoder.decode(ref_lp, lengths)):
                    ref_hyps[utt] = list(hyp)
        if not first:
            rerun_pass_s.append(time.perf_counter() - pass_started)
        passes += 1
    host_load = watch.stop()

    refs = {ex.utt_id: [units[i] for i in ex.labels] for ex in examples}
    report, per_recipe, cer_recipe = _score(examples, refs, hyps, batch_size, recipe_leading_space)
    metrics.update({
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
        "timed_passes": passes,
        "padded_frames": float(sum(b.x.shape[0] * b.x.shape[1] for b in batches)),
        "decode_ms_total": float(np.sum(decode_ms)),
        "host_peak_rss_mb": host_peak_rss_mb(),
    })
    device_mem = backend.device_peak_mem_mb()
    if device_mem is not None:
        metrics["device_peak_mem_mb"] = device_mem
    metrics.update(latency_stats("infer_ms", infer_ms))
    metrics.update(latency_stats("e2e_ms", e2e_ms))
    metrics.update(latency_stats("decode_ms", decode_ms))
    metrics.update(throughput_stats(infer_ms, sizes, audio_seconds * passes))
    metrics.update(recipe_figures(infer_ms, batch_size))
    metrics.update(_interval_metrics(report, infer_ms, sizes))
    cv = timing_cv(_pass_throughputs(timings))
    metrics.update(_load_metrics(host_load, cv, len(infer_ms)))
    noisy, reason = noise_verdict(cv, host_load.other_cpu, noisy_cv, noisy_other_cpu)
    if rerun_pass_s:  # the job's own loop, wall clock: utterances per second of a model-only pass
        metrics["pass_utt_s"] = len(examples) / float(np.median(rerun_pass_s))
    if reference is not None:
        ref_report = score_utterances(refs, ref_hyps)
        metrics["parity_max_abs_diff"] = parity_diff
        metrics["parity_per_delta"] = report.per - ref_report.per
        metrics["parity_reference_per"] = ref_report.per
    confusions = [(ref, hyp, count) for (ref, hyp), count in report.top_confusions(10)]
    return EvaluationResult(metrics=metrics, rows=report.rows(), confusions=confusions, log_probs=kept,
                            timings=timings, host_load=host_load, noisy=noisy, noisy_reason=reason)


def _another_pass(passes: int, timed_batches: int, elapsed_s: float, repeats: int, min_batches: int,
                  min_seconds: float, max_seconds: Optional[float]) -> bool:
    """The timing plan: ``repeats`` passes always; then more until ``min_batches`` and
    ``min_seconds`` are both reached, unless ``max_seconds`` have gone by."""
    if passes < repeats:
        return True
    if max_seconds is not None and elapsed_s >= max_seconds:
        return False
    return timed_batches < min_batches or elapsed_s < min_seconds


def _pass_throughputs(timings: Sequence[dict]) -> list[float]:
    """Utterances per second of model time, one figure per timed pass."""
    by_pass: dict[int, list[float]] = {}
    for row in timings:
        totals = by_pass.setdefault(row["pass"], [0.0, 0.0])
        totals[0] += row["utterances"]
        totals[1] += row["infer_ms"]
    return [1e3 * utts / ms for utts, ms in by_pass.values() if ms > 0]


def _interval_metrics(report: ErrorReport, infer_ms: Sequence[float], sizes: Sequence[int]) -> dict[str, float]:
    """``per_ci95_*`` (utterance bootstrap), ``throughput_utt_s_ci95_*`` and ``infer_ms_p50_ci95_*``."""
    metrics: dict[str, float] = {"sentence_errors": float(sum(1 for u in report.utterances if u.errors))}
    per = per_interval([u.ref for u in report.utterances], [u.hyp for u in report.utterances])
    metrics["per_ci95_low"], metrics["per_ci95_high"] = per.low, per.high
    for name, interval in timing_intervals(infer_ms, sizes).items():
        metrics[f"{name}_ci95_low"], metrics[f"{name}_ci95_high"] = interval.low, interval.high
    return metrics


def _load_metrics(load: HostLoad, cv: Optional[float], timed_batches: int) -> dict[str, float]:
    """The measurement's conditions as metrics (absent where they could not be read)."""
    figures = {"timed_batches": timed_batches, "timing_supported_percentile": supported_percentile(timed_batches),
               "timing_cv": cv, "other_cpu_fraction": load.other_cpu, "load_avg_1m": load.load_1m_after,
               "cpu_mhz": load.cpu_mhz, "timed_seconds": load.wall_s}
    return {name: float(value) for name, value in figures.items() if value is not None}


def evaluate_job(exp: Any, pipeline: Any, examples: Optional[Sequence[Example]] = None
                 ) -> tuple[EvaluationResult, dict[str, str]]:
    """One job's evaluation, asked of its backend plugin: the backend on the artefact its stages
    wrote, the split's batches from ``infer.batching``, the timing plan of ``infer``, and (with
    ``infer.parity``) torch fp32 on the same batches.  Returns the result and the run's tags
    (``Backend.describe()`` plus variant, batching and what the stages recorded).  ``examples``:
    the split as loaded by the caller (default: loaded here, cut to ``infer.max_utterances``)."""
    from lstm_exp.backends.registry import plugin_for
    from lstm_exp.data.batching import load_split
    from lstm_exp.decode import build_decoder

    plugin = plugin_for(exp.backend.name)
    artifact = pipeline.artifact()
    prepared = pipeline.prepared_dir
    units = pipeline.units
    if examples is None:
        examples = load_split(prepared, exp.split.name, units, progress=exp.progress)
        if exp.infer.max_utterances:
            examples = examples[: exp.infer.max_utterances]
    decoder = build_decoder(exp.decode, units, prepared / "lm_phone_bg.arpa")
    fbank = exp.data.fbank
    audio_s = audio_seconds_of(prepared, exp.split.name, [ex.utt_id for ex in examples],
                               frame_shift_s=fbank.frame_shift_ms / 1e3, frame_length_s=fbank.frame_length_ms / 1e3)
    backend = plugin.create(exp.backend)
    reference = None
    if exp.infer.parity:
        from lstm_exp.backends.torch.backend import TorchBackend
        from lstm_exp.backends.torch.config import TorchBackendConfig

        on_gpu = exp.backend.variant().split("-")[1] in ("cuda", "tensorrt")
        reference = TorchBackend(TorchBackendConfig(device="cuda" if on_gpu else "cpu", num_threads=0))
    infer = exp.infer
    with backend:
        if reference is not None:
            reference.load(pipeline.checkpoint)
        result = evaluate(
            backend, decoder, examples, units, exp.batch, infer.pad_to, infer.warmup, audio_s,
            output_lengths=pipeline.output_lengths,
            keep_log_probs=infer.save_log_probs, progress=exp.progress,
            recipe_leading_space=exp.decode.type == "greedy",
            batching=infer.batching, repeats=infer.repeats, min_seconds=infer.min_seconds,
            min_batches=infer.min_batches, max_seconds=infer.max_seconds,
            noisy_cv=infer.noisy_cv, noisy_other_cpu=infer.noisy_other_cpu,
            artifact=artifact, reference=reference, variant=exp.backend.variant(),
        )
        tags = {**backend.describe(), "variant": exp.backend.variant(), "batching": str(infer.batching),
                "pad_to": str(infer.pad_to), "artifact": str(artifact), **measurement_tags(result)}
    if reference is not None:
        reference.close()
    for stage, summary in pipeline.summaries.items():
        for key in ("precision", "precision_mode"):
            if key in summary:
                tags[f"{stage}.{key}"] = str(summary[key])
    precision = pipeline.summaries.get("precision", {})
    result.metrics["audio_seconds"] = audio_s
    if "max_abs_diff_vs_fp32" in precision:
        result.metrics["precision_max_abs_diff"] = float(precision["max_abs_diff_vs_fp32"])
    return result, tags


def measurement_tags(result: EvaluationResult) -> dict[str, str]:
    """The run's ``lstm_exp.*`` tags on where and how it was timed (host, CPU, threads, time, load,
    noise verdict); taken while the backend is still loaded, so torch's thread count is its own."""
    tags = {f"lstm_exp.{key}": value for key, value in host_facts().items()}
    tags["lstm_exp.timing_noisy"] = "true" if result.noisy else "false"
    if result.noisy:
        tags["lstm_exp.timing_noisy_reason"] = result.noisy_reason
    load = result.host_load
    if load is not None:
        tags["lstm_exp.measured_at"] = load.measured_at
        figures = {"load_avg_1m": load.load_1m_after, "other_cpu": load.other_cpu, "cpu_mhz": load.cpu_mhz,
                   "timing_cv": result.metrics.get("timing_cv")}
        tags.update({f"lstm_exp.{k}": f"{v:.3f}" for k, v in figures.items() if v is not None})
    return tags


def audio_seconds_of(prepared_dir: Path, split: str, utt_ids: Sequence[str], frame_shift_s: float = 0.010,
                     frame_length_s: float = 0.025) -> float:
    """Audio duration of ``utt_ids`` from ``utt2num_frames`` (snip_edges: (n - 1) * shift + length)."""
    from lstm_exp.data.kaldi_dir import read_table

    frames_file = prepared_dir / split / "utt2num_frames"
    rows, faults = read_table(frames_file)
    frames = {utt: rest for _, utt, rest in rows}
    faults += [f"{frames_file}: no frame count for {utt}" for utt in utt_ids if not frames.get(utt, "").isdigit()]
    if faults:
        raise DataError(fault_message(f"{frames_file} (re-run the prepare stage)", faults, limit=10))
    return sum((int(frames[utt]) - 1) * frame_shift_s + frame_length_s for utt in utt_ids)
