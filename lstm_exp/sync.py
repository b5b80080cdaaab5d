"""Upload what a sweep kept locally while its MLflow store was down::

    python -m lstm_exp.sync [SWEEP_DIR]     # default: the latest sweep under ./multirun

A job whose store failed (``lstm_exp.tracking.store_check``) keeps its ``report.json``, its
artefacts and ``tracking_pending.json`` (:class:`~lstm_exp.tracking.mlflow_run.PendingUpload`)
in its job folder.  Once the store is back, this command, for every such job under the folder
(a sweep folder or a single run's): records the report into the run the job started (or, when
the store was gone before that, into a new run nested under the sweep's parent), ends it
FINISHED or FAILED as the job did, and removes the pending file.  Then it ends FAILED the
sweep's children still RUNNING (jobs killed without a report), and rebuilds the sweep's summary
and plots onto its parent (``parent_run.json``) and ends the parent, exactly as the sweep's own
end would have: no run stays RUNNING.  Exit status: 0 when the sweep is complete and every job
FINISHED, 1 when a job failed or never ran (the summary lists it), 2 when nothing could be
synced (the store still down, no such folder: one ``lstm_exp: error:`` line, as the project's
other commands).  Running it again is harmless (nothing left to upload).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Optional

from lstm_exp.errors import LstmExpError
from lstm_exp.tracking.mlflow_run import MlflowRun, PendingUpload, upload_report
from lstm_exp.tracking.store_check import check_store

#: exit status when nothing could be synced (as ``python -m lstm_exp.report``'s errors)
USAGE_EXIT = 2
#: the error of a job that left no report.json before its store failed
NO_REPORT = "the job ended without a report.json (killed, or its store failed before it finished)"


class SyncError(LstmExpError):
    """Nothing to sync at the folder given."""


def latest_sweep_dir(root: Path) -> Optional[Path]:
    """The newest ``multirun/<date>/<time>`` folder under ``root`` that has a ``parent_run.json``."""
    from lstm_exp.tracking.sweep import PARENT_FILE

    found = sorted((root / "multirun").glob(f"*/*/{PARENT_FILE}"), key=lambda p: p.stat().st_mtime)
    return found[-1].parent if found else None


def pending_job_dirs(folder: Path) -> list[Path]:
    return sorted({path.parent for path in folder.rglob(PendingUpload.FILE)}, key=str)


def sync_job(job_dir: Path) -> str:
    """Record one job's kept result into its run and end it; returns the run's final status."""
    from lstm_exp.report.job import JobReport
    from lstm_exp.tracking.store import ERROR_TAG

    pending = PendingUpload.read(job_dir)
    check_store(pending.tracking_uri)
    tracker = MlflowRun(True, pending.tracking_uri, pending.experiment_name)
    if pending.run_id:
        tracker.resume(pending.run_id)
        tracker.set_tags(pending.tags)  # those the job could not record any more
    else:
        tracker.start(pending.run_name, pending.params, pending.tags, parent_run_id=pending.parent_run_id)
    report_file = job_dir / "report.json"
    report = JobReport.from_json(report_file) if report_file.is_file() else None
    if report is not None and report.status != "FAILED":
        upload_report(tracker, report, job_dir, pending.log_artifacts)
        status = "FINISHED"
    else:
        tracker.set_tags({ERROR_TAG: (report.error if report is not None and report.error else NO_REPORT)[:5000]})
        status = "FAILED"
    tracker.end(status)
    PendingUpload.remove(job_dir)
    print(f"lstm_exp: synced {job_dir} -> run {tracker.run_id} ({status})")
    return status


def end_orphans(mlflow_client, parent_run) -> int:
    """End FAILED the sweep's children still RUNNING (their job left nothing to upload)."""
    from lstm_exp.tracking.store import ERROR_TAG, PARENT_TAG

    children = mlflow_client.search_runs([parent_run.info.experiment_id], max_results=5000,
                                         filter_string=f"tags.`{PARENT_TAG}` = '{parent_run.info.run_id}' "
                                                       "and attributes.status = 'RUNNING'")
    for run in children:
        mlflow_client.set_tag(run.info.run_id, ERROR_TAG, NO_REPORT)
        mlflow_client.set_terminated(run.info.run_id, "FAILED")
        print(f"lstm_exp: run {run.info.run_id} ({run.info.run_name}) was still RUNNING: ended FAILED ({NO_REPORT})")
    return len(children)


def close_sweep(sweep_dir: Path, changed: bool) -> int:
    """Rebuild the sweep's summary onto its parent and end it, as the sweep's own end does; the
    exit status of that end (0: every job FINISHED)."""
    from omegaconf import OmegaConf

    from lstm_exp.tracking.store import client
    from lstm_exp.tracking.sweep import PARENT_FILE, SweepCallback, SweepParent

    parent = SweepParent(**json.loads((sweep_dir / PARENT_FILE).read_text()))
    check_store(parent.tracking_uri)
    mlflow_client = client(parent.tracking_uri)
    parent_run = mlflow_client.get_run(parent.run_id)
    changed = end_orphans(mlflow_client, parent_run) > 0 or changed
    if not changed and parent_run.info.status != "RUNNING":
        print(f"lstm_exp: sweep parent run {parent.run_id} is complete ({parent_run.info.status}); nothing to sync")
        return 0 if parent_run.info.status == "FINISHED" else 1
    config = OmegaConf.load(sweep_dir / "multirun.yaml")
    config.hydra.sweep.dir = str(sweep_dir)
    config.tracking.tracking_uri, config.tracking.experiment_name = parent.tracking_uri, parent.experiment_name
    callback = SweepCallback()
    callback.parent_run_id = parent.run_id
    try:
        callback._end_sweep(config)
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


def sync(folder: Path) -> int:
    from lstm_exp.tracking.sweep import PARENT_FILE

    if not folder.is_dir():
        raise SyncError(f"{folder} is not a folder: give a sweep folder (multirun/<date>/<time>) or a run's folder")
    statuses = [sync_job(job_dir) for job_dir in pending_job_dirs(folder)]
    if (folder / PARENT_FILE).is_file():
        return close_sweep(folder, changed=bool(statuses))
    if not statuses:
        print(f"lstm_exp: nothing to sync under {folder} (no {PendingUpload.FILE})")
    return 0 if all(status == "FINISHED" for status in statuses) else 1


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lstm_exp.sync", description=__doc__.split("\n\n")[0].rstrip(":"))
    parser.add_argument("folder", nargs="?", type=Path,
                        help="a sweep folder (multirun/<date>/<time>) or a run's folder; default: the latest sweep")
    args = parser.parse_args(argv)
    folder = args.folder or latest_sweep_dir(Path.cwd())
    try:
        if folder is None:
            raise SyncError(f"no sweep under {Path.cwd() / 'multirun'} (no parent_run.json): give the folder to sync")
        return sync(folder.resolve())
    except LstmExpError as err:
        print(f"lstm_exp: error: {err}", file=sys.stderr)
        return USAGE_EXIT


if __name__ == "__main__":
    sys.exit(main())
