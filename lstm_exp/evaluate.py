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
from typing import TYPE_CHECKING, Any, Callable, Optional, Sequence

import numpy as np
from tqdm import tqdm

from lstm_exp.backends.base import Backend, Variant
from lstm_exp.data.batching import Batch, Example, plan_batches
from lstm_exp.errors import DataError, fault_message, non_finite
from lstm_exp.metrics.errors import ErrorReport, recipe_scores, score_utterances
from lstm_exp.metrics.host import CpuWatch, HostLoad, host_facts, noise_verdict, supported_percentile, timing_cv
from lstm_exp.metrics.intervals import per_interval, timing_intervals
from lstm_exp.metrics.timing import latency_stats, recipe_figures, throughput_stats

if TYPE_CHECKING:  # the validated config and the stage runner, for annotations only
    from conf_schemas.experiment import ExperimentConfig
    from lstm_exp.pipeline import Pipeline
    from lstm_exp.scenarios import ScenarioJob

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


def _check_finite(variant: Variant | str, batch: Batch, log_probs: np.ndarray) -> None:
    """Refuse NaN / inf log-probs: decoding them gives a silently wrong hypothesis.  ``variant``:
    the backend's :class:`Variant` (or only its name when the caller gave none)."""
    found = non_finite(log_probs)
    if found:
        precision = f", precision {variant.precision}" if isinstance(variant, Variant) else ""
        raise DataError(
            f"backend {variant} returned non-finite log-probs ({found}) for the batch of {len(batch.ids)} utterances "
            f"starting at {batch.ids[0]}{precision}: the model's outputs overflow (check the checkpoint's "
            "weights, or run a wider precision)")


def batch_checker(backend: Backend, variant: str, classes: int) -> Callable[[Batch, np.ndarray], None]:
    """The checks every batch's log-probs pass (shape, finite), as one call for the scenarios."""
    def check(batch: Batch, log_probs: np.ndarray) -> None:
        _checked(backend, batch, log_probs, classes)
        _check_finite(variant, batch, log_probs)
    return check


def score_hypotheses(examples: Sequence[Example], units: Sequence[str], hyps: dict[str, list[str]], batch_size: int,
                     recipe_leading_space: bool) -> tuple[ErrorReport, dict[str, float]]:
    """PER/CER (honest and the recipe's), error counts, sentence errors and PER's interval of
    ``hyps`` (utterance id -> phones) against the split's references."""
    refs = {ex.utt_id: [units[i] for i in ex.labels] for ex in examples}
    report = score_utterances(refs, hyps)
    order = [ex.utt_id for ex in examples]  # the split's (the recipe's file) order
    per_recipe, cer_recipe = recipe_scores([(u, refs[u]) for u in order], [(u, hyps[u]) for u in order], batch_size,
                                           hyp_leading_space=recipe_leading_space)
    metrics = {"per": report.per, "cer": report.cer, "per_recipe": per_recipe, "cer_recipe": cer_recipe,
               "substitutions": report.substitutions, "deletions": report.deletions, "insertions": report.insertions,
               "ref_phones": report.ref_phones, "unk_ref_phones": report.unk_ref_phones}
    metrics["sentence_errors"] = float(sum(1 for u in report.utterances if u.errors))
    per = per_interval([u.ref for u in report.utterances], [u.hyp for u in report.utterances])
    metrics["per_ci95_low"], metrics["per_ci95_high"] = per.low, per.high
    return report, metrics


def timing_metrics(timings: Sequence[dict], audio_seconds: float, host_load: HostLoad,
                   cv: Optional[float] = None) -> dict[str, float]:
    """``infer_ms_*``, ``e2e_ms_*``, throughput and RTF, their intervals and the load, from the
    timed batches (``timings`` rows: utterances, infer_ms, e2e_ms) of ``audio_seconds`` of audio."""
    infer_ms = [row["infer_ms"] for row in timings]
    sizes = [row["utterances"] for row in timings]
    metrics = {**latency_stats("infer_ms", infer_ms), **latency_stats("e2e_ms", [row["e2e_ms"] for row in timings])}
    metrics.update(throughput_stats(infer_ms, sizes, audio_seconds))
    for name, interval in timing_intervals(infer_ms, sizes).items():
        metrics[f"{name}_ci95_low"], metrics[f"{name}_ci95_high"] = interval.low, interval.high
    metrics.update(_load_metrics(host_load, cv, len(infer_ms)))
    return metrics


