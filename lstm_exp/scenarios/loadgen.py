"""MLPerf LoadGen scenarios over any backend: settings, the test run, its logs into metrics.

:class:`LoadGenScenario` (single_stream, multi_stream, server, offline subclass it) runs, in the
job folder:

1. the cold start (``load`` + the first utterance alone, ``cold_start_ms``) and ``infer.warmup``
   untimed runs;
2. with ``scenario.mode`` both or accuracy: LoadGen's AccuracyOnly test (every sample once); its
   ``mlperf_log_accuracy.json`` holds each answer's log-probs, which are decoded and scored into
   PER/CER (:func:`decode_accuracy_log`), so the scores are of exactly what LoadGen received;
3. with both or performance: the PerformanceOnly test, around which
   :class:`~lstm_exp.metrics.host.CpuWatch` records the machine's load; ``mlperf_log_detail.txt``
   gives the ``loadgen_*`` metrics (:func:`loadgen_metrics`), the SUT's batches give
   ``timings.tsv`` and ``infer_ms_*`` / ``e2e_ms_*``.

The job folder keeps ``mlperf_log_summary.txt`` and ``mlperf_log_detail.txt`` (of the performance
run, else the accuracy run) and ``mlperf_log_accuracy.json`` (of the accuracy run); they are run
artefacts.  Settings: ``scenario.min_duration_ms`` / ``min_query_count`` (small by default), or
with ``scenario.mlperf_rules`` LoadGen's own mlperf.conf for ``rnnt`` (600 s, the official query
counts, early stopping); the bound, target QPS and samples per query are always the config's.
"""
from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, Sequence

import numpy as np

from lstm_exp.backends.base import Backend
from lstm_exp.errors import DataError, MissingDependencyError
from lstm_exp.metrics.host import CpuWatch, HostLoad, noise_verdict
from lstm_exp.scenarios.base import Scenario
from lstm_exp.scenarios.batcher import LengthBatcher
from lstm_exp.scenarios.sut import BackendSUT, SplitQSL

if TYPE_CHECKING:
    from conf_schemas.experiment import ExperimentConfig

#: the files LoadGen writes that a job keeps (run artefacts)
LOG_FILES = ("mlperf_log_summary.txt", "mlperf_log_detail.txt", "mlperf_log_accuracy.json")
#: the MLPerf model whose mlperf.conf entries ``scenario.mlperf_rules`` takes (RNN-T, speech)
MLPERF_MODEL = "rnnt"
#: scenario.name -> LoadGen's TestScenario name (mlperf.conf's spelling too)
LOADGEN_NAMES = {"single_stream": "SingleStream", "multi_stream": "MultiStream", "server": "Server",
                 "offline": "Offline"}
#: detail-log key -> loadgen_<field> metric (latencies in ns become ms)
_DETAIL_KEYS = {
    "result_50.00_percentile_latency_ns": "p50_ms", "result_90.00_percentile_latency_ns": "p90_ms",
    "result_99.00_percentile_latency_ns": "p99_ms", "result_mean_latency_ns": "mean_ms",
    "result_max_latency_ns": "max_ms", "result_query_count": "queries",
    "result_scheduled_samples_per_sec": "scheduled_qps", "result_completed_samples_per_sec": "samples_s",
    "result_samples_per_second": "samples_s", "result_qps_with_loadgen_overhead": "qps",
    "early_stopping_latency_ss": "early_stopping_ms", "early_stopping_latency_ms": "early_stopping_ms",
}
#: detail-log keys in nanoseconds (the early-stopping estimates are too, whatever their names say)
_NS_KEYS = {key for key in _DETAIL_KEYS if key.endswith("_ns") or key.startswith("early_stopping_latency")}


