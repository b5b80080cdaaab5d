"""One experiment, from a config to a :class:`~lstm_exp.report.JobReport`, with or without Hydra.

From Python::

    from lstm_exp.experiment import load_config, run_experiment

    report = run_experiment(load_config("experiment=smoke", "backend=torch", "batch=4"))
    print(report.accuracy.per, report.infer_ms.p50, report.variant)

``run_experiment`` runs the cached stages the config asks for, then (for ``stage=all`` /
``infer``) infers and scores the split, writes the job's files into ``job_dir`` (config.yaml,
report.json, utterances.tsv, confusions.json, stages.json; and for other tools and paired
comparisons (``lstm_exp.report.compare``): ref.trn and hyp.trn in sclite's trn format,
per_speaker.tsv, timings.tsv with one row per timed batch) and returns the report.  The
measurement's host, load and noise verdict go to ``on_backend_ready`` as ``lstm_exp.*`` tags and
into the report's ``host`` / ``noise``.  Recording
the report (MLflow, the printed summary) is the caller's: ``lstm_exp.app`` does it for
``python -m lstm_exp``.  This module never imports :mod:`lstm_exp.app`.
"""
from __future__ import annotations

import csv
import hashlib
import json
import logging
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, Sequence

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from lstm_exp.config_path import config_dir
from lstm_exp.errors import ConfigError, LstmExpError
from lstm_exp.report.job import Dataset, JobReport

if TYPE_CHECKING:  # conf_schemas imports nothing of this module at import time either
    from conf_schemas.experiment import ExperimentConfig
    from lstm_exp.evaluate import EvaluationResult
    from lstm_exp.pipeline import Pipeline

log = logging.getLogger("lstm_exp")

def load_config(*overrides: str, root: Optional[str | Path] = None) -> DictConfig:
    """Compose ``configs/config.yaml`` with ``overrides`` as ``python -m lstm_exp`` would, outside a
    Hydra app: ``paths.root`` (stage cache, default MLflow store) is ``root`` or the current folder."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from conf_schemas import register_configs

    register_configs()
    root = Path(root or Path.cwd()).resolve()
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(version_base="1.3", config_dir=str(config_dir())):
            return compose("config", overrides=[f"paths.root={root}", *overrides])
    finally:
        GlobalHydra.instance().clear()


def validate(cfg: DictConfig) -> "ExperimentConfig":
    """The typed experiment (``conf_schemas.experiment.ExperimentConfig``): every ``__post_init__``
    check runs here, before any stage; then the batching left null is derived, explicitly
    (:func:`with_derived_batching`)."""
    try:
        return with_derived_batching(OmegaConf.to_object(cfg))
    except LstmExpError:
        raise
    except OmegaConfBaseException as exc:
        raise ConfigError(str(exc).splitlines()[0] + (f" (key: {exc.full_key})" if getattr(exc, "full_key", None) else "")) from exc
    except (TypeError, ValueError) as exc:
        raise ConfigError(str(exc)) from exc


def with_derived_batching(exp: "ExperimentConfig") -> "ExperimentConfig":
    """``exp`` with ``infer.batching`` / ``infer.pad_to`` as :func:`conf_schemas.experiment.derived_batching`
    resolves them for its backend (a new ``InferConfig``; the derivation is logged)."""
    from conf_schemas.experiment import derived_batching
    from lstm_exp.backends.registry import plugin_for

    plugin = plugin_for(exp.backend.name)
    batching, pad_to, why = derived_batching(exp.infer, plugin.static_frames(exp.backend), plugin.name,
                                             plugin.fixed_batching(exp.backend))
    if why:
        log.info("infer.batching=%s infer.pad_to=%s derived: %s", batching, pad_to, why)
    exp.infer = replace(exp.infer, batching=batching, pad_to=pad_to)
    return exp


def preflight(exp: "ExperimentConfig") -> None:
    """Fail fast on what would otherwise fail after minutes of training: the backend plugin's checks
    (a missing runtime, provider or device is one line, never a silent CPU fall-back), for the
    stages that run the backend (``stage=export`` or ``convert`` for acl needs no pyacl)."""
    from lstm_exp.backends.registry import plugin_for
    from lstm_exp.sweep_checks import RUNTIME_STAGES

    if exp.stage in RUNTIME_STAGES:
        plugin_for(exp.backend.name).preflight(exp.backend)
        from lstm_exp.scenarios.loadgen import preflight as scenario_preflight

        scenario_preflight(exp)


def identity_of(exp: "ExperimentConfig") -> dict:
    """The fields of a JobReport that say which job it is (from the validated config)."""
    variant = exp.backend.variant()  # a typed Variant: its name and its precision, never parsed back
    batching = exp.infer.batching  # resolved at validation (fixed, at the frames of a static artefact)
    return {
        "variant": str(variant), "backend": exp.backend.name, "batch": exp.batch, "split": exp.split.name,
        "decode": exp.decode.type, "data": exp.data.kind,
        # an ONNX made elsewhere replaces the configured model
        "model": f"onnx_file:{Path(exp.export.onnx_file).name}" if exp.export.onnx_file else exp.model.name,
        "batching": f"fixed{exp.infer.pad_to}" if batching == "fixed" else batching,
        "precision": variant.precision,
        "stage": exp.stage,
        "scenario": exp.scenario.name,
    }


def _write_rows(path: Path, rows: list[dict]) -> None:
    if not rows:  # e.g. a LoadGen scenario in one mode only: no utterances scored, or no batch timed
        return
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0].keys()), delimiter="\t")
        writer.writeheader()
        writer.writerows(rows)


def _write_json(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(obj, indent=2, default=str) + "\n")


def _stage_metrics(summaries: dict) -> dict[str, float]:
    """Numbers the cached stages recorded that belong with every run (export check, training)."""
    metrics: dict[str, float] = {}
    export = summaries.get("export", {})
    if "max_abs_diff" in export:
        metrics["export_max_abs_diff"] = float(export["max_abs_diff"])
    train = summaries.get("train", {})
    for key in ("params", "minutes", "epochs", "best_dev_per", "best_dev_loss"):
        value = train.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            metrics[f"train_{key}"] = float(value)
    return metrics


def split_dataset(exp: "ExperimentConfig", prepared: Path, examples: Sequence[Any]) -> Dataset:
    """The evaluated split: corpus, split, utterance count and a digest of its ids and labels."""
    digest = hashlib.sha256()
    for ex in examples:
        digest.update(f"{ex.utt_id} {' '.join(map(str, ex.labels))}\n".encode())
    return Dataset(corpus=exp.data.kind, split=exp.split.name, utterances=len(examples),
                   digest=digest.hexdigest()[:16], source=str(prepared / exp.split.name))


def speakers_of(prepared: Path, split: str, utt_ids: Sequence[str]) -> dict[str, str]:
    """Utterance id -> speaker from the prepared split's ``utt2spk``."""
    from lstm_exp.data.kaldi_dir import read_table
    from lstm_exp.errors import DataError, fault_message

    table = prepared / split / "utt2spk"
    rows, faults = read_table(table)
    speakers = {utt: rest for _, utt, rest in rows}
    faults += [f"{table}: no speaker for {utt}" for utt in utt_ids if not speakers.get(utt)]
    if faults:
        raise DataError(fault_message(f"{table} (re-run the prepare stage)", faults, limit=10))
    return speakers


