"""Saved views of MLflow 3's experiment page, written by a sweep: its answer one click away.

MLflow 3.17's UI keeps a saved view as an experiment tag ``mlflow.sharedViewState.<view id>``
whose value is the envelope the UI's own "Save view" writes (``mlflow/server/js``, the saved-view
module): JSON ``{"name", "createdAt", "updatedAt", "state"}`` with times in ms and ``state`` the
view's JSON compressed as ``"deflate;" + base64(zlib)``.  The runs page lists it in its "Views"
menu and opens it with ``#/experiments/<id>/runs?workflowType=machine_learning&viewStateShareKey=<id>``.
The state holds the search facets (``searchFilter``, ``orderByKey``, ``orderByAsc``, ...) and the
UI state (``selectedColumns``, ``runsHiddenMode``, ``compareRunCharts``, ``compareRunSections``,
...); the UI takes those keys from it and its defaults for the rest.  Column keys are
``params.`name```, ``metrics.`name```, ``tags.`name```.

Views are written with the tracking API (``set_experiment_tag``), so they work on a remote server
too; a view id is stable (the sweep's parent run id; ``all-sweeps``), so writing it again updates
the view in place.
"""
from __future__ import annotations

import base64
import json
import time
import zlib
from dataclasses import dataclass
from typing import Iterable, Optional, Sequence

VIEW_TAG_PREFIX = "mlflow.sharedViewState."
VIEW_URL_KEY = "viewStateShareKey"
DEFLATE_HEADER = "deflate;"
ALL_SWEEPS_VIEW = "all-sweeps"
#: the runs table of a model-training experiment (not MLflow 3's GenAI overview)
RUNS_PAGE = "#/experiments/{experiment_id}/runs?workflowType=machine_learning"
#: the runs table's name column (its AG Grid column id), widened so that names are not cut
RUN_NAME_COLUMN = "attributes.`Run Name`"
#: the metrics every sweep view shows, in this order; interval bounds appear when runs carry them
VIEW_METRICS = ("per", "per_ci95_low", "per_ci95_high", "infer_ms_p50", "infer_ms_p99", "throughput_utt_s",
                # LoadGen scenarios (lstm_exp.scenarios): shown when the sweep's jobs carry them
                "loadgen_p90_ms", "loadgen_p99_ms", "loadgen_scheduled_qps", "loadgen_samples_s", "loadgen_bound_met")
#: the parent's per-variant series (step = batch size): "<name>/<variant>", see SERIES
SERIES = (("throughput_utt_s", "throughput, utt/s (x: batch size)"),
          ("infer_ms_p50", "latency p50, ms per batch (x: batch size)"))


def column(kind: str, name: str) -> str:
    """A column key of the runs table: ``kind`` is params, metrics, tags or attributes."""
    return f"{kind}.`{name}`"


def series_key(metric: str, variant: str) -> str:
    """The parent-run metric that holds ``metric`` of one variant, one step per batch size."""
    return f"{metric}/{variant}"


def encode_state(state: dict) -> str:
    return DEFLATE_HEADER + base64.b64encode(zlib.compress(json.dumps(state).encode())).decode()


def decode_state(text: str) -> dict:
    if text.startswith(DEFLATE_HEADER):
        text = zlib.decompress(base64.b64decode(text[len(DEFLATE_HEADER):])).decode()
    return json.loads(text)


def envelope(name: str, state: dict, created_ms: int, updated_ms: int) -> str:
    return json.dumps({"name": name, "createdAt": created_ms, "updatedAt": updated_ms, "state": encode_state(state)})


def read_view(tag_value: str) -> tuple[str, dict]:
    """(name, state) of a saved-view tag value."""
    data = json.loads(tag_value)
    return data["name"], decode_state(data["state"])


@dataclass(frozen=True)
class Chart:
    """One card of the chart area: ``kind`` LINE (metrics against step) or BAR (a metric per run)."""

    title: str
    kind: str
    metrics: tuple[str, ...]
    log_y: bool = False

    def card(self, uuid: str, section: str) -> dict:
        card = {"uuid": uuid, "type": self.kind, "displayName": self.title, "metricSectionId": section,
                "deleted": False, "isGenerated": False, "runsCountToCompare": 100, "metricKey": self.metrics[0],
                "selectedMetricKeys": list(self.metrics)}
        if self.kind == "LINE":
            card.update({"xAxisKey": "step", "useGlobalXaxisKey": False, "xAxisScaleType": "log",
                         "scaleType": "log" if self.log_y else "linear", "lineSmoothness": 0,
                         "useGlobalLineSmoothing": False, "displayPoints": True, "selectedXAxisMetricKey": "",
                         "yAxisKey": "metric", "yAxisExpressions": [], "ignoreOutliers": False,
                         "range": {"xMin": None, "xMax": None, "yMin": None, "yMax": None}})
        return card