class LoadGenScenario(Scenario):
    """A LoadGen scenario; subclasses say how many samples a batch may hold and how long to wait."""

    def max_batch(self) -> int:
        return self.job.batch

    def timeout_s(self) -> float:
        return 0.0

    def padding(self) -> str:
        """How the answers were padded (the reverse LSTM reads padding, so PER depends on it)."""
        frames = f"{self.job.pad_to} frames" if self.job.pad_to else "its longest utterance"
        if self.max_batch() == 1:
            return f"every utterance run alone, padded to {frames}"
        wait = f", waiting up to {self.config.batch_timeout_ms:g} ms for arrivals" if self.timeout_s() else ""
        return f"arrivals grouped by length into batches of up to {self.max_batch()}{wait}, each padded to {frames}"

    # -- the run -----------------------------------------------------------------------------
    def run(self, backend: Backend):
        from lstm_exp.evaluate import EvaluationResult

        job, mode = self.job, self.config.mode
        if job.job_dir is None:  # called from Python without a job folder: LoadGen's logs go to a fresh one
            import tempfile

            job.job_dir = Path(tempfile.mkdtemp(prefix="lstm_exp-loadgen-"))
        metrics = self._cold_start(backend)
        scratch = job.job_dir / ".loadgen-accuracy"
        rows: list = []
        if mode in ("both", "accuracy"):
            out_dir = scratch if mode == "both" else job.job_dir
            accuracy, rows = self._accuracy(backend, out_dir)
            metrics.update(accuracy)
        timings: list = []
        host_load: Optional[HostLoad] = None
        if mode in ("both", "performance"):
            performance, timings, host_load = self._performance(backend)
            metrics.update(performance)
        if mode == "both":
            shutil.move(str(scratch / "mlperf_log_accuracy.json"), str(job.job_dir / "mlperf_log_accuracy.json"))
            shutil.rmtree(scratch, ignore_errors=True)
        self._tag(metrics)
        result = EvaluationResult(metrics=metrics, rows=rows, timings=timings, host_load=host_load)
        if host_load is not None:
            result.noisy, result.noisy_reason = noise_verdict(None, host_load.other_cpu, job.infer.noisy_cv,
                                                              job.infer.noisy_other_cpu)
        return result

    def _cold_start(self, backend: Backend) -> dict:
        first = self.job.examples[0].feats[None]
        rows = (self.job.static_batch or 1) - 1
        first = np.pad(first, ((0, rows), (0, (self.job.pad_to or first.shape[1]) - first.shape[1]), (0, 0)))
        started = time.perf_counter()
        if self.job.artifact is not None:
            backend.load(self.job.artifact)
        backend.run(first)
        cold_ms = (time.perf_counter() - started) * 1e3
        if self.job.infer.warmup:
            backend.warmup(first, self.job.infer.warmup)
        return {"cold_start_ms": cold_ms} if self.job.artifact is not None else {}

    def _accuracy(self, backend: Backend, out_dir: Path) -> tuple[dict, list]:
        import mlperf_loadgen as lg

        sut = self._test(backend, lg.TestMode.AccuracyOnly, out_dir)
        hyps = decode_accuracy_log(out_dir / "mlperf_log_accuracy.json", self.job.examples, self.job.decoder,
                                   len(self.job.units))
        from lstm_exp.evaluate import score_hypotheses

        report, metrics = score_hypotheses(self.job.examples, self.job.units, hyps, self.job.batch,
                                           self.job.recipe_leading_space)
        metrics["accuracy_batches"] = float(len(sut.timings))
        metrics["padded_frames"] = float(sum(t["frames"] * t["utterances"] for t in sut.timings))
        metrics["utterances"] = float(len(self.job.examples))
        return metrics, report.rows()

    def _performance(self, backend: Backend) -> tuple[dict, list, HostLoad]:
        import mlperf_loadgen as lg
        from lstm_exp.evaluate import timing_metrics

        watch = CpuWatch()
        watch.start()
        sut = self._test(backend, lg.TestMode.PerformanceOnly, self.job.job_dir)
        host_load = watch.stop()
        metrics = loadgen_metrics(read_detail_log(self.job.job_dir / "mlperf_log_detail.txt"))
        metrics.update(self._settings_metrics())
        if self.config.name == "server":
            metrics["loadgen_bound_met"] = float(metrics.get("loadgen_p99_ms", float("inf")) <= self.config.latency_bound_ms)
        ids = [self.job.examples[i].utt_id for i in sut.answered]
        audio_s = float(sum(self.job.utterance_seconds[u] for u in ids))
        metrics.update(timing_metrics(sut.timings, audio_s, host_load))
        return metrics, sut.timings, host_load

    def _settings_metrics(self) -> dict:
        cfg = self.config
        figures = {"server": {"loadgen_target_qps": cfg.target_qps, "loadgen_latency_bound_ms": cfg.latency_bound_ms},
                   "offline": {"loadgen_target_qps": cfg.target_qps},
                   "multi_stream": {"loadgen_samples_per_query": cfg.samples_per_query}}
        return {k: float(v) for k, v in figures.get(cfg.name, {}).items()}

    def _test(self, backend: Backend, mode: Any, out_dir: Path) -> BackendSUT:
        """One LoadGen test in ``mode``, its logs in ``out_dir``; returns the SUT (timings, answered)."""
        import mlperf_loadgen as lg
        from lstm_exp.evaluate import batch_checker

        examples = self.job.examples
        batcher = LengthBatcher([ex.feats.shape[0] for ex in examples], self.max_batch(), self.timeout_s())
        sut = BackendSUT(backend, examples, batcher, self.job.pad_to, self.job.output_lengths,
                         batch_checker(backend, self.job.variant, len(self.job.units)), self.job.static_batch)
        qsl = SplitQSL(len(examples))
        out_dir.mkdir(parents=True, exist_ok=True)
        lg_sut = lg.ConstructSUT(sut.issue_query, sut.flush_queries)
        lg_qsl = lg.ConstructQSL(qsl.count, qsl.count, qsl.load_samples, qsl.unload_samples)
        sut.start()
        try:
            lg.StartTestWithLogSettings(lg_sut, lg_qsl, self._settings(mode), _log_settings(out_dir))
        finally:
            sut.stop()
            lg.DestroyQSL(lg_qsl)
            lg.DestroySUT(lg_sut)
            (out_dir / "mlperf_log_trace.json").unlink(missing_ok=True)  # empty: tracing is off
        if sut.error is not None:
            raise sut.error
        return sut

    def _settings(self, mode: Any) -> Any:
        """LoadGen's TestSettings: the official rnnt minimums with mlperf_rules, else the config's."""
        import mlperf_loadgen as lg

        cfg, count = self.config, len(self.job.examples)
        settings = lg.TestSettings()
        if cfg.mlperf_rules and settings.FromConfig("", MLPERF_MODEL, LOADGEN_NAMES[cfg.name], 0) != 0:  # mlperf.conf only
            raise MissingDependencyError(f"scenario.mlperf_rules=true: this LoadGen build has no mlperf.conf entries for "
                                         f"{MLPERF_MODEL} {LOADGEN_NAMES[cfg.name]}: pip install 'mlcommons-loadgen>=6,<7'")
        if not cfg.mlperf_rules:
            settings.min_duration_ms = cfg.min_duration_ms
            settings.min_query_count = cfg.min_query_count
            if cfg.max_duration_ms is not None:
                settings.max_duration_ms = cfg.max_duration_ms
        settings.scenario = getattr(lg.TestScenario, LOADGEN_NAMES[cfg.name])
        settings.mode = mode
        settings.performance_sample_count_override = count  # the whole split is in memory
        settings.server_target_qps = cfg.target_qps
        settings.offline_expected_qps = cfg.target_qps
        settings.server_target_latency_ns = int(cfg.latency_bound_ms * 1e6)
        settings.multi_stream_samples_per_query = min(cfg.samples_per_query, count)
        return settings

    def _tag(self, metrics: dict) -> None:
        tags = self.job.tags
        tags["lstm_exp.scenario_padding"] = self.padding()
        tags["lstm_exp.mlperf_rules"] = "true" if self.config.mlperf_rules else "false"
        tags["lstm_exp.loadgen_mode"] = self.config.mode
        if "loadgen_valid" in metrics:
            tags["lstm_exp.loadgen_result"] = "VALID" if metrics["loadgen_valid"] else "INVALID"


