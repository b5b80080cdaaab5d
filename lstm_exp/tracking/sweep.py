"""A parent MLflow run per sweep, and the sweep's answer on it (a Hydra callback).

``configs/config.yaml`` registers :class:`SweepCallback` under ``hydra.callbacks``:

* ``on_multirun_start`` (launching process, before any job): creates the experiment and the
  store once (no first-use race between parallel jobs), starts the parent run (tags: the
  sweep's overrides, sweep dir, launcher, concurrent jobs) and writes its id to
  ``<sweep dir>/parent_run.json``, where every job finds it, in whatever process or machine it
  runs (joblib, submitit, Ray), as long as it sees the sweep dir; the job records into that
  file's store and experiment, not its own environment's.  The store is checked first
  (:mod:`lstm_exp.tracking.store_check`): a store that cannot be used is one line and exit 1.
  The parent is named after the swept axes (``sweep backend x batch 2026-12-03 05:52``) and
  tagged with them (``lstm_exp.swept``), so each job names its run after every axis that varies
  (:func:`job_run_name`: unique within the sweep).
* ``on_multirun_end``: reads every job's status back from the store (children of the parent,
  reused jobs included) or, without an MLflow sink (``tracking=none``, ``tracking=jsonl``), from the
  job folders' ``report.json``; writes
  ``summary.csv``, ``summary.md`` and the plots into the sweep dir and onto the parent run; gives
  the parent the answer (description = table + conclusions, headline metrics, per-variant series
  against batch size) and the experiment a saved view of the sweep plus one of all sweeps
  (:mod:`lstm_exp.tracking.views`); prints the table (120 columns), the conclusions and the
  view's URL; exits non-zero if any job failed, or if fewer results came back than jobs were
  launched (:func:`unreturned_jobs`).  The parent's ``lstm_exp.concurrent_jobs`` becomes what the
  runs' times show (:func:`concurrent_jobs_measured`).  A store that failed meanwhile is one line
  and exit 1; ``python -m lstm_exp.sync`` completes it.
"""
from __future__ import annotations

import json
import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from datetime import datetime
from typing import Any, Dict, Optional, Sequence

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from lstm_exp.tracking import store_check

log = logging.getLogger("lstm_exp")

PARENT_FILE = "parent_run.json"


@dataclass
class SweepParent:
    """What a job needs to nest its run under its sweep (``<sweep dir>/parent_run.json``)."""

    run_id: str
    tracking_uri: str
    experiment_name: str
    sweep_dir: str

    @classmethod
    def find(cls, job_dir: Path) -> Optional["SweepParent"]:
        """From the job folder up (an override with a ``/`` nests job folders deeper): the sweep's
        own record, never the environment of the process that runs the job (a Ray head's, a node's)."""
        for folder in [job_dir, *job_dir.parents]:
            path = folder / PARENT_FILE
            if path.is_file():
                return cls(**json.loads(path.read_text()))
        return None


def require_sweep_record(job_dir: Path, parent: Optional[SweepParent]) -> None:
    """A tracked sweep's job must find its sweep's ``parent_run.json`` (:meth:`SweepParent.find`):
    without it the job runs where the sweep's folder is not (another machine's disk, or a relative
    ``hydra.sweep.dir`` read in another working directory), and it is refused with one line rather
    than recorded into whatever store its own environment names."""
    if parent is None:
        raise store_check.StoreError(
            f"job folder {job_dir}: no {PARENT_FILE} in it or above it, so this job cannot find its sweep's store, "
            "experiment and parent run: the process that runs it does not see the sweep's folder; put the launch "
            "folder on a filesystem every node mounts at the same path (and launch from there), or run the sweep "
            "with the basic launcher")


