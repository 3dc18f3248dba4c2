"""MLflow and provenance: what every job that logs needs. A server URI is checked before any work, so an
unreachable server fails in seconds with one line (MLflow's own client retries for minutes)."""

from __future__ import annotations

import os
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

from kinsul.config.errors import ConfigError

REACH_TIMEOUT_S = 5.0


def git_commit() -> str:
    """The kinsul checkout's commit (``+dirty`` with uncommitted changes), wherever the job runs from."""
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True,
                             cwd=here)  # fmt: skip
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                               text=True, cwd=here).stdout.strip()  # fmt: skip
        return out.stdout.strip() + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"  # an installed wheel: no checkout


def prepare(uri: str) -> None:
    """Quiet, bounded MLflow client defaults (a user's own settings win), and for a server URI a check that it
    answers, within ``REACH_TIMEOUT_S``."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
    if not uri.startswith(("http://", "https://")):
        return
    url = uri.rstrip("/") + "/health"
    try:
        with urllib.request.urlopen(url, timeout=REACH_TIMEOUT_S) as r:
            if r.status == 200:
                return
            problem = f"answered {r.status}"
    except urllib.error.HTTPError as e:
        problem = f"answered {e.code}"
    except (urllib.error.URLError, OSError, TimeoutError) as e:
        problem = f"did not answer within {REACH_TIMEOUT_S:g} s ({getattr(e, 'reason', e)})"
    raise ConfigError("tracking.uri", f"the MLflow server {uri} {problem} at {url}: start it (`kinsul ui` or "
                      "`mlflow server`), or log to a local file with tracking.uri=sqlite:///mlflow.db")  # fmt: skip


def client(uri: str):
    from mlflow.tracking import MlflowClient

    prepare(uri)
    return MlflowClient(tracking_uri=uri)
