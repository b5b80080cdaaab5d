"""JobReport: the typed result of one job, and the single source of everything derived from it.

The printed summary, what the tracking sinks record (MLflow's metrics and params), ``report.json``
in the job folder and the sweep table all come from one :class:`JobReport`.  Evaluation gives a flat ``metrics`` dict;
:meth:`JobReport.from_metrics` maps the keys it knows into typed parts (accuracy, error counts,
latency, throughput, memory, timing) and keeps every other numeric key in ``extra``, so a new
metric still reaches MLflow and the JSON.  A key that is absent is ``None``, never an error.

    >>> r = JobReport.from_metrics({"per": 5.0, "infer_ms_p50": 2.0, "new_thing": 1.0}, variant="torch-cpu-fp32")
    >>> r.accuracy.per, r.infer_ms.p50, r.extra
    (5.0, 2.0, {'new_thing': 1.0})
    >>> JobReport.from_json(r.to_json()) == r
    True
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping, Optional

#: run statuses: MLflow's, plus REUSED for a job a resumed sweep did not compute again
STATUSES = ("FINISHED", "FAILED", "RUNNING", "REUSED")


@dataclass
class Accuracy:
    """Error rates in percent. ``per`` is what the guide calls "WER": the phone error rate."""

    per: Optional[float] = None
    cer: Optional[float] = None
    #: the guide's own way: full batches only, greedy hypotheses with a leading space
    per_recipe: Optional[float] = None
    cer_recipe: Optional[float] = None


@dataclass
class ErrorCounts:
    substitutions: Optional[float] = None
    deletions: Optional[float] = None
    insertions: Optional[float] = None
    ref_phones: Optional[float] = None
    #: reference phones outside the model's units (scored as errors)
    unk_ref_phones: Optional[float] = None
    utterances: Optional[float] = None
    batches: Optional[float] = None


@dataclass
class Latency:
    """Milliseconds per batch over the timed (post-warm-up) batches."""

    mean: Optional[float] = None
    p50: Optional[float] = None
    p90: Optional[float] = None
    p95: Optional[float] = None
    p99: Optional[float] = None
    min: Optional[float] = None
    max: Optional[float] = None
    std: Optional[float] = None
    total: Optional[float] = None


@dataclass
class Throughput:
    #: utterances per second of model execute time (the guide's 1000 / ms * batch)
    utt_s: Optional[float] = None
    #: model execute seconds per second of audio
    rtf: Optional[float] = None
    infer_total_s: Optional[float] = None
    audio_seconds: Optional[float] = None
    #: the guide's own formula on its own batches
    recipe_utt_s: Optional[float] = None
    recipe_ms_per_batch: Optional[float] = None


@dataclass
class Memory:
    host_peak_rss_mb: Optional[float] = None
    device_peak_mem_mb: Optional[float] = None


@dataclass
class Timing:
    """One-off timings and numerical checks around the timed loop."""

    cold_start_ms: Optional[float] = None
    parity_max_abs_diff: Optional[float] = None
    export_max_abs_diff: Optional[float] = None


@dataclass
class Dataset:
    """The evaluated split, as logged to MLflow's dataset inputs."""

    corpus: str = ""
    split: str = ""
    utterances: int = 0
    #: sha256 over the utterance ids and reference phones, in order
    digest: str = ""
    source: str = ""


# issue 19: sclite's figures beyond the error counts
@dataclass
class Sclite:
    #: utterances with at least one error (sclite's S.Err)
    sentence_errors: Optional[float] = None


# issue 19: the uncertainty of a job's numbers and the conditions they were measured under
@dataclass
class Intervals:
    """95 % intervals (lstm_exp.metrics.intervals): PER from the utterance bootstrap (and the
    speaker-blocked one), throughput and p50 latency from the bootstrap over timed batches."""

    per_low: Optional[float] = None
    per_high: Optional[float] = None
    per_speaker_low: Optional[float] = None
    per_speaker_high: Optional[float] = None
    throughput_utt_s_low: Optional[float] = None
    throughput_utt_s_high: Optional[float] = None
    infer_ms_p50_low: Optional[float] = None
    infer_ms_p50_high: Optional[float] = None