def launcher_info(launcher_cfg: Any) -> tuple[str, str]:
    """(launcher name, how many jobs run at the same time on one machine: "1", "<n>" or "all")."""
    target = str(launcher_cfg.get("_target_", "")) if launcher_cfg is not None else ""
    name = target.rsplit(".", 1)[-1] or "BasicLauncher"
    concurrent = "1"
    if "joblib" in target.lower():
        n_jobs = int(launcher_cfg.get("n_jobs", -1) or -1)
        concurrent = str(n_jobs if n_jobs > 0 else max((os.cpu_count() or 1) + 1 + n_jobs, 1))
    elif "submitit" in target.lower() and "Local" in target:
        concurrent = "all"  # submitit's local executor starts every job of the sweep at once
    elif "submitit" in target.lower():  # a SLURM array: up to array_parallelism jobs at once
        concurrent = str(launcher_cfg.get("array_parallelism", 256) or "all")
    elif "ray" in target.lower():
        concurrent = "all"  # every job is a Ray task at once; the cluster's CPUs bound them
    return name, concurrent


def _tracking_settings(config: DictConfig) -> tuple[bool, str, str]:
    """(whether the sweep's jobs go to an MLflow sink, its store, its experiment)."""
    from lstm_exp.tracking.mlflow_run import default_tracking_uri
    from lstm_exp.tracking.mlflow_sink import mlflow_spec

    tracking = config.get("tracking") or {}
    spec = mlflow_spec(tracking)
    settings = spec if spec is not None else tracking
    try:
        root = config.paths.root
    except Exception:  # ${hydra:runtime.cwd} is not set yet in the launching process
        root = os.getcwd()
    uri = settings.get("tracking_uri") or default_tracking_uri(root)
    return spec is not None, uri, str(settings.get("experiment_name") or "lstm_exp")


def parent_run_name(swept: Sequence[str], started: Optional[datetime] = None) -> str:
    """``sweep backend x batch 2026-12-03 05:52``: the swept axes and when the sweep started."""
    axes = " x ".join(axis_label(key) for key in swept)
    return " ".join(filter(None, ["sweep", axes, (started or datetime.now()).strftime("%Y-%m-%d %H:%M")]))


def swept_keys(task_overrides: Sequence[str]) -> list[str]:
    """The config keys a sweep's overrides sweep (``batch=1,4``, ``range(..)``, ``glob(..)``)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        parsed = OverridesParser.create().parse_overrides(list(task_overrides))
    except Exception:  # Hydra reports a bad override itself before any job runs
        return []
    return [o.key_or_group for o in parsed if o.is_sweep_override()]


def axis_label(key: str) -> str:
    """What a swept key is called in names: its last part (infer.batching -> batching)."""
    return key.lstrip("+~").split("@")[0].rsplit(".", 1)[-1]


#: swept keys whose value alone names the job (anything else is written key=value)
VALUE_AXES = ("batching", "precision", "decode", "model", "scenario", "data", "type", "name")


def job_run_name(identity: dict, swept: Sequence[str], job_overrides: Sequence[str]) -> str:
    """``<variant>-b<batch>[-<value of every other swept axis>]-<split>``: unique within a sweep,
    since each job differs from the others in some swept key and every swept key is in the name
    (the variant carries backend, device and precision)."""
    values = dict(o.lstrip("+~").split("=", 1) for o in job_overrides if "=" in o)
    variant_parts = str(identity["variant"]).split("-")
    parts = []
    for key in swept:
        label, value = axis_label(key), values.get(key.lstrip("+~"), "")
        if key in ("backend", "batch", "split", "split.name") or value in variant_parts:
            continue
        parts.append(value if label in VALUE_AXES else f"{label}={value}")
    return "-".join([str(identity["variant"]), f"b{identity['batch']}", *parts, str(identity["split"])])


def swept_keys_of(tracker, parent: Optional["SweepParent"]) -> list[str]:
    """The swept keys a job's sweep recorded on its parent run (none without tracking or parent)."""
    if parent is None or not tracker.enabled:
        return []
    from lstm_exp.tracking.store import SWEPT_TAG, client

    try:
        tags = client(tracker.tracking_uri).get_run(parent.run_id).data.tags
    except Exception:  # the job still runs and is tracked; only its name is the plain one
        return []
    return [k for k in tags.get(SWEPT_TAG, "").split(",") if k]


