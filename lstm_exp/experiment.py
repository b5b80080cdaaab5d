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
from pathlib import Path
from typing import Any, Optional, Sequence

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from lstm_exp.config_path import config_dir
from lstm_exp.errors import ConfigError, LstmExpError
from lstm_exp.report.job import Dataset, JobReport

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


def validate(cfg: DictConfig) -> Any:
    """The typed experiment (``conf_schemas.experiment.ExperimentConfig``): every ``__post_init__``
    check runs here, before any stage."""
    try:
        return OmegaConf.to_object(cfg)
    except LstmExpError:
        raise
    except OmegaConfBaseException as exc:
        raise ConfigError(str(exc).splitlines()[0] + (f" (key: {exc.full_key})" if getattr(exc, "full_key", None) else "")) from exc
    except (TypeError, ValueError) as exc:
        raise ConfigError(str(exc)) from exc


def preflight(exp: Any) -> None:
    """Fail fast on what would otherwise fail after minutes of training: the backend plugin's checks
    (a missing runtime, provider or device is one line, never a silent CPU fall-back), for the
    stages that run the backend (``stage=export`` or ``convert`` for acl needs no pyacl)."""
    from lstm_exp.backends.registry import plugin_for
    from lstm_exp.sweep_checks import RUNTIME_STAGES

    if exp.stage in RUNTIME_STAGES:
        plugin_for(exp.backend.name).preflight(exp.backend)


def variant_of(backend: Any) -> str:
    """``<backend>-<device>-<precision>[-options]``: the backend config's own ``variant()``."""
    return str(backend.variant())


def identity_of(exp: Any) -> dict:
    """The fields of a JobReport that say which job it is (from the validated config)."""
    variant = variant_of(exp.backend)
    batching = exp.infer.batching  # resolved at validation (fixed for acl, at its OM's frames)
    return {
        "variant": variant, "backend": exp.backend.name, "batch": exp.batch, "split": exp.split.name,
        "decode": exp.decode.type, "data": exp.data.kind,
        # an ONNX made elsewhere replaces the configured model
        "model": f"onnx_file:{Path(exp.export.onnx_file).name}" if exp.export.onnx_file else exp.model.name,
        "batching": f"fixed{exp.infer.pad_to}" if batching == "fixed" else batching,
        # <backend>-<device>-<precision>[-options]: torch's options (tf32, split, graph) follow it
        "precision": (variant.split("-")[2:] or [variant])[0],
        "stage": exp.stage,
    }


def _write_rows(path: Path, rows: list[dict]) -> None:
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


def split_dataset(exp: Any, prepared: Path, examples: Sequence[Any]) -> Dataset:
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


def run_experiment(config: Any, job_dir: Optional[str | Path] = None, on_backend_ready=None) -> JobReport:
    """Run one experiment; returns its :class:`JobReport` (status FINISHED).

    ``config``: a composed DictConfig (:func:`load_config`) or an already validated
    ``ExperimentConfig``.  ``job_dir``: where the job's files go (default: a fresh folder under
    ``<paths.root>/outputs/api``).  ``on_backend_ready(tags)``: called with the stage keys and the
    loaded backend's description (the app tags its MLflow run with them).  A bad input raises a
    :class:`~lstm_exp.errors.LstmExpError`."""
    from lstm_exp.pipeline import Pipeline

    exp = validate(config) if isinstance(config, DictConfig) else config
    preflight(exp)
    plain = OmegaConf.to_container(config, resolve=True) if isinstance(config, DictConfig) else None
    if job_dir is None:
        import tempfile

        base = Path(exp.paths.root) / "outputs" / "api"
        base.mkdir(parents=True, exist_ok=True)
        job_dir = tempfile.mkdtemp(prefix="job-", dir=base)
    job_dir = Path(job_dir)
    job_dir.mkdir(parents=True, exist_ok=True)
    report = JobReport(**identity_of(exp), job_dir=str(job_dir))
    if plain is not None:
        from lstm_exp.tracking.fingerprint import config_fingerprint

        report.fingerprint = config_fingerprint(plain)
        OmegaConf.save(config, job_dir / "config.yaml", resolve=True)

    pipeline = Pipeline(exp)
    if exp.stage not in ("all", "infer"):
        pipeline.run_until(exp.stage)
        described = pipeline.describe()
        report.stage_keys, report.stage_summaries = described["keys"], described["summaries"]
        _write_json(job_dir / "stages.json", described)
        report.write(job_dir / "report.json")
        return report

    from lstm_exp.data.batching import load_split
    from lstm_exp.evaluate import evaluate_job

    prepared = pipeline.prepared_dir
    pipeline.check_batch_fits(exp.split.name, exp.infer.max_utterances)  # before any model is trained or loaded
    examples = load_split(prepared, exp.split.name, pipeline.units, progress=exp.progress)
    if exp.infer.max_utterances:
        examples = examples[: exp.infer.max_utterances]
    report.dataset = split_dataset(exp, prepared, examples)
    # backend, artefact, batching, timing and parity: the backend plugin's API (lstm_exp.evaluate)
    result, backend_tags = evaluate_job(exp, pipeline, examples)
    if on_backend_ready is not None:
        on_backend_ready({**{f"cache.{k}": v for k, v in pipeline.keys.items()}, **backend_tags})
    speakers = speakers_of(prepared, exp.split.name, [ex.utt_id for ex in examples])
    described = pipeline.describe()
    metrics = {**result.metrics, **_speaker_metrics(result.rows, speakers), **_stage_metrics(described["summaries"])}
    typed = JobReport.from_metrics(metrics)
    for part in ("accuracy", "errors", "infer_ms", "e2e_ms", "decode_ms", "throughput", "memory", "timing", "extra",
                 "sclite", "intervals", "noise"):
        setattr(report, part, getattr(typed, part))
    _measurement(report, result, backend_tags)
    report.stage_keys, report.stage_summaries = described["keys"], described["summaries"]

    _write_rows(job_dir / "utterances.tsv", result.rows)
    _write_scoring_files(job_dir, result, speakers)
    _write_json(job_dir / "stages.json", described)
    _write_json(job_dir / "confusions.json", [{"ref": r, "hyp": h, "count": n} for r, h, n in result.confusions])
    if result.log_probs:
        import numpy as np

        np.savez_compressed(job_dir / "log_probs.npz", **result.log_probs)
    report.write(job_dir / "report.json")
    return report
