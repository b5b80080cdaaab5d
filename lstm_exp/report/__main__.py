"""``python -m lstm_exp.report``: a sweep's table, conclusions and plots, rebuilt from the MLflow
store alone; the list of sweeps; two sweeps side by side.

    python -m lstm_exp.report                                   # latest sweep of lstm_exp in ./mlflow.db
    python -m lstm_exp.report --sweep <parent run id> --out reports/
    python -m lstm_exp.report --list                            # every sweep: axes, jobs, statuses
    python -m lstm_exp.report --compare <sweep A> <sweep B>     # e.g. before/after a change, two machines
    python -m lstm_exp.report --tracking-uri http://127.0.0.1:5000 --experiment lstm_exp

"latest" is the newest sweep with at least one finished (or reused) job.  A sweep is named by its
parent run id, or ``latest``.  Prints the Markdown table and the conclusions; writes
summary.csv, summary.md and the plots into ``--out`` (default ``sweep-report/<parent run id>``).
Exits 1 if the sweep had failed jobs; 2, with one ``lstm_exp.report: error:`` line, if there is no
such store or sweep, or the sweep has no job at all.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Optional

from lstm_exp.report.sweep import SweepSummary, sweep_title

PROG = "lstm_exp.report"
LATEST = "latest"


class ReportError(Exception):
    """One line for the user; the CLI prints it as ``lstm_exp.report: error: <line>`` and exits 2."""


def main(argv: list[str] | None = None) -> int:
    from mlflow.exceptions import MlflowException

    from lstm_exp.tracking.mlflow_run import default_tracking_uri
    from lstm_exp.tracking.store import client, sqlite_file

    args = _parser().parse_args(argv)
    uri = args.tracking_uri or default_tracking_uri(os.getcwd())
    db = sqlite_file(uri)
    try:
        if db is not None and not db.is_file():  # reading must not create a store
            raise ReportError(f"no MLflow store at {db}: run it where the sweep ran, or pass --tracking-uri")
        mlflow_client = client(uri)
        if args.list:
            return _list(mlflow_client, uri, args)
        if args.compare:
            return _compare(mlflow_client, uri, args)
        return _report(mlflow_client, uri, args)
    except ReportError as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return 2
    except MlflowException as exc:  # a store that cannot be read: unreachable server, broken database
        print(f"{PROG}: error: cannot read the MLflow store {uri}: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m lstm_exp.report", description=__doc__.split("\n\n")[0])
    parser.add_argument("--tracking-uri", default=None,
                        help="MLflow store (default: $MLFLOW_TRACKING_URI, else sqlite:///$PWD/mlflow.db)")
    parser.add_argument("--experiment", default="lstm_exp", help="experiment name (default: lstm_exp)")
    parser.add_argument("--sweep", default=LATEST, help="the sweep's parent run id (default: latest)")
    parser.add_argument("--out", default=None, help="folder for summary.csv/.md and plots")
    parser.add_argument("--list", action="store_true", help="list the sweeps: axes, job counts and statuses")
    parser.add_argument("--compare", nargs=2, metavar=("A", "B"), help="two sweeps side by side (run ids or latest)")
    parser.add_argument("--baseline", default=None, help="variant the speed-ups are measured against")
    return parser


def _find_sweep(mlflow_client, uri: str, experiment: str, name: str):
    from lstm_exp.tracking.store import latest_sweep

    if name == LATEST:
        parent = latest_sweep(mlflow_client, experiment)
        if parent is None:
            raise ReportError(f"no sweep in experiment {experiment!r} of {uri} has a finished job: run one with "
                              "`python -m lstm_exp ... -m`, or pass --tracking-uri / --experiment / --sweep")
        return parent
    try:
        return mlflow_client.get_run(name)
    except Exception:
        raise ReportError(f"no run {name} in {uri}: write a sweep's parent run id (see --list) or latest") from None


def _summary(mlflow_client, uri: str, parent, baseline: Optional[str]) -> SweepSummary:
    from lstm_exp.errors import ConfigError
    from lstm_exp.tracking.store import OVERRIDES_TAG, sweep_reports

    title = sweep_title(parent.info.run_name, parent.data.tags.get(OVERRIDES_TAG, ""))
    summary = SweepSummary(reports=sweep_reports(mlflow_client, parent), parent_run_id=parent.info.run_id,
                           title=title, baseline=baseline, tracking_uri=uri)
    if not summary.reports:
        raise ReportError(f"sweep {parent.info.run_id} ({parent.info.run_name}) has no job at all: it was stopped "
                          "before any job started; pick another with --sweep (see --list)")
    try:
        summary.baseline_variant()
    except ConfigError as err:
        raise ReportError(str(err).replace("report.baseline=", "--baseline ")
                          .replace("leave it null", "leave --baseline out")) from None
    return summary


def _report(mlflow_client, uri: str, args: argparse.Namespace) -> int:
    parent = _find_sweep(mlflow_client, uri, args.experiment, args.sweep)
    summary = _summary(mlflow_client, uri, parent, args.baseline)
    out = Path(args.out) if args.out else Path("sweep-report") / parent.info.run_id
    written = summary.write(out)
    print(summary.to_markdown())
    print(f"wrote {out}/ ({', '.join(p.name for p in written)})", file=sys.stderr)
    return 1 if summary.failed else 0


def _list(mlflow_client, uri: str, args: argparse.Namespace) -> int:
    from collections import Counter

    from lstm_exp.tracking.store import SWEPT_TAG, sweep_parents, sweep_reports

    parents = sweep_parents(mlflow_client, args.experiment)
    if not parents:
        raise ReportError(f"no sweep in experiment {args.experiment!r} of {uri}: run one with `python -m lstm_exp ... -m`")
    print(f"{'parent run id':32}  {'status':8}  {'jobs':>4}  {'job statuses':28}  name (swept: axes)")
    for parent in parents:
        statuses = Counter(r.status for r in sweep_reports(mlflow_client, parent))
        counts = ", ".join(f"{n} {s}" for s, n in sorted(statuses.items())) or "none"
        axes = parent.data.tags.get(SWEPT_TAG, "") or "-"
        print(f"{parent.info.run_id:32}  {parent.info.status:8}  {sum(statuses.values()):>4}  {counts:28}  "
              f"{parent.info.run_name} (swept: {axes})")
    return 0


def _compare(mlflow_client, uri: str, args: argparse.Namespace) -> int:
    from lstm_exp.report.sweep import compare_markdown

    a, b = (_summary(mlflow_client, uri, _find_sweep(mlflow_client, uri, args.experiment, name), args.baseline)
            for name in args.compare)
    print(compare_markdown(a, b))
    return 1 if a.failed or b.failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