def _sweep_dir(config: DictConfig) -> Path:
    return Path(str(config.hydra.sweep.dir)).resolve()


def job_dirs(sweep_dir: Path) -> list[Path]:
    """The job folders Hydra made under a sweep dir (each has a .hydra folder)."""
    return sorted((p.parent for p in sweep_dir.glob("**/.hydra") if p.parent != sweep_dir), key=str)


#: parent runs this process started and has not ended yet: run id -> tracking URI
_OPEN_PARENTS: Dict[str, str] = {}


def end_open_parents(status: str) -> None:
    """End the sweep parents this process left open (an interrupted sweep: KILLED, not RUNNING)."""
    from lstm_exp.tracking.store import client

    for run_id, uri in list(_OPEN_PARENTS.items()):
        if not store_check.store_works(uri):  # gone: `python -m lstm_exp.sync` ends it once it is back
            _OPEN_PARENTS.pop(run_id, None)
            continue
        try:
            client(uri).set_terminated(run_id, status)
        except Exception as exc:  # the store may be gone; the run then stays as it was
            print(f"lstm_exp: warning: could not end sweep parent run {run_id}: {exc}", file=sys.stderr)
        _OPEN_PARENTS.pop(run_id, None)


class SweepCallback(Callback):
    """Parent run, summary table and plots, and the exit status of a sweep."""

    def __init__(self, plots: bool = True) -> None:
        self.plots = plots
        self.parent_run_id: Optional[str] = None

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        from lstm_exp.sweep_checks import check_sweep_start
        from lstm_exp.tracking.store import OVERRIDES_TAG, ROLE_TAG, SWEEP_TAG, SWEPT_TAG, client, ensure_experiment

        check_sweep_start(config, _sweep_dir(config))  # an earlier sweep's folder, a missing runtime

        sweep_dir = _sweep_dir(config)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        (sweep_dir / PARENT_FILE).unlink(missing_ok=True)
        launcher, concurrent = launcher_info(config.hydra.get("launcher"))
        if concurrent != "1":
            print(f"lstm_exp: warning: {launcher} runs {concurrent} jobs at once on this machine: they share its "
                  "cores, so latency and throughput figures are distorted (tag lstm_exp.concurrent_jobs); "
                  "time with the basic launcher", file=sys.stderr)
        enabled, uri, experiment_name = _tracking_settings(config)
        if not enabled:
            return
        store_check.check_store_or_exit(uri)
        mlflow_client = client(uri)
        experiment_id = ensure_experiment(mlflow_client, experiment_name)
        overrides = " ".join(config.hydra.overrides.task)
        swept = swept_keys(config.hydra.overrides.task)
        run = mlflow_client.create_run(experiment_id, run_name=parent_run_name(swept), tags={
            ROLE_TAG: "sweep", OVERRIDES_TAG: overrides, "lstm_exp.sweep_dir": str(sweep_dir),
            "lstm_exp.launcher": launcher, "lstm_exp.concurrent_jobs": concurrent,
            "command": f"python -m lstm_exp {overrides} -m", SWEPT_TAG: ",".join(swept),
        })
        self.parent_run_id = run.info.run_id
        mlflow_client.set_tag(run.info.run_id, SWEEP_TAG, run.info.run_id)
        _OPEN_PARENTS[run.info.run_id] = uri
        parent = {"run_id": run.info.run_id, "tracking_uri": uri, "experiment_name": experiment_name,
                  "sweep_dir": str(sweep_dir)}
        (sweep_dir / PARENT_FILE).write_text(json.dumps(parent, indent=2) + "\n")
        print(f"lstm_exp: sweep parent run {run.info.run_id} in {experiment_name} ({uri})")

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        """The sweep's summary; a store that failed meanwhile is one line and exit 1 (the jobs'
        results stay in their folders for ``python -m lstm_exp.sync``); any other failure of the
        summary is its traceback, one line and exit 1 (Hydra would turn the exception into a
        warning and exit 0: a sweep that passes for a success)."""
        try:
            self._end_sweep(config)
        except Exception as exc:
            enabled, uri, _ = _tracking_settings(config)
            if enabled and self.parent_run_id and not store_check.store_works(uri):
                _OPEN_PARENTS.pop(self.parent_run_id, None)  # left RUNNING: sync ends it, no retries now
                store_check.sweep_store_failed(uri, exc, _sweep_dir(config))
            summary_failed(exc, _sweep_dir(config))

    def _end_sweep(self, config: DictConfig) -> None:
        from lstm_exp.report.sweep import SweepSummary, sweep_title

        sweep_dir = _sweep_dir(config)
        enabled, uri, experiment_name = _tracking_settings(config)
        dirs = job_dirs(sweep_dir)
        baseline = (config.get("report") or {}).get("baseline")
        tracked = enabled and self.parent_run_id is not None
        if tracked:
            from lstm_exp.tracking.store import client, sweep_reports

            mlflow_client = client(uri)
            parent = mlflow_client.get_run(self.parent_run_id)
            title = sweep_title(parent.info.run_name, " ".join(config.hydra.overrides.task))
            reports = sweep_reports(mlflow_client, parent)
            summary = SweepSummary(reports=reports, parent_run_id=self.parent_run_id, title=title, baseline=baseline,
                                   tracking_uri=uri)
            seen = {r.job_num for r in reports}
            for job_dir in dirs:  # a job that died before its run started left only its folder
                num = _job_num(job_dir)
                if num is not None and num not in seen:
                    summary.missing.append(f"job {num}: {job_dir}: no MLflow run (the job died before tracking; see its log)")
        else:
            title = sweep_title(sweep_dir.name, " ".join(config.hydra.overrides.task))
            summary = SweepSummary.from_job_dirs(dirs, title=title, baseline=baseline)
        summary.missing.extend(unreturned_jobs(config, len(summary.reports) + len(summary.missing), sweep_dir))
        bad_baseline = _check_baseline(summary)
        written = summary.write(sweep_dir) if self.plots else []
        url = None
        if tracked:
            measured = concurrent_jobs_measured(mlflow_client, parent)
            if measured:
                mlflow_client.set_tag(self.parent_run_id, "lstm_exp.concurrent_jobs", measured)
            url = _record_answer(mlflow_client, parent, summary, written, uri, failed=summary.failed or bad_baseline)
            _OPEN_PARENTS.pop(self.parent_run_id, None)
        print(summary.to_terminal(), end="")
        print(f"lstm_exp: sweep summary in {sweep_dir} (summary.csv with run ids, summary.md, plots)"
              + (f"; parent run {self.parent_run_id}" if self.parent_run_id else ""))
        if url:
            print(f"lstm_exp: the sweep in the MLflow UI: {url}")
        if summary.failed:
            print(f"lstm_exp: {len(summary.failures)} job(s) failed:", file=sys.stderr)
            for line in summary.failures:
                print(f"  {line}", file=sys.stderr)
        if summary.failed or bad_baseline:
            raise SystemExit(1)