def _speaker_metrics(rows: list[dict], speakers: dict[str, str]) -> dict[str, float]:
    """``per_speaker_ci95_*``: the speaker-blocked bootstrap interval of PER."""
    from lstm_exp.metrics.intervals import speaker_per_interval

    interval = speaker_per_interval([r["errors"] for r in rows], [r["ref_phones"] for r in rows],
                                    [speakers[r["utt_id"]] for r in rows])
    return {"per_speaker_ci95_low": interval.low, "per_speaker_ci95_high": interval.high}


def _write_scoring_files(job_dir: Path, result: Any, speakers: dict[str, str]) -> None:
    """ref.trn, hyp.trn (sclite), per_speaker.tsv and timings.tsv."""
    from lstm_exp.metrics.sclite import per_speaker_rows, write_trn

    write_trn(job_dir / "ref.trn", result.rows, speakers, "ref")
    write_trn(job_dir / "hyp.trn", result.rows, speakers, "hyp")
    _write_rows(job_dir / "per_speaker.tsv", per_speaker_rows(result.rows, speakers))
    _write_rows(job_dir / "timings.tsv", result.timings)


def _measurement(report: JobReport, result: Any, tags: dict[str, str]) -> None:
    """The noise verdict and host facts of the evaluation into the report (tags: evaluate's)."""
    report.noise.noisy, report.noise.reason = result.noisy, result.noisy_reason
    for name in ("host", "cpu_model", "cpu_count", "threads", "measured_at"):
        setattr(report.host, name, tags.get(f"lstm_exp.{name}", ""))


