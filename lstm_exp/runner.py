"""Dispatch of one validated experiment: cached stages, then infer + score + track.

``execute`` is what ``python -m lstm_exp`` runs inside its Hydra job once the config is valid;
it writes the job's results into the Hydra job folder and the MLflow run.
"""
from __future__ import annotations

import csv
import logging
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
from hydra.utils import get_class
from omegaconf import DictConfig, OmegaConf

from lstm_exp.app import summary_lines, write_json
from lstm_exp.pipeline import Pipeline
from lstm_exp.tracking.mlflow_run import MlflowRun

log = logging.getLogger("lstm_exp")


def _stage_metrics(pipeline: Pipeline) -> dict[str, float]:
    """Numbers the cached stages recorded that belong with every run (export check, training)."""
    metrics: dict[str, float] = {}
    export = pipeline.summaries.get("export", {})
    if "max_abs_diff" in export:
        metrics["export_max_abs_diff"] = float(export["max_abs_diff"])
    train = pipeline.summaries.get("train", {})
    for key in ("params", "minutes", "epochs", "best_dev_per", "best_dev_loss"):
        value = train.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            metrics[f"train_{key}"] = float(value)
    return metrics


def _write_rows(path: Path, rows: list[dict]) -> None:
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0].keys()), delimiter="\t")
        writer.writeheader()
        writer.writerows(rows)


def execute(exp: Any, cfg: DictConfig, job_dir: Path, tracker: MlflowRun) -> Optional[float]:
    """Run the stages ``exp.stage`` asks for; for ``all``/``infer`` also evaluate and report."""
    from lstm_exp.data.batching import load_split
    from lstm_exp.decode import build_decoder
    from lstm_exp.evaluate import audio_seconds_of, evaluate

    pipeline = Pipeline(exp)
    if exp.stage not in ("all", "infer"):
        pipeline.run_until(exp.stage)
        write_json(job_dir / "stages.json", pipeline.describe())
        tracker.set_tags({f"cache.{k}": v for k, v in pipeline.keys.items()})
        print(f"lstm_exp: stage {exp.stage} done: {pipeline.describe()['keys']}")
        return None

    backend_cls = get_class(exp.backend._target_)
    backend = backend_cls(exp.backend)
    artifact = pipeline.artifact_for(backend.artifact_kind)
    prepared = pipeline.prepared_dir
    units = pipeline.units
    examples = load_split(prepared, exp.split.name, units, progress=exp.progress)
    if exp.infer.max_utterances:
        examples = examples[: exp.infer.max_utterances]
    decoder = build_decoder(exp.decode, units, prepared / "lm_phone_bg.arpa")
    pad_to = exp.infer.pad_to
    if exp.backend.name == "acl":  # the OM has a static frame axis (checked against infer.pad_to at validation)
        pad_to = exp.backend.atc.frames
    fbank = exp.data.fbank
    audio_s = audio_seconds_of(prepared, exp.split.name, [ex.utt_id for ex in examples],
                               frame_shift_s=fbank.frame_shift_ms / 1e3, frame_length_s=fbank.frame_length_ms / 1e3)
    with backend:
        backend.load(artifact)
        tracker.set_tags({**{f"cache.{k}": v for k, v in pipeline.keys.items()}, **backend.describe()})
        result = evaluate(
            backend, decoder, examples, units, exp.batch, pad_to, exp.infer.warmup, audio_s,
            output_lengths=lambda frames: pipeline.model.output_lengths(torch.as_tensor(frames)).numpy(),
            keep_log_probs=exp.infer.save_log_probs,
            progress=exp.progress, recipe_leading_space=exp.decode.type == "greedy",
        )
    metrics = {**result.metrics, **_stage_metrics(pipeline), "audio_seconds": audio_s}
    tracker.log_metrics(metrics)

    OmegaConf.save(cfg, job_dir / "config.yaml", resolve=True)
    _write_rows(job_dir / "utterances.tsv", result.rows)
    write_json(job_dir / "metrics.json", metrics)
    write_json(job_dir / "stages.json", pipeline.describe())
    write_json(job_dir / "confusions.json", [{"ref": r, "hyp": h, "count": n} for r, h, n in result.confusions])
    if result.log_probs:
        np.savez_compressed(job_dir / "log_probs.npz", **result.log_probs)
    if exp.tracking.log_artifacts:
        for name in ("config.yaml", "utterances.tsv", "metrics.json", "stages.json", "confusions.json"):
            tracker.log_artifact(job_dir / name)
        overrides = job_dir / ".hydra" / "overrides.yaml"
        if overrides.is_file():
            tracker.log_artifact(overrides, "hydra")
    print("\n".join(summary_lines(metrics, exp, tracker)))
    return float(metrics["per"])