def _log_settings(out_dir: Path) -> Any:
    import mlperf_loadgen as lg

    output = lg.LogOutputSettings()
    output.outdir = str(out_dir)
    output.copy_summary_to_stdout = False
    settings = lg.LogSettings()
    settings.log_output = output
    settings.enable_trace = False
    return settings


def read_detail_log(path: Path) -> dict:
    """``mlperf_log_detail.txt``'s ``:::MLLOG {json}`` lines as key -> value (the last of each key)."""
    values: dict = {}
    for line in path.read_text().splitlines():
        if line.startswith(":::MLLOG "):
            entry = json.loads(line[len(":::MLLOG "):])
            values[entry.get("key")] = entry.get("value")
    return values


def loadgen_metrics(detail: dict) -> dict[str, float]:
    """The ``loadgen_*`` metrics of a performance run's detail log."""
    metrics: dict[str, float] = {}
    for key, name in _DETAIL_KEYS.items():
        value = detail.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            metrics[f"loadgen_{name}"] = float(value) / 1e6 if key in _NS_KEYS else float(value)
    if "result_validity" in detail:
        metrics["loadgen_valid"] = float(detail["result_validity"] == "VALID")
    if isinstance(detail.get("result_perf_constraints_met"), bool):
        metrics["loadgen_constraints_met"] = float(detail["result_perf_constraints_met"])
    return metrics


