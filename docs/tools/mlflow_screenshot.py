"""Screenshot of the MLflow UI comparing a sweep's trial runs (docs/images/mlflow-<sweep>.png).

    .venv/bin/python docs/tools/mlflow_screenshot.py quick

Starts `mlflow ui` on the sweep's tracking store (127.0.0.1), opens the run-comparison page of the sweep's
finished child runs in headless Chromium (`apt-get install chromium`), and stops the server. Run it in the folder
the sweep ran in.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

from mlflow.tracking import MlflowClient

from kinsul.config import load_config
from kinsul.sweeps.run import SWEEP_TAG


def main(sweep: str, port: int = 5077, out: str | None = None) -> Path:
    cfg = load_config(sweep)
    client = MlflowClient(tracking_uri=cfg.tracking.uri)
    exp = client.get_experiment_by_name(cfg.tracking.experiment)
    runs = client.search_runs(
        [exp.experiment_id], f"tags.`{SWEEP_TAG}` = '{sweep}' and attributes.status = 'FINISHED'"
    )
    ids = [r.info.run_id for r in runs if r.data.tags.get("kinsul.role") != "parent"]
    if not ids:
        raise SystemExit(f"no finished trial runs of sweep '{sweep}' in {cfg.tracking.uri}")
    server = subprocess.Popen([sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", cfg.tracking.uri,
                               "--host", "127.0.0.1", "--port", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(120):
            try:
                urllib.request.urlopen(base, timeout=1)
                break
            except OSError:
                time.sleep(1)
        query = urllib.parse.urlencode(
            {"runs": json.dumps(ids), "experiments": json.dumps([exp.experiment_id])}
        )
        path = Path(out or f"docs/images/mlflow-{sweep}.png").resolve()
        path.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                        "--window-size=1600,1200", "--virtual-time-budget=30000", f"--screenshot={path}",
                        f"{base}/#/compare-runs?{query}"], check=True, capture_output=True)  # fmt: skip
    finally:
        server.terminate()
        server.wait(timeout=30)
    print(path)
    return path


if __name__ == "__main__":
    main(*sys.argv[1:2])