def summary_failed(exc: BaseException, sweep_dir: Path) -> None:
    """The end of a sweep whose summary failed (a fault of lstm_exp's, not of a job's): the
    traceback, one line, exit 1; the parent run ends FAILED (``lstm_exp.app.main``)."""
    log.error("the sweep's summary failed", exc_info=exc)
    cause = (str(exc).strip().splitlines() or [""])[0][:300]
    print(f"lstm_exp: error: the sweep's summary failed ({type(exc).__name__}: {cause}); the jobs' folders are under "
          f"{sweep_dir}; python -m lstm_exp.report rebuilds the table from the store", file=sys.stderr)
    raise SystemExit(1) from None


def _check_baseline(summary) -> bool:
    """Prints the one-line error of a ``report.baseline`` the sweep does not have and falls back
    to the first variant for the tables; returns whether it was bad."""
    from lstm_exp.errors import ConfigError

    try:
        summary.baseline_variant()
        return False
    except ConfigError as err:
        print(f"lstm_exp: error: {err}", file=sys.stderr)
        summary.baseline = None
        return True


def _record_answer(mlflow_client, parent, summary, written: Sequence[Path], uri: str, failed: bool) -> str:
    """The sweep's answer onto its parent run (artefacts, headline metrics, per-variant series,
    description) and its saved views; ends the parent; returns the view's URL line."""
    from lstm_exp.tracking.store import DESCRIPTION_TAG, SWEPT_TAG

    run_id = parent.info.run_id
    mlflow_client.set_tag(run_id, "lstm_exp.jobs", str(len(summary.reports) + len(summary.missing)))
    mlflow_client.set_tag(run_id, "lstm_exp.failed_jobs", str(len(summary.failures)))
    if summary.failures:
        mlflow_client.set_tag(run_id, "lstm_exp.failures", "\n".join(summary.failures)[:5000])
    for path in written:
        mlflow_client.log_artifact(run_id, str(path))
    _log_headline(mlflow_client, run_id, summary)
    mlflow_client.log_param(run_id, "swept", " x ".join(axis_label(k) for k in
                                                         parent.data.tags.get(SWEPT_TAG, "").split(",") if k) or "-")
    mlflow_client.log_param(run_id, "baseline", summary.baseline_variant() or "-")
    view_id = _write_views(mlflow_client, parent, summary)
    url = view_address(uri, parent.info.experiment_id, view_id)
    mlflow_client.set_tag(run_id, DESCRIPTION_TAG, summary.description(url)[:60000])
    mlflow_client.set_terminated(run_id, "FAILED" if failed else "FINISHED")
    return url