@dataclass(frozen=True)
class TimingPlan:
    """How many passes are timed and when a measurement is noisy (module doc, 2.-4.; the
    ``infer`` group's fields of the same names)."""

    warmup: int = 0
    repeats: int = 1
    min_seconds: float = 0.0
    min_batches: int = 0
    max_seconds: Optional[float] = None
    noisy_cv: float = float("inf")
    noisy_other_cpu: float = float("inf")

    @classmethod
    def of(cls, infer: Any) -> "TimingPlan":
        """The plan an ``infer`` config (``conf_schemas.experiment.InferConfig``) asks for."""
        return cls(**{name: getattr(infer, name) for name in cls.__dataclass_fields__})


@dataclass
class FirstPass:
    """What the first timed pass adds beyond timing: hypotheses, kept log-probs, decode times
    and (with a parity reference) the reference's hypotheses and the largest log-prob gap."""

    hyps: dict[str, list[str]] = field(default_factory=dict)
    kept: dict[str, np.ndarray] = field(default_factory=dict)
    decode_ms: list[float] = field(default_factory=list)
    ref_hyps: dict[str, list[str]] = field(default_factory=dict)
    parity_diff: float = 0.0


def decode_one_batch(decoder, batch: Batch, log_probs: np.ndarray, output_lengths: Callable[[np.ndarray], np.ndarray],
                     seen: FirstPass, keep_log_probs: bool) -> np.ndarray:
    """Decode one batch's log-probs up to each utterance's valid output frames into ``seen``
    (hypotheses, decode time, kept log-probs); return those frame counts."""
    lengths = np.minimum(output_lengths(batch.lengths), log_probs.shape[0])
    t0 = time.perf_counter()
    decoded = decoder.decode(log_probs, lengths)
    seen.decode_ms.append((time.perf_counter() - t0) * 1e3)
    for i, (utt, hyp) in enumerate(zip(batch.ids, decoded)):
        seen.hyps[utt] = list(hyp)
        if keep_log_probs:
            seen.kept[utt] = np.array(log_probs[: lengths[i], i])
    return lengths


def parity_one_batch(reference: Backend, decoder, batch: Batch, log_probs: np.ndarray, lengths: np.ndarray,
                     classes: int, seen: FirstPass) -> None:
    """Run the parity reference on the same batch: the largest log-prob gap over the valid frames
    and the reference's hypotheses, into ``seen``."""
    ref_lp = reference.run(batch.x).log_probs
    _checked(reference, batch, ref_lp, classes)
    _check_finite(f"parity reference {reference.name}", batch, ref_lp)
    for i in range(len(batch.ids)):
        n = int(lengths[i])
        seen.parity_diff = max(seen.parity_diff, float(np.max(np.abs(log_probs[:n, i] - ref_lp[:n, i]))))
    for utt, hyp in zip(batch.ids, decoder.decode(ref_lp, lengths)):
        seen.ref_hyps[utt] = list(hyp)


@dataclass
class TimedPasses:
    """The timed passes' record: one ``timings`` row per batch, the pass count, the wall time of
    each model-only pass after the first, and the host's load over them."""

    timings: list[dict]
    passes: int
    rerun_pass_s: list[float]
    host_load: HostLoad