def run_experiment(config: "DictConfig | ExperimentConfig", job_dir: Optional[str | Path] = None, on_backend_ready=None) -> JobReport:
    """Run one experiment; returns its :class:`JobReport` (status FINISHED).

    ``config``: a composed DictConfig (:func:`load_config`) or an already validated
    ``ExperimentConfig``.  ``job_dir``: where the job's files go (default: a fresh folder under
    ``<paths.root>/outputs/api``).  ``on_backend_ready(tags)``: called with the stage keys and the
    loaded backend's description (the app tags its MLflow run with them).  A bad input raises a
    :class:`~lstm_exp.errors.LstmExpError`."""
    from lstm_exp.pipeline import Pipeline

    exp = validate(config) if isinstance(config, DictConfig) else with_derived_batching(config)
    preflight(exp)
    job_dir = _job_dir(exp, job_dir)
    report = JobReport(**identity_of(exp), job_dir=str(job_dir))
    if isinstance(config, DictConfig):
        from lstm_exp.tracking.fingerprint import config_fingerprint

        report.fingerprint = config_fingerprint(OmegaConf.to_container(config, resolve=True))
        OmegaConf.save(config, job_dir / "config.yaml", resolve=True)
    pipeline = Pipeline(exp)
    if exp.stage in ("all", "infer"):
        result, speakers = infer_split(exp, pipeline, report, job_dir, on_backend_ready)
    else:
        pipeline.run_until(exp.stage)
        result = speakers = None
    save_results(job_dir, report, pipeline.describe(), result, speakers)
    return report


def _job_dir(exp: "ExperimentConfig", job_dir: Optional[str | Path]) -> Path:
    """``job_dir`` made, or a fresh folder under ``<paths.root>/outputs/api``."""
    if job_dir is None:
        import tempfile

        base = Path(exp.paths.root) / "outputs" / "api"
        base.mkdir(parents=True, exist_ok=True)
        job_dir = tempfile.mkdtemp(prefix="job-", dir=base)
    job_dir = Path(job_dir)
    job_dir.mkdir(parents=True, exist_ok=True)
    return job_dir


def infer_split(exp: "ExperimentConfig", pipeline: "Pipeline", report: JobReport, job_dir: Path,
                on_backend_ready=None) -> tuple["EvaluationResult", dict[str, str]]:
    """The split through the scenario's run (:func:`lstm_exp.evaluate.evaluate_job`), its numbers
    into ``report``; returns the result and the split's utterance -> speaker map."""
    from lstm_exp.data.batching import load_split
    from lstm_exp.evaluate import evaluate_job

    prepared = pipeline.prepared_dir
    pipeline.check_batch_fits(exp.split.name, exp.infer.max_utterances)  # before any model is trained or loaded
    examples = load_split(prepared, exp.split.name, pipeline.units, progress=exp.progress)
    if exp.infer.max_utterances:
        examples = examples[: exp.infer.max_utterances]
    report.dataset = split_dataset(exp, prepared, examples)
    # backend, artefact, batching, timing and parity: the backend plugin's API (lstm_exp.evaluate)
    result, backend_tags = evaluate_job(exp, pipeline, examples, job_dir)  # the scenario's run (lstm_exp.scenarios)
    if on_backend_ready is not None:
        on_backend_ready({**{f"cache.{k}": v for k, v in pipeline.keys.items()}, **backend_tags})
    speakers = speakers_of(prepared, exp.split.name, [ex.utt_id for ex in examples])
    speaker_metrics = _speaker_metrics(result.rows, speakers) if result.rows else {}
    metrics = {**result.metrics, **speaker_metrics, **_stage_metrics(pipeline.describe()["summaries"])}
    typed = JobReport.from_metrics(metrics)
    for part in ("accuracy", "errors", "infer_ms", "e2e_ms", "decode_ms", "throughput", "memory", "timing", "extra",
                 "sclite", "intervals", "noise", "loadgen"):
        setattr(report, part, getattr(typed, part))
    _measurement(report, result, backend_tags)
    return result, speakers


def save_results(job_dir: Path, report: JobReport, described: dict, result: Optional["EvaluationResult"],
                 speakers: Optional[dict[str, str]]) -> None:
    """The job folder's files: ``stages.json`` and ``report.json``, and after inference the
    per-utterance table, the scoring files, confusions and any kept log-probs."""
    report.stage_keys, report.stage_summaries = described["keys"], described["summaries"]
    if result is not None:
        _write_rows(job_dir / "utterances.tsv", result.rows)
        _write_scoring_files(job_dir, result, speakers)
        _write_json(job_dir / "confusions.json", [{"ref": r, "hyp": h, "count": n} for r, h, n in result.confusions])
        if result.log_probs:
            import numpy as np

            np.savez_compressed(job_dir / "log_probs.npz", **result.log_probs)
    _write_json(job_dir / "stages.json", described)
    report.write(job_dir / "report.json")