@dataclass
class Noise:
    """How steady the timing was and how busy the machine (lstm_exp.metrics.host)."""

    #: std / mean of per-pass throughput (None with one pass)
    timing_cv: Optional[float] = None
    #: CPU time of other processes over the timed passes / (wall time x CPUs)
    other_cpu_fraction: Optional[float] = None
    load_avg_1m: Optional[float] = None
    cpu_mhz: Optional[float] = None
    timed_batches: Optional[float] = None
    timed_seconds: Optional[float] = None
    #: the highest latency percentile the timed batches support (MLPerf's floors: 99, 90, else 50)
    timing_supported_percentile: Optional[float] = None
    noisy: Optional[bool] = None
    reason: str = ""


@dataclass
class Host:
    """Where and when the job was timed (also the run's ``lstm_exp.*`` tags)."""

    host: str = ""
    cpu_model: str = ""
    cpu_count: str = ""
    threads: str = ""
    #: UTC, ISO 8601, when the timed passes began; a REUSED row keeps its original
    measured_at: str = ""


#: flat metric key -> (part, field); latency keys are matched by prefix below
_KNOWN = {
    **{k: ("accuracy", k) for k in ("per", "cer", "per_recipe", "cer_recipe")},
    **{k: ("errors", k) for k in ("substitutions", "deletions", "insertions", "ref_phones", "unk_ref_phones",
                                   "utterances", "batches")},
    "throughput_utt_s": ("throughput", "utt_s"),
    "rtf": ("throughput", "rtf"),
    "infer_total_s": ("throughput", "infer_total_s"),
    "audio_seconds": ("throughput", "audio_seconds"),
    "recipe_utt_s": ("throughput", "recipe_utt_s"),
    "recipe_ms_per_batch": ("throughput", "recipe_ms_per_batch"),
    "host_peak_rss_mb": ("memory", "host_peak_rss_mb"),
    "device_peak_mem_mb": ("memory", "device_peak_mem_mb"),
    "cold_start_ms": ("timing", "cold_start_ms"),
    "parity_max_abs_diff": ("timing", "parity_max_abs_diff"),
    "export_max_abs_diff": ("timing", "export_max_abs_diff"),
    # issue 19
    "sentence_errors": ("sclite", "sentence_errors"),
    "per_ci95_low": ("intervals", "per_low"),
    "per_ci95_high": ("intervals", "per_high"),
    "per_speaker_ci95_low": ("intervals", "per_speaker_low"),
    "per_speaker_ci95_high": ("intervals", "per_speaker_high"),
    "throughput_utt_s_ci95_low": ("intervals", "throughput_utt_s_low"),
    "throughput_utt_s_ci95_high": ("intervals", "throughput_utt_s_high"),
    "infer_ms_p50_ci95_low": ("intervals", "infer_ms_p50_low"),
    "infer_ms_p50_ci95_high": ("intervals", "infer_ms_p50_high"),
    **{k: ("noise", k) for k in ("timing_cv", "other_cpu_fraction", "load_avg_1m", "cpu_mhz", "timed_batches",
                                  "timed_seconds", "timing_supported_percentile")},
}


# issue 23: LoadGen scenarios (lstm_exp.scenarios): the performance run's results, typed
@dataclass
class LoadGenResult:
    """MLPerf LoadGen's performance-mode results (``loadgen_*`` metrics): per-query latency in ms
    (single_stream's headline is p90, multi_stream's and server's p99), samples per second
    (offline's headline; server: completed), server's scheduled QPS and whether p99 met the bound."""

    p50_ms: Optional[float] = None
    p90_ms: Optional[float] = None
    p99_ms: Optional[float] = None
    mean_ms: Optional[float] = None
    max_ms: Optional[float] = None
    samples_s: Optional[float] = None
    scheduled_qps: Optional[float] = None
    target_qps: Optional[float] = None
    latency_bound_ms: Optional[float] = None
    #: server: 1 when p99 <= latency_bound_ms, else 0
    bound_met: Optional[float] = None
    #: LoadGen's verdict (1 VALID, 0 INVALID: e.g. too few queries for early stopping)
    valid: Optional[float] = None
    constraints_met: Optional[float] = None
    queries: Optional[float] = None
    #: single_stream / multi_stream: queries per second, LoadGen's overhead included
    qps: Optional[float] = None
    #: single_stream p90 / multi_stream p99 as LoadGen's early stopping estimates it (0: too few queries)
    early_stopping_ms: Optional[float] = None
    samples_per_query: Optional[float] = None