def _log_headline(mlflow_client, run_id: str, summary) -> None:
    """Best throughput (its variant and batch as tags) and, per variant, throughput and latency
    with step = batch size: the series the saved view draws as one line per variant."""
    from mlflow.entities import Metric

    from lstm_exp.tracking.views import SERIES, series_key

    best = summary.best()
    if best is not None:
        mlflow_client.log_metric(run_id, "best_utt_s", best.throughput.utt_s)
        mlflow_client.set_tag(run_id, "lstm_exp.best_variant", best.variant)
        mlflow_client.set_tag(run_id, "lstm_exp.best_batch", str(best.batch))
    now = int(datetime.now().timestamp() * 1000)
    getters = {"throughput_utt_s": lambda r: r.throughput.utt_s, "infer_ms_p50": lambda r: r.infer_ms.p50}
    points = [Metric(series_key(name, r.variant), float(getters[name](r)), now, int(r.batch))
              for name, _ in SERIES for r in summary.done
              if r.batch is not None and getters[name](r) is not None]
    for start in range(0, len(points), 1000):
        mlflow_client.log_batch(run_id, metrics=points[start:start + 1000])


def _spans_decade(values: Sequence[Optional[float]]) -> bool:
    values = [v for v in values if v]
    return bool(values) and max(values) > 10 * min(values)


