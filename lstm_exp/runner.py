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
    from lstm_exp.evaluate import evaluate_job

    pipeline = Pipeline(exp)
    if exp.stage not in ("all", "infer"):
        pipeline.run_until(exp.stage)
        write_json(job_dir / "stages.json", pipeline.describe())
        tracker.set_tags({f"cache.{k}": v for k, v in pipeline.keys.items()})
        print(f"lstm_exp: stage {exp.stage} done: {pipeline.describe()['keys']}")
        return None

    # issue 9: backend construction, artefact, batching, timing and parity belong to the plugin API
    result, backend_tags = evaluate_job(exp, pipeline)
    tracker.set_tags({**{f"cache.{k}": v for k, v in pipeline.keys.items()}, **backend_tags})
    metrics = {**result.metrics, **_stage_metrics(pipeline)}
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