def time_passes(backend: Backend, batches: Sequence[Batch], plan: TimingPlan,
                on_first_pass: Callable[[Batch, Any], None], progress: bool, label: str) -> TimedPasses:
    """Timed passes over ``batches`` as ``plan`` says (module doc, 3.-4.); each batch's output of
    the first pass goes to ``on_first_pass`` after its clock has stopped."""
    timings: list[dict] = []
    rerun_pass_s: list[float] = []
    passes = 0
    watch = CpuWatch()
    watch.start()
    started = time.perf_counter()
    while _another_pass(passes, len(timings), time.perf_counter() - started, plan.repeats, plan.min_batches,
                        plan.min_seconds, plan.max_seconds):
        pass_started = time.perf_counter()
        for index, batch in enumerate(tqdm(batches, desc=f"{label} pass {passes + 1}", disable=not progress, unit="batch")):
            t0 = time.perf_counter()
            out = backend.run(batch.x)
            e2e_ms = (time.perf_counter() - t0) * 1e3
            timings.append({"pass": passes, "batch": index, "utterances": len(batch.ids),
                            "infer_ms": out.infer_ms, "e2e_ms": e2e_ms})
            if passes == 0:
                on_first_pass(batch, out)
        if passes:
            rerun_pass_s.append(time.perf_counter() - pass_started)
        passes += 1
    return TimedPasses(timings, passes, rerun_pass_s, watch.stop())


def evaluate(
    backend: Backend,
    decoder,
    examples: Sequence[Example],
    units: Sequence[str],
    batch_size: int,
    pad_to: Optional[int],
    audio_seconds: float,
    output_lengths: Callable[[np.ndarray], np.ndarray],
    plan: TimingPlan = TimingPlan(),
    *,
    batching: Optional[str] = None,
    artifact: Optional[Path] = None,
    reference: Optional[Backend] = None,
    variant: Optional[Variant] = None,
    keep_log_probs: bool = False,
    progress: bool = True,
    recipe_leading_space: bool = True,
) -> EvaluationResult:
    """Run every example through ``backend`` and ``decoder``; return metrics and rows.

    ``output_lengths`` maps input frames to valid output frames (the model's
    ``CTCModel.output_lengths``): log-probs beyond them are padding and are not decoded.
    ``plan``: warm-ups, the timed passes and the noise thresholds (:class:`TimingPlan`).
    ``batching``: an ``infer.batching`` mode (None: fixed when ``pad_to`` is given, else longest).
    ``artifact``: load it here, so that the cold start (load + first batch) is measured; None
    when ``backend`` is loaded already.  ``reference``: a loaded backend (the plugin's parity
    reference) run on the same batches in the first pass for ``parity_*``.  ``variant``: the
    backend's :class:`Variant`, named when the first pass finds non-finite log-probs (later passes
    are not checked, so the timed re-runs pay nothing for it).

    ``recipe_leading_space``: the recipe's greedy decoder prefixes every hypothesis with a space
    (its beam decoder does not); ``cer_recipe`` reproduces that artefact when true."""
    if not examples:
        raise DataError("no utterances to evaluate")
    if plan.repeats < 1:
        raise ValueError(f"repeats={plan.repeats} must be >= 1")
    variant = variant or backend.name
    batches = plan_batches(examples, batch_size, batching or ("fixed" if pad_to else "longest"), pad_to=pad_to)
    metrics: dict[str, float] = {}
    if artifact is not None:
        t0 = time.perf_counter()
        backend.load(artifact)
        backend.run(batches[0].x)
        metrics["cold_start_ms"] = (time.perf_counter() - t0) * 1e3
    if plan.warmup:
        backend.warmup(batches[0].x, plan.warmup)

    seen = FirstPass()

    def first_pass(batch: Batch, out) -> None:
        _checked(backend, batch, out.log_probs, len(units))
        _check_finite(variant, batch, out.log_probs)
        lengths = decode_one_batch(decoder, batch, out.log_probs, output_lengths, seen, keep_log_probs)
        if reference is not None:
            parity_one_batch(reference, decoder, batch, out.log_probs, lengths, len(units), seen)

    timed = time_passes(backend, batches, plan, first_pass, progress, f"infer {backend.name} b{batch_size}")
    report, scored = score_hypotheses(examples, units, seen.hyps, batch_size, recipe_leading_space)
    metrics.update(scored)
    metrics.update(pass_metrics(examples, batches, batch_size, timed, seen, audio_seconds))
    device_mem = backend.device_peak_mem_mb()
    if device_mem is not None:
        metrics["device_peak_mem_mb"] = device_mem
    if reference is not None:
        metrics.update(parity_metrics(examples, units, report, seen))
    noisy, reason = noise_verdict(metrics.get("timing_cv"), timed.host_load.other_cpu, plan.noisy_cv, plan.noisy_other_cpu)
    confusions = [(ref, hyp, count) for (ref, hyp), count in report.top_confusions(10)]
    return EvaluationResult(metrics=metrics, rows=report.rows(), confusions=confusions, log_probs=seen.kept,
                            timings=timed.timings, host_load=timed.host_load, noisy=noisy, noisy_reason=reason)


