"""Helpers of the UI tests, and the docs' screenshots of a sweep's saved view:

    python tests/ui/mlflow_ui.py sqlite:///$PWD/mlflow.db '<the URL part after the host the sweep printed>' docs/mlflow-sweep

starts ``mlflow server`` on a free loopback port (stopped by PID), opens the view in Debian's
``chromium`` through Playwright, closes the assistant panel and writes ``<out>.png`` (the table)
and ``<out>-charts.png`` (the chart view)."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

CHROMIUM = "/usr/bin/chromium"
#: the UI loads slowly on a busy 2-core machine; every wait is bounded by this
UI_TIMEOUT_MS = 240_000


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def mlflow_server(store_uri: str, cwd: Path) -> Iterator[str]:
    """``mlflow server`` over ``store_uri`` (artefacts served from ``cwd``); yields its URL."""
    port = free_port()
    log_path = Path(cwd) / f"mlflow-server-{port}.log"
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    with open(log_path, "w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "mlflow", "server", "--backend-store-uri", store_uri,
                                 "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
                                cwd=cwd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env)
        url = f"http://127.0.0.1:{port}"
        try:
            for _ in range(960):
                try:
                    urllib.request.urlopen(f"{url}/health", timeout=2)
                    break
                except OSError:
                    if proc.poll() is not None:
                        raise RuntimeError(log_path.read_text()[-3000:]) from None
                    time.sleep(0.25)
            yield url
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)


def close_assistant(page) -> None:
    """MLflow 3.17 opens an assistant panel over a third of the page on first visit."""
    close = page.locator('[data-component-id="mlflow.assistant.chat_panel.close"]')
    if close.count():
        close.first.click()
        page.wait_for_timeout(500)


def screenshots(store_uri: str, view_path: str, out: str) -> list[str]:
    from playwright.sync_api import sync_playwright

    written = []
    with mlflow_server(store_uri, Path.cwd()) as url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1500, "height": 820})
        page.goto(f"{url}/{view_path.lstrip('/')}")
        page.get_by_text("matching runs").wait_for(timeout=UI_TIMEOUT_MS)
        page.wait_for_timeout(2000)
        close_assistant(page)
        page.screenshot(path=f"{out}.png")
        page.locator('input[name="runs-view-mode"][value="CHART"]').evaluate("e => e.click()")
        page.locator(".js-plotly-plot").first.wait_for(timeout=UI_TIMEOUT_MS)
        page.wait_for_timeout(5000)
        page.screenshot(path=f"{out}-charts.png")
        written += [f"{out}.png", f"{out}-charts.png"]
        browser.close()
    return written


if __name__ == "__main__":
    print(screenshots(*sys.argv[1:4]))