def loadgen_lines(report: "JobReport") -> list[str]:
    """The printed summary's LoadGen line (none for offline_batches)."""
    lg = report.loadgen
    if report.scenario == "offline_batches" or lg.queries is None:
        return []
    head = {"single_stream": f"p90 {_f(lg.p90_ms)} ms", "multi_stream": f"p99 {_f(lg.p99_ms)} ms per query",
            "server": f"scheduled {_f(lg.scheduled_qps, 1)} QPS (target {_f(lg.target_qps, 1)}), completed "
                      f"{_f(lg.samples_s, 1)}/s, p99 {_f(lg.p99_ms)} ms "
                      f"{'<=' if lg.bound_met else '>'} bound {_f(lg.latency_bound_ms, 0)} ms",
            "offline": f"{_f(lg.samples_s, 1)} samples/s"}.get(report.scenario, "")
    verdict = "VALID" if lg.valid else "INVALID (MLPerf's minimums not met; scenario.mlperf_rules=true runs them)"
    return [f"LoadGen {report.scenario}: {head};  p50 {_f(lg.p50_ms)} p90 {_f(lg.p90_ms)} p99 {_f(lg.p99_ms)} ms "
            f"over {_i(lg.queries)} queries;  {verdict}"]


_KNOWN.update({f"loadgen_{f.name}": ("loadgen", f.name) for f in fields(LoadGenResult)})


#: metric prefix -> latency part
_LATENCIES = ("infer_ms", "e2e_ms", "decode_ms")
_LATENCY_FIELDS = tuple(f.name for f in fields(Latency))


def _number(value: Any) -> Optional[float]:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


