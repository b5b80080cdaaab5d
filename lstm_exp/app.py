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
run FAILED and exit non-zero; in a sweep the other jobs still run and the sweep exits non-zero
(``lstm_exp.tracking.sweep.SweepCallback`` reads every job's status back at the end).

This module is the Hydra main only: compose, call :func:`lstm_exp.experiment.run_experiment`,
record its :class:`~lstm_exp.report.JobReport` (MLflow, job folder, printed summary).  A sweep
skips a job whose identical configuration already FINISHED in the store (``force=true``
recomputes).
"""
from __future__ import annotations

import itertools
import logging
import os
import re
import signal
import sys
from pathlib import Path
from typing import Any, Optional

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from conf_schemas import register_configs
from lstm_exp.cli_args import check_launch_folder, checked_argv
from lstm_exp.config_path import config_dir
from lstm_exp.errors import LstmExpError
from lstm_exp.experiment import identity_of, run_experiment, validate
from lstm_exp.report.job import JobReport
from lstm_exp.tracking.fingerprint import config_fingerprint
from lstm_exp.tracking.mlflow_run import MlflowRun, PendingUpload, default_tracking_uri, select_params, upload_report
from lstm_exp.tracking.store import (DESCRIPTION_TAG, ERROR_TAG, FINGERPRINT_TAG, JOB_NUM_TAG, OVERRIDES_TAG, ROLE_TAG,
                                     SWEEP_TAG)
from lstm_exp.tracking.store_check import StoreError, TrackingError, check_store, store_calls
from lstm_exp.tracking.sweep import (PARENT_FILE, SweepParent, end_open_parents, job_run_name, launcher_info,
                                     require_sweep_record, swept_keys_of)

log = logging.getLogger("lstm_exp")

#: exit status of an interrupted job or sweep (128 + SIGINT, as a shell reports Ctrl-C)
INTERRUPTED_EXIT = 130

CONFIG_DIR = config_dir()  # checkout: <repo>/configs; installed wheel: lstm_exp/configs

register_configs()


def new_folder(base: str) -> str:
    """``base`` or, when that exists, ``base-1``, ``base-2``, ...: the first free name, created here.

    The resolver ``${lstm_exp.new_folder:...}`` of ``hydra.run.dir`` and ``hydra.sweep.dir``
    (configs/config.yaml): ``os.mkdir`` is atomic, so two runs started in the same second (two
    shells, a scheduler) never share a folder, on one machine or on a shared file system, and a
    rerun never writes into an earlier run's folder.  Cached (``use_cache``) like Hydra's ``now``,
    so every place that reads the dir in this process (and the sweep's jobs, which get a copy of
    the cache) sees the same folder.  Absolute, resolved against the launch folder: a job that runs
    in another working directory (a Ray head's, a batch node's) writes into the sweep's folder.
    """
    path = Path(base).absolute()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        for number in itertools.count():
            candidate = path if number == 0 else path.with_name(f"{path.name}-{number}")
            try:
                candidate.mkdir()
            except FileExistsError:
                continue
            return str(candidate)
    except OSError as exc:  # one line, not Hydra's failing error formatting (main has no run to end)
        print(f"lstm_exp: error: cannot create the run folder {exc.filename} ({exc.strerror}): run python -m lstm_exp "
              "from a folder you can write to, or write hydra.run.dir= / hydra.sweep.dir= a writable folder",
              file=sys.stderr)
        raise SystemExit(1) from None
    raise AssertionError("unreachable")


OmegaConf.register_new_resolver("lstm_exp.new_folder", new_folder, use_cache=True, replace=True)


def _tracker(cfg: DictConfig, parent: Optional[SweepParent] = None) -> MlflowRun:
    """The job's run: in a sweep, into the store and experiment of the sweep's ``parent_run.json``
    (never those of the environment of whatever process or machine runs the job)."""
    tracking = cfg.get("tracking", {})
    uri = tracking.get("tracking_uri") or default_tracking_uri(cfg.paths.root)
    experiment = str(tracking.get("experiment_name", "lstm_exp"))
    if parent is not None and parent.tracking_uri:
        uri, experiment = parent.tracking_uri, parent.experiment_name or experiment
    return MlflowRun(bool(tracking.get("enabled", True)), uri, experiment)


def _plain_config(cfg: DictConfig) -> dict:
    try:
        return OmegaConf.to_container(cfg, resolve=True)
    except OmegaConfBaseException:
        return OmegaConf.to_container(cfg, resolve=False)


def _identity_from_plain(plain: dict) -> dict:
    """Which job it is when the config did not validate (for the FAILED run's name and row)."""
    backend = plain.get("backend") or {}
    batch = plain.get("batch")
    return {"variant": f"{backend.get('name')}-invalid-config", "backend": str(backend.get("name")),
            "batch": batch if isinstance(batch, int) else None, "split": str((plain.get("split") or {}).get("name")),
            "decode": str((plain.get("decode") or {}).get("type")), "model": str((plain.get("model") or {}).get("name")),
            "data": str((plain.get("data") or {}).get("kind")), "stage": str(plain.get("stage"))}


def _reuse_earlier(tracker: MlflowRun, fingerprint: str, parent: Optional[SweepParent], job_num: int,
                   job_dir: Path, run_name: str, tags: dict[str, str]) -> Optional[JobReport]:
    """In a sweep: the report of an earlier FINISHED run with the same fingerprint, or None. Under
    a parent run the job becomes a child run of it that carries the earlier measurement (params,
    metrics, report.json), tagged REUSED (:func:`lstm_exp.tracking.store.copy_reused_run`)."""
    from lstm_exp.tracking.store import (REUSED, REUSED_FROM_TAG, REUSED_SUFFIX, client, copy_reused_run,
                                         ensure_experiment, find_finished_run, measured_at, report_from_run)

    with store_calls(tracker.tracking_uri):  # a store that dies now: one TrackingError line
        mlflow_client = client(tracker.tracking_uri)
        earlier = find_finished_run(mlflow_client, ensure_experiment(mlflow_client, tracker.experiment_name),
                                    fingerprint)
        if earlier is None:
            return None
        report = report_from_run(earlier, status=REUSED, job_num=job_num)
        report.reused_from = earlier.data.tags.get(REUSED_FROM_TAG) or earlier.info.run_id
        report.overrides, report.job_dir, report.measured_at = tags[OVERRIDES_TAG], str(job_dir), measured_at(earlier)
        if parent is not None:
            report.run_name = run_name + REUSED_SUFFIX
            report.run_id = copy_reused_run(mlflow_client, earlier, parent.run_id, report.run_name, tags)
    print(f"lstm_exp: skip job {job_num} ({tags[OVERRIDES_TAG] or 'defaults'}): identical config FINISHED as run "
          f"{report.reused_from} (measured {report.measured_at}); force=true recomputes")
    return report


def run_job(cfg: DictConfig) -> Optional[float]:
    """One Hydra job: validate, run (or reuse) the experiment, record its report; returns the PER."""
    hydra_cfg = HydraConfig.get()
    job_dir = Path(hydra_cfg.runtime.output_dir)
    multirun = hydra_cfg.mode == RunMode.MULTIRUN
    overrides = " ".join(hydra_cfg.overrides.task)
    job_num = int(hydra_cfg.job.num) if multirun else None
    plain = _plain_config(cfg)
    parent = SweepParent.find(job_dir) if multirun else None
    tracker = _tracker(cfg, parent)
    fingerprint = config_fingerprint(plain)
    exp, error = None, None
    try:
        exp = validate(cfg)
    except LstmExpError as err:
        error = err
    identity = identity_of(exp) if exp is not None else _identity_from_plain(plain)
    if tracker.enabled and not _store_usable(tracker.tracking_uri, job_dir, multirun, parent):
        return None
    swept = swept_keys_of(tracker, parent)
    run_name = cfg.tracking.get("run_name") or job_run_name(identity, swept, hydra_cfg.overrides.task)
    launcher, concurrent = launcher_info(hydra_cfg.get("launcher"))
    tags = {
        ROLE_TAG: "job", FINGERPRINT_TAG: fingerprint, OVERRIDES_TAG: overrides,
        "hydra.job_dir": str(job_dir),
        "command": "python -m lstm_exp " + overrides + (" -m" if multirun else ""),
        "stage": str(plain.get("stage")),
        "lstm_exp.launcher": launcher, "lstm_exp.concurrent_jobs": concurrent,
    }
    if multirun:
        tags.update({JOB_NUM_TAG: str(job_num), "sweep_dir": str(Path(hydra_cfg.sweep.dir).resolve())})
    if parent is not None:
        tags[SWEEP_TAG] = parent.run_id
    if (multirun and tracker.enabled and exp is not None and not exp.force and exp.stage in ("all", "infer")):
        try:
            reused = _reuse_earlier(tracker, fingerprint, parent, job_num, job_dir, run_name, tags)
        except TrackingError as err:
            return _tracking_failed(err, job_dir, multirun)
        if reused is not None:
            reused.write(job_dir / "report.json")
            print("\n".join(reused.summary_lines()))
            return reused.accuracy.per
    params = {**select_params(plain), "variant": identity["variant"], "batching": identity.get("batching", ""),
              "precision": identity.get("precision", "")}
    pending = PendingUpload(run_name, params, tags, parent.run_id if parent else None, tracker.tracking_uri,
                            tracker.experiment_name, log_artifacts=bool(cfg.tracking.get("log_artifacts", True)))
    try:
        if tracker.enabled:
            pending.write(job_dir)
        tracker.start(run_name, params, tags, parent_run_id=pending.parent_run_id)
        pending.run_id = tracker.run_id
        if tracker.enabled:
            pending.write(job_dir)
    except TrackingError as err:
        return _tracking_failed(err, job_dir, multirun)
    status = "FAILED"
    try:
        if error is not None:
            raise error
        deferred: list[TrackingError] = []
        report = run_experiment(cfg, job_dir, on_backend_ready=_tags_kept_for_sync(tracker, pending, job_dir, deferred))
        report.overrides, report.job_num, report.run_id, report.run_name = overrides, job_num, tracker.run_id, run_name
        report.write(job_dir / "report.json")  # kept, whatever happens to the store from here on
        if deferred:
            raise deferred[0]
        _record(report, tracker, cfg, job_dir)
        status = "FINISHED"
        return report.accuracy.per
    except TrackingError as err:
        return _tracking_failed(err, job_dir, multirun)
    except KeyboardInterrupt:  # Ctrl-C, or SIGTERM (see main): the run ends KILLED, not RUNNING
        status = "KILLED"
        print(f"lstm_exp: interrupted; MLflow run {tracker.run_id or '(tracking off)'} ended KILLED; complete "
              "stages stay cached, a rerun continues from them", file=sys.stderr)
        raise SystemExit(INTERRUPTED_EXIT)
    except LstmExpError as err:
        line = str(err).splitlines()[0]
        message = f"lstm_exp: error: {err}"
        print(message, file=sys.stderr)
        job_dir.mkdir(parents=True, exist_ok=True)
        (job_dir / "error.txt").write_text(message + "\n")
        JobReport(**identity, status="FAILED", error=line, overrides=overrides, job_num=job_num,
                  run_id=tracker.run_id, run_name=run_name, fingerprint=fingerprint,
                  job_dir=str(job_dir)).write(job_dir / "report.json")
        # the tag for tables and the sweep summary; the run's Description (what MLflow's run page
        # shows first) holds the whole message, every listed fault included
        try:
            tracker.set_tags({ERROR_TAG: line[:5000], DESCRIPTION_TAG: _failure_description(str(err))})
        except TrackingError as tracking_err:
            return _tracking_failed(tracking_err, job_dir, multirun)
        if not multirun:
            raise SystemExit(1)
        return None
    finally:
        _end_run(tracker, status, job_dir)


def _tags_kept_for_sync(tracker: MlflowRun, pending: PendingUpload, job_dir: Path, deferred: list):
    """``on_backend_ready``: the backend's tags into the run; if the store fails meanwhile, the job
    goes on to its result (kept for ``sync`` with these tags) and the failure is raised after it."""
    def record(tags: dict) -> None:
        try:
            tracker.set_tags(tags)
        except TrackingError as err:
            deferred.append(err)
            pending.tags.update({k: str(v) for k, v in tags.items()})
            pending.write(job_dir)
    return record


def _store_usable(uri: str, job_dir: Path, multirun: bool, parent: Optional[SweepParent]) -> bool:
    """The store checked before any work (``lstm_exp.tracking.store_check``), and a sweep's job
    checked to see its sweep's record (``require_sweep_record``): False (in a sweep) or exit 1 (a
    single run) after one ``lstm_exp: error:`` line when it cannot be used."""
    try:
        if multirun:
            require_sweep_record(job_dir, parent)
        check_store(uri)
        return True
    except StoreError as err:
        message = f"lstm_exp: error: {err}"
        print(message, file=sys.stderr)
        job_dir.mkdir(parents=True, exist_ok=True)
        (job_dir / "error.txt").write_text(message + "\n")
        _stop_if_in_process(multirun)
        return False


def _tracking_failed(err: TrackingError, job_dir: Path, multirun: bool) -> None:
    """A tracking call failed: one line naming the store, the local result kept for
    ``python -m lstm_exp.sync``; exit 1 (a single run) or None (a sweep's job)."""
    kept = job_dir / "report.json"
    where = f"its result is kept in {kept}" if kept.is_file() else "the job left no result"
    sweep_dir = next((p for p in [job_dir, *job_dir.parents] if (p / PARENT_FILE).is_file()), job_dir)
    message = f"lstm_exp: error: {err}; {where}; when the store is back: python -m lstm_exp.sync {sweep_dir}"
    print(message, file=sys.stderr)
    (job_dir / "error.txt").write_text(message + "\n")
    _stop_if_in_process(multirun)
    return None


def _stop_if_in_process(multirun: bool) -> None:
    """After a store failure: exit 1 from a single run and from a sweep whose jobs run in this
    process (the basic launcher: its next jobs would fail on the same store); a job in a process of
    its own (joblib, submitit, Ray) just fails, and its sweep ends with one line."""
    launcher = HydraConfig.get().get("launcher") or {}
    if not multirun or str(launcher.get("_target_", "")).endswith("BasicLauncher"):
        raise SystemExit(1)


def _end_run(tracker: MlflowRun, status: str, job_dir: Path) -> None:
    """End the job's run; once it ended, nothing is left for ``sync`` to upload."""
    try:
        tracker.end(status)
    except TrackingError as err:
        print(f"lstm_exp: error: {err}; when the store is back: python -m lstm_exp.sync {job_dir}", file=sys.stderr)
        return
    if not tracker.lost:
        PendingUpload.remove(job_dir)


def _failure_description(message: str) -> str:
    """The run's Description (Markdown, shown first on its MLflow page): the error's first line
    and, for a listing error, each further fault as a list item; text escaped so that paths and
    values read literally and long lines wrap."""
    def literal(text: str) -> str:
        return re.sub(r"([\\`*_\[\]<>#|~])", r"\\\1", text)

    first, *rest = message.splitlines() or [""]
    return "\n".join([f"**Failed:** {literal(first)}", "", *(f"- {literal(line)}" for line in rest[:50])])[:20000]


def _record(report: JobReport, tracker: MlflowRun, cfg: DictConfig, job_dir: Path) -> None:
    """The report into MLflow (metrics, dataset input, artefacts) and onto stdout."""
    upload_report(tracker, report, job_dir, bool(cfg.tracking.get("log_artifacts", True)))
    lines = report.summary_lines()
    if tracker.run_id:
        lines.append(f"MLflow run {tracker.run_id} ({tracker.experiment_name});  open the UI: {tracker.ui_command()}")
    else:
        lines.append("MLflow tracking disabled (tracking=none)")
    print("\n".join(lines))


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="config")
def hydra_main(cfg: DictConfig) -> Optional[float]:
    return run_job(cfg)


def _terminate(signum: int, frame: Any) -> None:
    """SIGTERM or SIGHUP as Ctrl-C: unwinds through the stages' clean-up and ends the MLflow run KILLED."""
    if signum == signal.SIGHUP:
        _detach_from_closed_terminal()
    raise KeyboardInterrupt(f"signal {signum}")


def _detach_from_closed_terminal() -> None:
    """After SIGHUP a terminal's stdout/stderr may be gone (writes fail with EIO): send them to
    /dev/null so that the clean-up's last line cannot turn into a traceback.  Output redirected
    to a file or pipe is kept."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream.isatty():
                stream.flush()
                os.dup2(devnull, stream.fileno())
        except (OSError, ValueError):
            os.dup2(devnull, stream.fileno())
    os.close(devnull)


def _checked_command_line() -> None:
    """The argv checks of :mod:`lstm_exp.cli_args`: one ``lstm_exp: error:`` line and exit 1, before
    Hydra composes anything (no run folder, no MLflow run)."""
    try:
        sys.argv[1:] = checked_argv(sys.argv[1:], CONFIG_DIR, Path.cwd())
        check_launch_folder(sys.argv[1:], Path.cwd())
    except LstmExpError as err:
        print(f"lstm_exp: error: {err}", file=sys.stderr)
        raise SystemExit(1) from None


def main() -> None:
    """Console entry point (``python -m lstm_exp`` / ``lstm-exp``); a sweep's exit status is set by
    its callback (non-zero if any job failed). Ctrl-C, SIGTERM or SIGHUP (a closed terminal, a
    dropped SSH session) ends the running job's MLflow run and an open sweep parent KILLED and
    exits 130; a sweep stopped by an unexpected error ends its parent FAILED."""
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGHUP, _terminate)
    _checked_command_line()
    try:
        hydra_main()
    except KeyboardInterrupt:
        end_open_parents("KILLED")
        raise SystemExit(INTERRUPTED_EXIT) from None
    except SystemExit as exc:  # also Hydra's exit after an unexpected error: no parent stays RUNNING
        end_open_parents("KILLED" if exc.code == INTERRUPTED_EXIT else "FAILED")
        raise