def decode_accuracy_log(path: Path, examples: Sequence[Any], decoder: Any, classes: int) -> dict[str, list[str]]:
    """Hypotheses from ``mlperf_log_accuracy.json``: each entry's hex data is the sample's
    log-probs ``float32 [T', classes]``; every sample of the split must be there."""
    entries = json.loads(path.read_text())
    log_probs: dict[int, np.ndarray] = {}
    for entry in entries:
        data = np.frombuffer(bytes.fromhex(entry["data"]), dtype=np.float32)
        log_probs.setdefault(int(entry["qsl_idx"]), data.reshape(-1, classes))
    missing = [ex.utt_id for i, ex in enumerate(examples) if i not in log_probs]
    if missing:
        raise DataError(f"{path}: LoadGen's accuracy log has no answer for {len(missing)} utterance(s), e.g. {missing[0]}")
    hyps = {}
    for index, lp in sorted(log_probs.items()):
        hyps[examples[index].utt_id] = list(decoder.decode(lp[:, None, :], np.array([lp.shape[0]]))[0])
    return hyps


def preflight(exp: "ExperimentConfig") -> None:
    """Before any stage: a LoadGen scenario needs ``mlperf_loadgen`` and does not run the parity
    reference (``infer.parity`` times fixed batches: scenario=offline_batches)."""
    from lstm_exp.errors import ConfigError, MissingDependencyError

    if not exp.scenario.loadgen:
        return
    if exp.infer.parity:
        raise ConfigError(f"infer.parity=true is measured by scenario=offline_batches only, not scenario="
                          f"{exp.scenario.name}: drop infer.parity or write scenario=offline_batches")
    try:
        import mlperf_loadgen  # noqa: F401
    except ImportError as exc:
        raise MissingDependencyError(f"scenario={exp.scenario.name} needs MLCommons LoadGen ({exc}): "
                                     "pip install mlcommons-loadgen (or pip install -e '.[cpu]')") from exc
