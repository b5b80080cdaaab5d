"""The sweep's answer as a user sees it, in a real browser (issue 18): a smoke sweep tracked by an
``mlflow server`` that this test starts on a free loopback port; Playwright drives Debian's
``chromium`` (``executable_path``; no browser download: ``.ci/run`` apt-installs ``chromium``)
to the URL the sweep printed, and finds the sweep's job rows with PER and latency values, then
the parent run's page with its description (the table and the conclusions)."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow_ui import CHROMIUM, UI_TIMEOUT_MS, close_assistant, mlflow_server

CHECKOUT = Path(__file__).resolve().parents[2]
URL_LINE = re.compile(r"^lstm_exp: the sweep in the MLflow UI: (\S+)", re.M)

playwright = pytest.importorskip("playwright.sync_api", reason="pip install -e '.[test]' (playwright)")
pytestmark = pytest.mark.skipif(not Path(CHROMIUM).is_file(), reason="apt-get install chromium (.ci/run does)")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """``mlflow server`` over a fresh SQLite store, artefacts served through it; stopped by PID."""
    root = tmp_path_factory.mktemp("ui")
    with mlflow_server(f"sqlite:///{root / 'mlflow.db'}", root) as url:
        yield root, url


@pytest.fixture(scope="module")
def sweep(server):
    """A 2-job smoke sweep tracked by the server; returns (the printed view URL, the parent run id)."""
    root, url = server
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env.update({"MLFLOW_TRACKING_URI": url, "PYTHONPATH": os.pathsep.join(filter(None, [str(CHECKOUT),
                                                                                          env.get("PYTHONPATH")]))})
    proc = subprocess.run([sys.executable, "-m", "lstm_exp", "experiment=smoke", "progress=false",
                           "backend=torch,onnxruntime", "batch=2", "-m"],
                          cwd=root, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (view_url,) = URL_LINE.findall(proc.stdout)
    parent_id = re.search(r"viewStateShareKey=([0-9a-f]+)", view_url).group(1)
    return view_url, parent_id


@pytest.fixture(scope="module")
def page():
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        yield browser.new_page(viewport={"width": 1600, "height": 900})
        browser.close()


def _cells(page, column: str) -> list[str]:
    return [t.strip() for t in page.locator(f'[role="gridcell"][col-id="{column}"]').all_inner_texts()]


def test_the_printed_url_opens_the_sweeps_rows_with_per_and_latency(server, sweep, page):
    _, url = server
    view_url, parent_id = sweep
    assert view_url.startswith(f"{url}/#/experiments/") and "workflowType=machine_learning" in view_url
    page.goto(view_url)
    page.get_by_text("matching runs").wait_for(timeout=UI_TIMEOUT_MS)
    close_assistant(page)
    for name in ("torch-cpu-fp32-b2-dev", "onnxruntime-cpu-fp32-b2-dev"):
        page.get_by_role("link", name=name, exact=True).wait_for(timeout=UI_TIMEOUT_MS)
    assert page.get_by_text("3 matching runs").is_visible()  # the two jobs and their parent, nothing else
    per, p50 = _cells(page, "metrics.`per`"), _cells(page, "metrics.`infer_ms_p50`")
    assert sum(bool(re.fullmatch(r"\d+(\.\d+)?", v)) for v in per) == 2, per
    assert sum(bool(re.fullmatch(r"\d+(\.\d+)?", v)) for v in p50) == 2, p50


def test_the_parent_page_shows_the_description(server, sweep, page):
    view_url, parent_id = sweep
    experiment_id = re.search(r"#/experiments/(\d+)/", view_url).group(1)
    page.goto(f"{server[1]}/#/experiments/{experiment_id}/runs/{parent_id}")
    page.get_by_text("fastest", exact=False).first.wait_for(timeout=UI_TIMEOUT_MS)
    assert page.get_by_text("onnxruntime-cpu-fp32 against torch-cpu-fp32", exact=False).first.is_visible()