def _write_views(mlflow_client, parent, summary) -> str:
    """The sweep's view (its runs, swept axes, the answer's charts) and the experiment-wide "all
    sweeps" view; returns the sweep view's id."""
    from lstm_exp.tracking import views

    metrics = [m for m in views.VIEW_METRICS if m in ("per", "infer_ms_p50", "infer_ms_p99", "throughput_utt_s")
               or any(m in r.metrics() for r in summary.reports)]
    axes = ["variant", "batch", *[a for a in ("batching", "precision", "decode", "model", "scenario") if summary.varies(a)]]
    if len({r.loadgen.target_qps for r in summary.reports if r.scenario == "server"}) > 1:
        axes.append("scenario.target_qps")  # a server capacity sweep: its axis is the target QPS
    charts = views.sweep_charts(summary.variants, _spans_decade([r.throughput.utt_s for r in summary.done]),
                                _spans_decade([r.infer_ms.p50 for r in summary.done]))
    charts = [chart for chart in charts if chart.metrics]  # no variant came back: no per-variant series
    experiment_id = parent.info.experiment_id
    view_id = views.write_view(mlflow_client, experiment_id, parent.info.run_id, parent.info.run_name,
                               views.view_state(views.sweep_filter(parent.info.run_id), axes, metrics, charts))
    every_job = views.view_state("tags.`lstm_exp.role` = 'job'", ["variant", "batch", "batching", "precision",
                                 "decode", "model", "scenario"], metrics, [views.Chart("PER %, per job", "BAR", ("per",))],
                                 section="all sweeps", order_by=views.FASTEST_FIRST)
    views.write_view(mlflow_client, experiment_id, views.ALL_SWEEPS_VIEW, "all sweeps (every job)", every_job)
    return view_id


def view_address(uri: str, experiment_id: str, view_id: Optional[str]) -> str:
    """Where to open a view: a server's own address, or for a local store the ``mlflow ui``
    command that serves it and the URL it will have."""
    from lstm_exp.tracking.views import view_url

    if uri.startswith(("http://", "https://")):
        return view_url(uri, experiment_id, view_id)
    return f"{view_url('http://127.0.0.1:5000', experiment_id, view_id)}  (after: mlflow ui --backend-store-uri {uri})"


def _job_num(job_dir: Path) -> Optional[int]:
    hydra_yaml = job_dir / ".hydra" / "hydra.yaml"
    if not hydra_yaml.is_file():
        return None
    try:
        return int(OmegaConf.load(hydra_yaml).hydra.job.num)
    except Exception:
        return None


def launched_jobs(config: DictConfig) -> Optional[int]:
    """How many jobs Hydra's basic sweeper launched for this sweep (None for another sweeper)."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    sweeper = config.hydra.get("sweeper") or {}
    if not str(sweeper.get("_target_", "")).endswith("BasicSweeper"):
        return None
    params = sweeper.get("params") or {}
    arguments = [f"{key}={value}" for key, value in params.items()] + list(config.hydra.overrides.task)
    overrides = OverridesParser.create().parse_overrides(arguments)
    return sum(len(batch) for batch in BasicSweeper.split_arguments(overrides, None))


def unreturned_jobs(config: DictConfig, returned: int, sweep_dir: Path) -> list[str]:
    """One failure line when fewer job results came back (runs, job folders) than jobs were launched:
    jobs that ran elsewhere (another working directory, another store) must not pass as a success."""
    launched = launched_jobs(config)
    if launched is None or returned >= launched:
        return []
    return [f"{launched - returned} of {launched} launched job(s) returned no result (no MLflow run under the "
            f"parent, no job folder under {sweep_dir}): the jobs must see {sweep_dir} (a shared filesystem) "
            "and run from the launch folder; see each job's log"]


def concurrent_jobs_measured(mlflow_client, parent_run) -> str:
    """The most child runs of the sweep that ran at the same time (from their start and end times),
    "" when none is known: what the launcher really did, whichever it was."""
    from lstm_exp.tracking.store import PARENT_TAG

    children = mlflow_client.search_runs([parent_run.info.experiment_id], max_results=5000,
                                         filter_string=f"tags.`{PARENT_TAG}` = '{parent_run.info.run_id}'")
    timed = [r.info for r in children if r.info.start_time is not None and r.info.end_time is not None]
    events = sorted([(info.start_time, 1) for info in timed] + [(info.end_time, -1) for info in timed])
    running, most = 0, 0
    for _, step in events:  # at equal times an end (-1) sorts before a start (+1)
        running += step
        most = max(most, running)
    return str(most) if most else ""