def pass_metrics(examples: Sequence[Example], batches: Sequence[Batch], batch_size: int, timed: TimedPasses,
                 seen: FirstPass, audio_seconds: float) -> dict[str, float]:
    """The split's counts, the timing figures of every timed pass, decode times and the guide's
    per-batch figures."""
    infer_ms = [row["infer_ms"] for row in timed.timings]
    metrics = {
        "utterances": len(examples),
        "batches": len(batches),
        "timed_passes": timed.passes,
        "padded_frames": float(sum(b.x.shape[0] * b.x.shape[1] for b in batches)),
        "decode_ms_total": float(np.sum(seen.decode_ms)),
        "host_peak_rss_mb": host_peak_rss_mb(),
    }
    cv = timing_cv(_pass_throughputs(timed.timings))
    metrics.update(timing_metrics(timed.timings, audio_seconds * timed.passes, timed.host_load, cv))
    metrics.update(latency_stats("decode_ms", seen.decode_ms))
    metrics.update(recipe_figures(infer_ms, batch_size))
    if timed.rerun_pass_s:  # the job's own loop, wall clock: utterances per second of a model-only pass
        metrics["pass_utt_s"] = len(examples) / float(np.median(timed.rerun_pass_s))
    return metrics


def parity_metrics(examples: Sequence[Example], units: Sequence[str], report: ErrorReport, seen: FirstPass) -> dict[str, float]:
    """``parity_*``: the largest log-prob gap, and PER against the reference's own PER."""
    refs = {ex.utt_id: [units[i] for i in ex.labels] for ex in examples}
    ref_report = score_utterances(refs, seen.ref_hyps)
    return {"parity_max_abs_diff": seen.parity_diff, "parity_per_delta": report.per - ref_report.per,
            "parity_reference_per": ref_report.per}


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


def _load_metrics(load: HostLoad, cv: Optional[float], timed_batches: int) -> dict[str, float]:
    """The measurement's conditions as metrics (absent where they could not be read)."""
    figures = {"timed_batches": timed_batches, "timing_supported_percentile": supported_percentile(timed_batches),
               "timing_cv": cv, "other_cpu_fraction": load.other_cpu, "load_avg_1m": load.load_1m_after,
               "cpu_mhz": load.cpu_mhz, "timed_seconds": load.wall_s}
    return {name: float(value) for name, value in figures.items() if value is not None}


def evaluate_job(exp: "ExperimentConfig", pipeline: "Pipeline", examples: Optional[Sequence[Example]] = None,
                 job_dir: Optional[Path] = None) -> tuple[EvaluationResult, dict[str, str]]:
    """One job's evaluation, asked of its backend plugin and run by its scenario
    (:mod:`lstm_exp.scenarios`, ``scenario=``): the backend on the artefact its stages wrote, the
    split's batches from ``infer.batching``, the timing plan of ``infer`` (offline_batches) or
    LoadGen's (the others, whose logs go to ``job_dir``), and (with ``infer.parity``) the plugin's
    parity reference on the same batches.  Returns the result and the run's tags (``Backend.describe()`` plus variant,
    batching, scenario and what the stages recorded).  ``examples``: the split as loaded by the
    caller (default: loaded here, cut to ``infer.max_utterances``)."""
    from lstm_exp.backends.registry import plugin_for
    from lstm_exp.scenarios import scenario_class

    plugin = plugin_for(exp.backend.name)
    job = scenario_job(exp, pipeline, examples, job_dir)
    backend = plugin.create(exp.backend)
    # the plugin names the reference (the checkpoint, fp32, on the variant's kind of device)
    reference = plugin.parity_reference(exp.backend) if exp.infer.parity else None
    infer = exp.infer
    with backend:
        if reference is not None:
            reference.load(pipeline.checkpoint)
        job.reference = reference
        result = scenario_class(exp.scenario.name)(exp.scenario, job).run(backend)
        tags = {**backend.describe(), "variant": str(exp.backend.variant()), "batching": str(infer.batching),
                "pad_to": str(infer.pad_to), "artifact": str(job.artifact), "lstm_exp.scenario": exp.scenario.name,
                **job.tags, **measurement_tags(result)}
    if reference is not None:
        reference.close()
    for stage, summary in pipeline.summaries.items():
        for key in ("precision", "precision_mode"):
            if key in summary:
                tags[f"{stage}.{key}"] = str(summary[key])
    precision = pipeline.summaries.get("precision", {})
    result.metrics["audio_seconds"] = job.audio_seconds
    if "max_abs_diff_vs_fp32" in precision:
        result.metrics["precision_max_abs_diff"] = float(precision["max_abs_diff_vs_fp32"])
    return result, tags


