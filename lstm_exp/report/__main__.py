"""``python -m lstm_exp.report``: a sweep's table and plots, rebuilt from the MLflow store alone.

    python -m lstm_exp.report                                   # latest sweep of lstm_exp in ./mlflow.db
    python -m lstm_exp.report --sweep <parent run id> --out reports/
    python -m lstm_exp.report --tracking-uri http://127.0.0.1:5000 --experiment lstm_exp

Prints the Markdown table; writes summary.csv, summary.md and the PNG plots into ``--out``
(default ``sweep-report/<parent run id>``).  Exits 1 if the sweep had failed jobs, 2 if there
is no such sweep.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from lstm_exp.report.sweep import SweepSummary, sweep_title


def main(argv: list[str] | None = None) -> int:
    from mlflow.exceptions import MlflowException

    from lstm_exp.tracking.mlflow_run import default_tracking_uri
    from lstm_exp.tracking.store import client, sqlite_file

    parser = argparse.ArgumentParser(prog="python -m lstm_exp.report", description=__doc__.split("\n\n")[0])
    parser.add_argument("--tracking-uri", default=None,
                        help="MLflow store (default: $MLFLOW_TRACKING_URI, else sqlite:///$PWD/mlflow.db)")
    parser.add_argument("--experiment", default="lstm_exp", help="experiment name (default: lstm_exp)")
    parser.add_argument("--sweep", default=None, help="the sweep's parent run id (default: the latest sweep)")
    parser.add_argument("--out", default=None, help="folder for summary.csv/.md and plots")
    args = parser.parse_args(argv)

    uri = args.tracking_uri or default_tracking_uri(os.getcwd())
    db = sqlite_file(uri)
    if db is not None and not db.is_file():  # reading must not create a store
        print(f"lstm_exp.report: error: no MLflow store at {db}: run it where the sweep ran, or pass --tracking-uri",
              file=sys.stderr)
        return 2
    try:
        return _report(client(uri), uri, args)
    except MlflowException as exc:  # a store that cannot be read: unreachable server, broken database
        print(f"lstm_exp.report: error: cannot read the MLflow store {uri}: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 2


def _report(mlflow_client, uri: str, args: argparse.Namespace) -> int:
    from lstm_exp.tracking.store import OVERRIDES_TAG, latest_sweep, sweep_reports

    if args.sweep:
        try:
            parent = mlflow_client.get_run(args.sweep)
        except Exception:
            print(f"lstm_exp.report: error: no run {args.sweep} in {uri}", file=sys.stderr)
            return 2
    else:
        parent = latest_sweep(mlflow_client, args.experiment)
        if parent is None:
            print(f"lstm_exp.report: error: no sweep in experiment {args.experiment!r} of {uri}: run one with "
                  "`python -m lstm_exp ... -m`, or pass --tracking-uri / --experiment", file=sys.stderr)
            return 2
    title = sweep_title(parent.info.run_name, parent.data.tags.get(OVERRIDES_TAG, ""))
    summary = SweepSummary(reports=sweep_reports(mlflow_client, parent), parent_run_id=parent.info.run_id, title=title)
    out = Path(args.out) if args.out else Path("sweep-report") / parent.info.run_id
    summary.write(out)
    print(summary.to_markdown())
    print(f"wrote {out}/ (summary.csv, summary.md, latency_vs_batch.png, throughput_vs_batch.png, per_by_variant.png)",
          file=sys.stderr)
    return 1 if summary.failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
