"""lstm_exp's single entry point: one Hydra app that runs the cached stages of an experiment.

Run the default experiment (embedded synthetic corpus, small model, onnxruntime on CPU)::

    python -m lstm_exp

Sweep backends and batch sizes, one MLflow run per job (corpus, features, training and export
run once, then come from the stage cache)::

    python -m lstm_exp backend=torch,onnxruntime batch=1,4,8,16,32 -m

Real TIMIT, the guide's network, beam search with the phone bigram LM::

    python -m lstm_exp data=timit data.root=/data/TIMIT model=ctc_recipe decode=beam_lm

Only some stages, the composed config, the groups::

    python -m lstm_exp stage=prepare
    python -m lstm_exp --cfg job
    python -m lstm_exp --help

Errors that are the user's (a bad value, a missing file or tool) print one line, end the MLflow
run FAILED and exit non-zero; in a sweep the other jobs still run and the sweep exits non-zero.
"""
from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any, Optional

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from conf_schemas import register_configs
from lstm_exp.config_path import config_dir
from lstm_exp.errors import ConfigError, LstmExpError
from lstm_exp.tracking.mlflow_run import MlflowRun, default_tracking_uri, select_params

log = logging.getLogger("lstm_exp")

CONFIG_DIR = config_dir()  # checkout: <repo>/configs; installed wheel: lstm_exp/configs

register_configs()

#: one line per failed job of this process (a sweep goes on, then exits non-zero)
FAILED_JOBS: list[str] = []


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
    """Fail fast on what would otherwise fail after minutes of training: the backend plugin's checks."""
    from lstm_exp.backends.registry import plugin_for

    plugin_for(exp.backend.name).preflight(exp.backend)


def _tracker(cfg: DictConfig) -> MlflowRun:
    tracking = cfg.get("tracking", {})
    uri = tracking.get("tracking_uri") or default_tracking_uri(cfg.paths.root)
    return MlflowRun(bool(tracking.get("enabled", True)), uri, str(tracking.get("experiment_name", "lstm_exp")))


def _plain_config(cfg: DictConfig) -> dict:
    try:
        return OmegaConf.to_container(cfg, resolve=True)
    except OmegaConfBaseException:
        return OmegaConf.to_container(cfg, resolve=False)


def run_job(cfg: DictConfig) -> Optional[float]:
    """One Hydra job: validate, run the stages, track; returns the PER (for sweepers)."""
    hydra_cfg = HydraConfig.get()
    job_dir = Path(hydra_cfg.runtime.output_dir)
    multirun = hydra_cfg.mode == RunMode.MULTIRUN
    plain = _plain_config(cfg)
    tracker = _tracker(cfg)
    run_name = cfg.tracking.get("run_name") or f"{plain['backend'].get('name')}-b{plain.get('batch')}-{plain['split'].get('name')}"
    tags = {
        "hydra.job_dir": str(job_dir),
        "hydra.overrides": " ".join(hydra_cfg.overrides.task),
        "command": "python -m lstm_exp " + " ".join(hydra_cfg.overrides.task) + (" -m" if multirun else ""),
        "stage": str(plain.get("stage")),
    }
    if multirun:
        tags["sweep_dir"] = str(Path(hydra_cfg.sweep.dir).resolve())
    tracker.start(run_name, select_params(plain), tags)
    status = "FAILED"
    try:
        exp = validate(cfg)
        preflight(exp)
        from lstm_exp.runner import execute

        per = execute(exp, cfg, job_dir, tracker)
        status = "FINISHED"
        return per
    except LstmExpError as err:
        message = f"lstm_exp: error: {err}"
        print(message, file=sys.stderr)
        (job_dir / "error.txt").write_text(message + "\n")
        FAILED_JOBS.append(f"{' '.join(hydra_cfg.overrides.task) or '(defaults)'}: {str(err).splitlines()[0]}")
        if not multirun:
            raise SystemExit(1)
        return None
    finally:
        tracker.end(status)


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="config")
def hydra_main(cfg: DictConfig) -> Optional[float]:
    return run_job(cfg)


def main() -> None:
    """Console entry point (``python -m lstm_exp`` / ``lstm-exp``)."""
    hydra_main()
    if FAILED_JOBS:
        print(f"lstm_exp: {len(FAILED_JOBS)} job(s) failed:", file=sys.stderr)
        for line in FAILED_JOBS:
            print(f"  {line}", file=sys.stderr)
        raise SystemExit(1)


def summary_lines(metrics: dict, exp: Any, tracker: MlflowRun) -> list[str]:
    """The short, human summary printed at the end of every job."""
    lines = [
        f"== lstm_exp: backend={exp.backend.name} batch={exp.batch} split={exp.split.name} "
        f"data={exp.data.kind} model={exp.model.name} decode={exp.decode.type} ==",
        f"PER {metrics['per']:.2f}%  CER {metrics['cer']:.2f}%   "
        f"(recipe-compatible: PER {metrics['per_recipe']:.2f}%, CER {metrics['cer_recipe']:.2f}%)   "
        f"{int(metrics['utterances'])} utterances",
        f"latency per batch, model only: p50 {metrics['infer_ms_p50']:.2f} ms  p90 {metrics['infer_ms_p90']:.2f}  "
        f"p99 {metrics['infer_ms_p99']:.2f}  mean {metrics['infer_ms_mean']:.2f};  end to end p50 {metrics['e2e_ms_p50']:.2f} ms",
        f"throughput {metrics['throughput_utt_s']:.1f} utt/s (model only)   RTF {metrics['rtf']:.4f}   "
        f"decode {metrics['decode_ms_total'] / 1e3:.2f} s",
    ]
    if tracker.run_id:
        lines.append(f"MLflow run {tracker.run_id} ({tracker.experiment_name});  open the UI: {tracker.ui_command()}")
    else:
        lines.append("MLflow tracking disabled (tracking=none)")
    return lines


def write_json(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(obj, indent=2, default=str) + "\n")