#: the sweep view's rows: its parent first (MLflow 3.17's chart legend names the first rows' lines,
#: and the parent holds the per-variant series), then its jobs
PARENT_FIRST = column("tags", "lstm_exp.role")
FASTEST_FIRST = column("metrics", "throughput_utt_s")


def view_state(search_filter: str, params: Sequence[str], metrics: Sequence[str], charts: Sequence[Chart],
               section: str = "the sweep's answer", order_by: str = PARENT_FIRST) -> dict:
    """The UI state of a view: filter, rows in descending ``order_by`` (any order but "Created"
    keeps the rows flat: MLflow nests children under a collapsed parent when sorting by date),
    columns (params, then metrics, then the REUSED marks) and the chart area (only ``charts``, in
    order, every run of the filter shown)."""
    columns = [column("params", p) for p in params] + [column("metrics", m) for m in metrics]
    columns += [column("tags", "lstm_exp.status"), column("tags", "lstm_exp.measured_at")]
    order = [RUN_NAME_COLUMN, *columns]
    widths = {RUN_NAME_COLUMN: 290, column("params", "variant"): 180, column("params", "batch"): 70,
              **{c: 110 for c in columns if c.startswith("metrics.")}}
    section_id = "lstm_exp-answer"
    return {
        "searchFilter": search_filter, "orderByKey": order_by, "orderByAsc": False,
        "selectedColumns": columns, "columnOrder": order, "columnWidths": widths,
        "runsHiddenMode": "SHOW_ALL", "hideEmptyCharts": True, "useGroupedValuesInCharts": True, "groupBy": None,
        "compareRunSections": [{"uuid": section_id, "name": section, "display": True, "isReordered": False}],
        "compareRunCharts": [chart.card(f"lstm_exp-chart-{i}", section_id) for i, chart in enumerate(charts)],
        "isAccordionReordered": True, "viewMaximized": False, "runListHidden": False,
    }


def sweep_charts(variants: Iterable[str], log_throughput: bool, log_latency: bool) -> list[Chart]:
    """The sweep's answer: throughput and latency against batch size, one line per variant (the
    parent's series), and PER of every job."""
    variants = list(variants)
    (thr, thr_title), (lat, lat_title) = SERIES
    return [Chart(thr_title, "LINE", tuple(series_key(thr, v) for v in variants), log_throughput),
            Chart(lat_title, "LINE", tuple(series_key(lat, v) for v in variants), log_latency),
            Chart("PER %, per job", "BAR", ("per",))]


def sweep_filter(parent_run_id: str) -> str:
    """Exactly this sweep's runs: its jobs (measured or reused) and its parent, which carries the
    per-variant series the charts draw."""
    return f"tags.`lstm_exp.sweep` = '{parent_run_id}'"


def write_view(mlflow_client, experiment_id: str, view_id: str, name: str, state: dict) -> str:
    """Writes (or updates, keeping its creation time) the view; returns its id."""
    key = VIEW_TAG_PREFIX + view_id
    now = int(time.time() * 1000)
    created = now
    existing = mlflow_client.get_experiment(experiment_id).tags.get(key)
    if existing:
        try:
            created = int(json.loads(existing).get("createdAt", now))
        except (ValueError, TypeError, AttributeError):
            created = now
    mlflow_client.set_experiment_tag(experiment_id, key, envelope(name, state, created, now))
    return view_id


def view_url(base: str, experiment_id: str, view_id: Optional[str]) -> str:
    """``base`` (the UI's address, ``http://127.0.0.1:5000``) plus the runs page of the view."""
    page = RUNS_PAGE.format(experiment_id=experiment_id)
    return f"{base.rstrip('/')}/{page}" + (f"&{VIEW_URL_KEY}={view_id}" if view_id else "")