@dataclass
class JobReport:
    """Everything one job produced, typed. ``status``: FINISHED | FAILED | RUNNING | REUSED."""

    variant: str = ""
    backend: str = ""
    batch: Optional[int] = None
    split: str = ""
    decode: str = ""
    model: str = ""
    data: str = ""
    #: the infer.batching mode: ``fixed<N>`` (every batch padded to N frames), ``longest`` or ``sorted``
    batching: str = ""
    precision: str = ""
    stage: str = "all"
    status: str = "FINISHED"
    #: one line, for a FAILED job
    error: Optional[str] = None
    accuracy: Accuracy = field(default_factory=Accuracy)
    errors: ErrorCounts = field(default_factory=ErrorCounts)
    infer_ms: Latency = field(default_factory=Latency)
    e2e_ms: Latency = field(default_factory=Latency)
    decode_ms: Latency = field(default_factory=Latency)
    throughput: Throughput = field(default_factory=Throughput)
    memory: Memory = field(default_factory=Memory)
    timing: Timing = field(default_factory=Timing)
    #: numeric metrics this schema does not know yet (still logged and written)
    extra: dict = field(default_factory=dict)
    dataset: Optional[Dataset] = None
    #: stage -> cache key, and what each stage recorded (``Pipeline.describe()``)
    stage_keys: dict = field(default_factory=dict)
    stage_summaries: dict = field(default_factory=dict)
    #: sha256 of the resolved config less run-only keys (see lstm_exp.tracking.fingerprint)
    fingerprint: str = ""
    overrides: str = ""
    job_num: Optional[int] = None
    run_id: Optional[str] = None
    run_name: Optional[str] = None
    #: the earlier run this job's result comes from, for status REUSED
    reused_from: Optional[str] = None
    job_dir: Optional[str] = None
    # issue 18: when the measurement a REUSED job carries was made (ISO 8601, UTC; the original run's end)
    measured_at: Optional[str] = None
    # issue 19: sclite's sentence errors, intervals, timing noise, host; filled by run_experiment
    sclite: Sclite = field(default_factory=Sclite)
    intervals: Intervals = field(default_factory=Intervals)
    noise: Noise = field(default_factory=Noise)
    host: Host = field(default_factory=Host)
    # issue 23: the scenario (offline_batches | single_stream | multi_stream | server | offline) and LoadGen's results
    scenario: str = "offline_batches"
    loadgen: LoadGenResult = field(default_factory=LoadGenResult)

    # -- flat metrics <-> typed --------------------------------------------------------------
    @classmethod
    def from_metrics(cls, metrics: Mapping[str, Any], **identity: Any) -> "JobReport":
        report = cls(**identity)
        for key, value in metrics.items():
            number = _number(value)
            if number is None:
                continue
            if key in _KNOWN:
                part, name = _KNOWN[key]
                setattr(getattr(report, part), name, number)
                continue
            prefix, _, suffix = key.rpartition("_")
            if prefix in _LATENCIES and suffix in _LATENCY_FIELDS:
                setattr(getattr(report, prefix), suffix, number)
            else:
                report.extra[key] = number
        return report

    def metrics(self) -> dict[str, float]:
        """The flat metrics (MLflow's), every known value that is set plus ``extra``."""
        flat: dict[str, float] = {}
        for key, (part, name) in _KNOWN.items():
            value = getattr(getattr(self, part), name)
            if value is not None:
                flat[key] = value
        for prefix in _LATENCIES:
            latency = getattr(self, prefix)
            for name in _LATENCY_FIELDS:
                value = getattr(latency, name)
                if value is not None:
                    flat[f"{prefix}_{name}"] = value
        flat.update({k: float(v) for k, v in self.extra.items()})
        return {k: v for k, v in flat.items() if not (isinstance(v, float) and math.isnan(v))}

    # -- JSON --------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, default=str) + "\n"

    def write(self, path: Path) -> Path:
        path = Path(path)
        path.write_text(self.to_json())
        return path

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "JobReport":
        parts = {"accuracy": Accuracy, "errors": ErrorCounts, "infer_ms": Latency, "e2e_ms": Latency,
                 "decode_ms": Latency, "throughput": Throughput, "memory": Memory, "timing": Timing,
                 # issue 19
                 "sclite": Sclite, "intervals": Intervals, "noise": Noise, "host": Host,
                 "loadgen": LoadGenResult}  # issue 23
        known = {f.name for f in fields(cls)}
        kwargs: dict[str, Any] = {}
        for key, value in data.items():
            if key not in known:
                continue
            if key in parts and isinstance(value, Mapping):
                names = {f.name for f in fields(parts[key])}
                value = parts[key](**{k: v for k, v in value.items() if k in names})
            elif key == "dataset" and isinstance(value, Mapping):
                value = Dataset(**value)
            kwargs[key] = value
        return cls(**kwargs)

    @classmethod
    def from_json(cls, text_or_path: str | Path) -> "JobReport":
        text = text_or_path
        if isinstance(text_or_path, Path) or not str(text_or_path).lstrip().startswith("{"):
            text = Path(text_or_path).read_text()
        return cls.from_dict(json.loads(text))

    # -- the printed summary -----------------------------------------------------------------
    def summary_lines(self) -> list[str]:
        """The short, human summary printed at the end of every job."""
        head = (f"== lstm_exp: {self.variant} batch={self.batch} split={self.split} data={self.data} "
                f"model={self.model} decode={self.decode} batching={self.batching} ==")
        if self.status == "FAILED":
            return [head, f"FAILED: {self.error}"]
        if self.accuracy.per is None and self.loadgen.queries is not None:  # issue 23: scenario.mode=performance
            return [head, *loadgen_lines(self), *self._issue19_lines()]
        if self.accuracy.per is None:
            return [head, f"stage {self.stage} done: {self.stage_keys}"]
        acc, lat, thr = self.accuracy, self.infer_ms, self.throughput
        lines = [head, f"PER {acc.per:.2f}%  CER {_f(acc.cer)}%   (recipe-compatible: PER {_f(acc.per_recipe)}%, "
                       f"CER {_f(acc.cer_recipe)}%)   {_i(self.errors.utterances)} utterances   "
                       "(the guide's \"WER\" is this PER)"]
        lines.append(f"latency per batch, model only: p50 {_f(lat.p50)} ms  p90 {_f(lat.p90)}  p99 {_f(lat.p99)}  "
                     f"mean {_f(lat.mean)};  end to end p50 {_f(self.e2e_ms.p50)} ms")
        decode_s = None if self.decode_ms.total is None else self.decode_ms.total / 1e3
        lines.append(f"throughput {_f(thr.utt_s, 1)} utt/s (model only)   RTF {_f(thr.rtf, 4)}   decode {_f(decode_s)} s")
        lines.extend(self._issue19_lines())
        lines.extend(loadgen_lines(self))  # issue 23
        mem = self.memory
        if mem.host_peak_rss_mb is not None or mem.device_peak_mem_mb is not None:
            device = "n/a (CPU)" if mem.device_peak_mem_mb is None else f"{_f(mem.device_peak_mem_mb, 0)} MB"
            lines.append(f"peak memory: host RSS {_f(mem.host_peak_rss_mb, 0)} MB   device {device}")
        if self.reused_from:
            lines.append(f"(reused: identical configuration FINISHED earlier as MLflow run {self.reused_from})")
        return lines

    # issue 19: measurement tags back into the report, the sclite line, intervals, noise
    def read_measurement_tags(self, tags: Mapping[str, str]) -> None:
        """Host facts and the noise verdict from a run's ``lstm_exp.*`` tags (those
        ``lstm_exp.evaluate.measurement_tags`` wrote), for a report rebuilt from the store: a
        REUSED row keeps the original run's ``measured_at`` and host."""
        for name in ("host", "cpu_model", "cpu_count", "threads", "measured_at"):
            setattr(self.host, name, tags.get(f"lstm_exp.{name}", getattr(self.host, name)))
        self.scenario = tags.get("lstm_exp.scenario", self.scenario)  # issue 23: evaluate_job's tag
        if "lstm_exp.timing_noisy" in tags:
            self.noise.noisy = tags["lstm_exp.timing_noisy"] == "true"
            self.noise.reason = tags.get("lstm_exp.timing_noisy_reason", "")

    def sclite_line(self) -> Optional[str]:
        """sclite's summary row in percent: ``Snt Wrd | Corr Sub Del Ins Err S.Err``."""
        err = self.errors
        counts = (err.utterances, err.ref_phones, err.substitutions, err.deletions, err.insertions,
                  self.sclite.sentence_errors)
        if any(v is None for v in counts) or not err.ref_phones or not err.utterances:
            return None
        snt, wrd, sub, dele, ins, serr = counts
        pct = [100.0 * v / wrd for v in (wrd - sub - dele, sub, dele, ins, sub + dele + ins)]
        return ("sclite: Snt {:d} Wrd {:d} | Corr {:.1f} Sub {:.1f} Del {:.1f} Ins {:.1f} Err {:.1f} S.Err {:.1f}"
                .format(int(snt), int(wrd), *pct, 100.0 * serr / snt))

    def _issue19_lines(self) -> list[str]:
        lines = [line for line in (self.sclite_line(),) if line]
        ivl, noise = self.intervals, self.noise
        if ivl.per_low is not None:
            speaker = (f"; speakers resampled [{_f(ivl.per_speaker_low)}, {_f(ivl.per_speaker_high)}]"
                       if ivl.per_speaker_low is not None else "")
            lines.append(f"95% intervals: PER {_f(self.accuracy.per)} [{_f(ivl.per_low)}, {_f(ivl.per_high)}]{speaker};  "
                         f"throughput {_f(self.throughput.utt_s, 1)} [{_f(ivl.throughput_utt_s_low, 1)}, "
                         f"{_f(ivl.throughput_utt_s_high, 1)}] utt/s;  p50 {_f(self.infer_ms.p50)} "
                         f"[{_f(ivl.infer_ms_p50_low)}, {_f(ivl.infer_ms_p50_high)}] ms")
        if noise.timed_batches is not None:
            supported = int(noise.timing_supported_percentile or 50)
            lines.append(f"timing: {int(noise.timed_batches)} timed batches in {_f(noise.timed_seconds, 1)} s support "
                         f"percentiles up to p{supported} (MLPerf's floors: {_floors()})"
                         + _unsupported(supported))
        if noise.noisy is not None:
            verdict = f"NOISY: {noise.reason}" if noise.noisy else "steady"
            lines.append(f"timing {verdict}   (cv {_f(noise.timing_cv, 3)}, other processes "
                         f"{_pct(noise.other_cpu_fraction)} of the CPUs, load {_f(noise.load_avg_1m)}, "
                         f"{self.host.host or '?'} at {self.host.measured_at or '?'})")
        return lines


def _f(value: Optional[float], digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _unsupported(supported: int) -> str:
    """"; p90, p99 rest on fewer samples" for the printed percentiles above ``supported``."""
    above = [f"p{p}" for p in (90, 99) if p > supported]
    return f"; {', '.join(above)} {'rests' if len(above) == 1 else 'rest'} on fewer samples" if above else ""


def _floors() -> str:
    from lstm_exp.metrics.host import MLPERF_MIN_SAMPLES

    return ", ".join(f"{n} for p{p}" for p, n in sorted(MLPERF_MIN_SAMPLES.items()))


def _pct(value: Optional[float]) -> str:
    return "n/a" if value is None else f"{value:.0%}"


def _i(value: Optional[float]) -> str:
    return "n/a" if value is None else str(int(value))
