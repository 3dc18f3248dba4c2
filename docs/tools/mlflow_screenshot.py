"""Screenshot of the MLflow runs table of a sweep's trials, with success and retention columns
(docs/images/mlflow-<sweep>.png).

    python docs/tools/mlflow_screenshot.py SWEEP [OUT.png]

Run it in the folder the sweep ran in. Starts `mlflow ui` on the sweep's tracking store (127.0.0.1), opens the
experiment's runs table filtered to the sweep's finished child runs and sorted by eval/success, picks the
columns a reader compares (success overall and per family, held-out success, language following, retention; the run names give strategy and seed) with
Playwright driving headless Chromium, and stops the server. Needs `pip install playwright` and Debian's
chromium (`apt-get install chromium`); neither is a kinsul dependency.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

from kinsul.config import load_config
from kinsul.sweeps.run import SWEEP_TAG

COLUMNS = ["eval/success", "eval/success_reach", "eval/success_push", "eval/success_heldout", "eval/language_following",
           "eval/retention"]  # fmt: skip
HIDDEN = ["Dataset", "Source", "Models"]


def main(sweep: str, out: str | None = None, port: int = 5077) -> Path:
    from mlflow.tracking import MlflowClient
    from playwright.sync_api import sync_playwright

    cfg = load_config(sweep)
    exp = MlflowClient(tracking_uri=cfg.tracking.uri).get_experiment_by_name(cfg.tracking.experiment)
    server = subprocess.Popen([sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", cfg.tracking.uri,
                               "--host", "127.0.0.1", "--port", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    path = Path(out or f"docs/images/mlflow-{sweep}.png").resolve()
    try:
        for _ in range(120):
            try:
                urllib.request.urlopen(f"{base}/health", timeout=1)
                break
            except OSError:
                time.sleep(1)
        query = urllib.parse.urlencode({
            "searchFilter": f"tags.`{SWEEP_TAG}` = '{sweep}' and attributes.status = 'FINISHED'",
            "orderByKey": "metrics.`eval/success`", "orderByAsc": "false"})  # fmt: skip
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium",
                                        args=["--no-sandbox", "--disable-gpu", "--disable-quic",
                                              "--disable-background-networking"])  # fmt: skip
            page = browser.new_page(viewport={"width": 2100, "height": 640})
            page.goto(f"{base}/#/experiments/{exp.experiment_id}/runs?{query}")
            page.wait_for_timeout(6000)  # the column list fills once the runs have loaded
            page.get_by_role("button", name="Columns", exact=True).click()

            def toggle(name: str) -> None:  # the tree's checkbox beside the column's title
                exact = re.compile(f"^{re.escape(name)}$")
                node = page.locator("div.du-bois-light-tree-treenode").filter(has_text=exact).first
                node.locator(".du-bois-light-tree-checkbox").click()

            for name in HIDDEN:
                toggle(name)
            search = page.get_by_placeholder("Search columns")
            for name in COLUMNS:  # metrics and params are found through the search box
                search.fill(name)
                page.wait_for_timeout(500)
                toggle(name)
            page.keyboard.press("Escape")
            page.wait_for_timeout(1500)
            path.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(path))
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=30)
    print(path)
    return path


if __name__ == "__main__":
    main(*sys.argv[1:3])