def scenario_job(exp: "ExperimentConfig", pipeline: "Pipeline", examples: Optional[Sequence[Example]],
                 job_dir: Optional[Path]) -> "ScenarioJob":
    """What a scenario needs besides the backend: the split in memory, decoder, artefact, audio."""
    from lstm_exp.backends.registry import plugin_for
    from lstm_exp.data.batching import load_split
    from lstm_exp.decode import build_decoder
    from lstm_exp.scenarios import ScenarioJob

    prepared, units = pipeline.prepared_dir, pipeline.units
    if examples is None:
        examples = load_split(prepared, exp.split.name, units, progress=exp.progress)
        if exp.infer.max_utterances:
            examples = examples[: exp.infer.max_utterances]
    fbank = exp.data.fbank
    seconds = utterance_seconds_of(prepared, exp.split.name, [ex.utt_id for ex in examples],
                                   frame_shift_s=fbank.frame_shift_ms / 1e3, frame_length_s=fbank.frame_length_ms / 1e3)
    return ScenarioJob(
        examples=examples, units=units, decoder=build_decoder(exp.decode, units, prepared / "lm_phone_bg.arpa"),
        batch=exp.batch, batching=exp.infer.batching or ("fixed" if exp.infer.pad_to else "longest"),
        pad_to=exp.infer.pad_to, infer=exp.infer, output_lengths=pipeline.output_lengths, utterance_seconds=seconds,
        artifact=pipeline.artifact(), job_dir=Path(job_dir) if job_dir is not None else None,
        variant=exp.backend.variant(), progress=exp.progress, recipe_leading_space=exp.decode.type == "greedy",
        static_batch=exp.batch if plugin_for(exp.backend.name).static_frames(exp.backend) is not None else None)


def measurement_tags(result: EvaluationResult) -> dict[str, str]:
    """The run's ``lstm_exp.*`` tags on where and how it was timed (host, CPU, threads, time, load,
    noise verdict); taken while the backend is still loaded, so the runtime's thread count is its own."""
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
    return sum(utterance_seconds_of(prepared_dir, split, utt_ids, frame_shift_s, frame_length_s).values())


def utterance_seconds_of(prepared_dir: Path, split: str, utt_ids: Sequence[str], frame_shift_s: float = 0.010,
                         frame_length_s: float = 0.025) -> dict[str, float]:
    """Each of ``utt_ids``' audio duration from ``utt2num_frames``, in their order."""
    from lstm_exp.data.kaldi_dir import read_table

    frames_file = prepared_dir / split / "utt2num_frames"
    rows, faults = read_table(frames_file)
    frames = {utt: rest for _, utt, rest in rows}
    faults += [f"{frames_file}: no frame count for {utt}" for utt in utt_ids if not frames.get(utt, "").isdigit()]
    if faults:
        raise DataError(fault_message(f"{frames_file} (re-run the prepare stage)", faults, limit=10))
    return {utt: (int(frames[utt]) - 1) * frame_shift_s + frame_length_s for utt in utt_ids}
