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

This module is the Hydra main only.  :func:`run_job` goes through a job's steps, each a function:
validate the config (:func:`_validate`), make and check the sinks of ``tracking.sinks``
(:func:`_usable_sinks`, :mod:`lstm_exp.tracking.sink`), name the run (:func:`_job_run`), reuse an
earlier identical measurement in a sweep (:func:`_reuse`: a sweep skips a job whose identical
configuration already FINISHED in the store; ``force=true`` recomputes), or run
:func:`lstm_exp.experiment.run_experiment` and record its :class:`~lstm_exp.report.JobReport`
(:func:`_run`, :func:`_record`: job folder, sinks, printed summary).
"""
from __future__ import annotations

import itertools
import logging
import os
import signal
import sys
from dataclasses import dataclass
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
from lstm_exp.tracking.params import job_params
from lstm_exp.tracking.sink import JobRun, Sink, make_sinks
from lstm_exp.tracking.store import FINGERPRINT_TAG, JOB_NUM_TAG, OVERRIDES_TAG, ROLE_TAG, SWEEP_TAG
from lstm_exp.tracking.store_check import TrackingError
from lstm_exp.tracking.sweep import (PARENT_FILE, SweepParent, end_open_parents, job_run_name, launcher_info,
                                     require_sweep_record)

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


@dataclass
class HydraJob:
    """What Hydra says about the running job (folder, sweep or not, its overrides)."""

    job_dir: Path
    multirun: bool
    overrides: str
    task_overrides: list
    job_num: Optional[int]
    sweep_dir: Optional[str]

    @classmethod
    def current(cls) -> "HydraJob":
        hydra_cfg = HydraConfig.get()
        multirun = hydra_cfg.mode == RunMode.MULTIRUN
        return cls(Path(hydra_cfg.runtime.output_dir), multirun, " ".join(hydra_cfg.overrides.task),
                   list(hydra_cfg.overrides.task), int(hydra_cfg.job.num) if multirun else None,
                   str(Path(hydra_cfg.sweep.dir).resolve()) if multirun else None)


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


def run_job(cfg: DictConfig) -> Optional[float]:
    """One Hydra job: validate, reuse an earlier measurement (a sweep) or run, record; returns the PER."""
    job = HydraJob.current()
    plain = _plain_config(cfg)
    exp, error = _validate(cfg)
    identity = identity_of(exp) if exp is not None else _identity_from_plain(plain)
    parent = SweepParent.find(job.job_dir) if job.multirun else None
    sinks = _usable_sinks(cfg, job, parent)
    if sinks is None:
        return None
    run = _job_run(cfg, job, plain, identity, parent, sinks)
    if job.multirun and exp is not None and not exp.force and exp.stage in ("all", "infer"):
        try:
            reused = _reuse(sinks, run)
        except TrackingError as err:
            return _tracking_failed(err, job.job_dir, job.multirun)
        if reused is not None:
            return reused.accuracy.per
    return _run(cfg, job, run, sinks, error)


def _validate(cfg: DictConfig) -> tuple[Any, Optional[LstmExpError]]:
    """(the validated experiment, None) or (None, the error that the job's run ends FAILED with)."""
    try:
        return validate(cfg), None
    except LstmExpError as err:
        return None, err


def _usable_sinks(cfg: DictConfig, job: HydraJob, parent: Optional[SweepParent]) -> Optional[list[Sink]]:
    """The job's sinks (``tracking.sinks``), bound to its sweep and checked before any work; None
    (in a sweep) or exit 1 (a single run) after one ``lstm_exp: error:`` line when one cannot be used."""
    try:
        sinks = make_sinks(cfg.tracking.get("sinks"))
        if job.multirun and any(sink.needs_sweep_record for sink in sinks):
            require_sweep_record(job.job_dir, parent)
        for sink in sinks:
            sink.bind(parent)
            sink.check()
        return sinks
    except LstmExpError as err:
        message = f"lstm_exp: error: {err}"
        print(message, file=sys.stderr)
        job.job_dir.mkdir(parents=True, exist_ok=True)
        (job.job_dir / "error.txt").write_text(message + "\n")
        _stop_if_in_process(job.multirun)
        return None


def _job_run(cfg: DictConfig, job: HydraJob, plain: dict, identity: dict, parent: Optional[SweepParent],
             sinks: list[Sink]) -> JobRun:
    """The job's name, params and tags, as every sink gets them."""
    swept = next((keys for keys in (sink.swept_keys(parent) for sink in sinks) if keys), [])
    run_name = cfg.tracking.get("run_name") or job_run_name(identity, swept, job.task_overrides)
    launcher, concurrent = launcher_info(HydraConfig.get().get("launcher"))
    fingerprint = config_fingerprint(plain)
    tags = {
        ROLE_TAG: "job", FINGERPRINT_TAG: fingerprint, OVERRIDES_TAG: job.overrides,
        "hydra.job_dir": str(job.job_dir),
        "command": "python -m lstm_exp " + job.overrides + (" -m" if job.multirun else ""),
        "stage": str(plain.get("stage")),
        "lstm_exp.launcher": launcher, "lstm_exp.concurrent_jobs": concurrent,
    }
    if job.multirun:
        tags.update({JOB_NUM_TAG: str(job.job_num), "sweep_dir": job.sweep_dir})
    if parent is not None:
        tags[SWEEP_TAG] = parent.run_id
    return JobRun(run_name, job_params(plain, identity), tags, job.job_dir, fingerprint, job.overrides,
                  job.job_num, parent, identity)


def _reuse(sinks: list[Sink], run: JobRun) -> Optional[JobReport]:
    """The first sink's earlier identical measurement (REUSED), recorded by the other sinks too, its
    report written and printed; None when no sink has one."""
    for finder in sinks:
        reused = finder.find_earlier(run)
        if reused is None:
            continue
        for sink in sinks:
            if sink is not finder:
                sink.start(run)
                sink.record(reused, run.job_dir)
                sink.end("FINISHED")
        reused.write(run.job_dir / "report.json")
        print("\n".join(reused.summary_lines()))
        return reused
    return None


def _run(cfg: DictConfig, job: HydraJob, run: JobRun, sinks: list[Sink],
         error: Optional[LstmExpError]) -> Optional[float]:
    """Start the sinks, run the experiment (or fail with the validation error), record, end."""
    try:
        for sink in sinks:
            sink.start(run)
    except TrackingError as err:
        return _tracking_failed(err, job.job_dir, job.multirun)
    status = "FAILED"
    try:
        if error is not None:
            raise error
        report = run_experiment(cfg, job.job_dir, on_backend_ready=lambda tags: _each(sinks, "set_tags", tags))
        report.overrides, report.job_num, report.run_name = job.overrides, job.job_num, run.run_name
        report.run_id = _run_id(sinks)
        report.write(job.job_dir / "report.json")  # kept, whatever happens to the sinks from here on
        _record(report, sinks, job.job_dir)
        status = "FINISHED"
        return report.accuracy.per
    except TrackingError as err:
        return _tracking_failed(err, job.job_dir, job.multirun)
    except KeyboardInterrupt:  # Ctrl-C, or SIGTERM (see main): the run ends KILLED, not RUNNING
        status = "KILLED"
        print(f"lstm_exp: interrupted; MLflow run {_run_id(sinks) or '(tracking off)'} ended KILLED; complete "
              "stages stay cached, a rerun continues from them", file=sys.stderr)
        raise SystemExit(INTERRUPTED_EXIT)
    except LstmExpError as err:
        return _failed(err, job, run, sinks)
    finally:
        _end_all(sinks, status)


def _run_id(sinks: list[Sink]) -> Optional[str]:
    """The job's run id: the first sink's that gives one (MLflow's)."""
    return next((sink.run_id for sink in sinks if sink.run_id), None)


def _each(sinks: list[Sink], method: str, *args: Any) -> None:
    """``method(*args)`` on every sink; the first ``TrackingError`` is raised after all had their call."""
    failed: list[TrackingError] = []
    for sink in sinks:
        try:
            getattr(sink, method)(*args)
        except TrackingError as err:
            failed.append(err)
    if failed:
        raise failed[0]


def _failed(err: LstmExpError, job: HydraJob, run: JobRun, sinks: list[Sink]) -> None:
    """A user's error: one line, ``error.txt`` and a FAILED ``report.json`` in the job folder, the
    sinks told; exit 1 (a single run) or None (a sweep's job: the sweep goes on)."""
    message = f"lstm_exp: error: {err}"
    print(message, file=sys.stderr)
    job.job_dir.mkdir(parents=True, exist_ok=True)
    (job.job_dir / "error.txt").write_text(message + "\n")
    JobReport(**run.identity, status="FAILED", error=str(err).splitlines()[0], overrides=job.overrides,
              job_num=job.job_num, run_id=_run_id(sinks), run_name=run.run_name, fingerprint=run.fingerprint,
              job_dir=str(job.job_dir)).write(job.job_dir / "report.json")
    try:
        _each(sinks, "fail", str(err))
    except TrackingError as tracking_err:
        return _tracking_failed(tracking_err, job.job_dir, job.multirun)
    if not job.multirun:
        raise SystemExit(1)
    return None


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


def _end_all(sinks: list[Sink], status: str) -> None:
    """Every sink ends the job; one that cannot is one line (the job's report.json is on disk)."""
    for sink in sinks:
        try:
            sink.end(status)
        except TrackingError as err:
            print(f"lstm_exp: error: {err}", file=sys.stderr)


def _record(report: JobReport, sinks: list[Sink], job_dir: Path) -> None:
    """The report into every sink and onto stdout, with where each sink put it."""
    _each(sinks, "record", report, job_dir)
    closing = [line for line in (sink.closing_line() for sink in sinks) if line]
    print("\n".join(report.summary_lines() + (closing or [f"no tracking sink (tracking=none): the report is "
                                                            f"{job_dir / 'report.json'}"])))


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
