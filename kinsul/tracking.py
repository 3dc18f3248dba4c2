"""MLflow and provenance: what every job that logs needs. A server URI is checked before any work, so an
unreachable server fails in seconds with one line (MLflow's own client retries for minutes).

Jobs log through a `Tracker` from `tracker(cfg.tracking)`: `MLflowTracker`, or `NoTracker` when
``tracking.enabled=false``, which does nothing, so no job branches on whether tracking is on."""

from __future__ import annotations

import os
import re
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from kinsul.fields import ConfigError

if TYPE_CHECKING:
    from lightning.pytorch.loggers import Logger

    from kinsul.config.sections import TrackingConfig

REACH_TIMEOUT_S = 5.0
# a run folder remembers its MLflow run here, so a resumed run (and its evaluation) logs into the same one
RUN_ID_FILE = "mlflow_run_id"


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
        from kinsul.stores import check_sqlite_store

        check_sqlite_store(uri, "tracking.uri", "MLflow tracking")
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


class RunFileError(ValueError):
    """A run folder's record of its MLflow run that is not one (a damaged or edited file)."""


def run_id_of(run_dir: Path) -> str | None:
    """The MLflow run a run folder logs into; None before its first logged start."""
    path = Path(run_dir) / RUN_ID_FILE
    if not path.is_file():
        return None
    text = path.read_bytes().decode("utf-8", "replace").strip()
    if not re.fullmatch(r"[0-9a-f]{32}", text):  # MLflow's run ids: 32 hex digits
        raise RunFileError(f"'{path}' holds {text[:40]!r}, not an MLflow run id (32 hex digits): restore it, or "
                           "delete it and the run logs into a new MLflow run")  # fmt: skip
    return text


class Tracker(Protocol):
    """Where a job's runs, metrics and artifacts go."""

    def check(self) -> None: ...  # before any work: fail fast when the store cannot be reached

    def lightning_logger(
        self, run_dir: Path, tags: Mapping[str, str], params: Mapping[str, str]
    ) -> Logger | bool: ...  # the run folder's logger (False: none); a resumed run logs into its first run

    def log_metrics(self, run_id: str, metrics: Mapping[str, float], step: int) -> None: ...

    def log_artifacts(self, run_id: str, files: Iterable[Path], artifact_path: str | None = None) -> None: ...

    def describe(self, run_id: str, text: str) -> None: ...  # the run's description (markdown)

    def where(self) -> str: ...  # one line for the user: where to look

    def end(self, run_id: str, status: str) -> None: ...  # set a run's final status (KILLED after a signal)


class NoTracker:
    """``tracking.enabled=false``: runs train and evaluate exactly the same, and nothing is logged."""

    def check(self) -> None:
        pass

    def lightning_logger(
        self, run_dir: Path, tags: Mapping[str, str], params: Mapping[str, str]
    ) -> Logger | bool:
        return False  # Lightning's "no logger"

    def log_metrics(self, run_id: str, metrics: Mapping[str, float], step: int) -> None:
        pass

    def log_artifacts(self, run_id: str, files: Iterable[Path], artifact_path: str | None = None) -> None:
        pass

    def describe(self, run_id: str, text: str) -> None:
        pass

    def where(self) -> str:
        return "MLflow: off (tracking.enabled=false)"

    def end(self, run_id: str, status: str) -> None:
        pass


class MLflowTracker:
    """An MLflow store: a sqlite file or a server."""

    def __init__(self, cfg: TrackingConfig):
        self.cfg = cfg
        self._client: Any = None

    @property
    def client(self):
        if self._client is None:
            self._client = client(self.cfg.uri)
        return self._client

    def check(self) -> None:
        prepare(self.cfg.uri)  # an unreachable server fails here, in seconds

    def lightning_logger(
        self, run_dir: Path, tags: Mapping[str, str], params: Mapping[str, str]
    ) -> Logger | bool:
        from lightning.pytorch.loggers import MLFlowLogger

        run_id = run_id_of(run_dir)
        parent = {"mlflow.parentRunId": self.cfg.parent_run_id} if self.cfg.parent_run_id else {}
        logger = MLFlowLogger(experiment_name=self.cfg.experiment, tracking_uri=self.cfg.uri,
                              artifact_location=self.cfg.artifact_location(), run_name=run_dir.name, run_id=run_id,
                              tags={**tags, "git_commit": git_commit(), **parent})  # fmt: skip
        if run_id is None:  # a new run: its parameters and config once
            (run_dir / RUN_ID_FILE).write_text(logger.run_id)
            logger.log_hyperparams(dict(params))
            if (run_dir / "config.yaml").is_file():
                logger.experiment.log_artifact(logger.run_id, str(run_dir / "config.yaml"))
        return logger

    def log_metrics(self, run_id: str, metrics: Mapping[str, float], step: int) -> None:
        import math

        for key, value in metrics.items():
            if math.isfinite(value):
                self.client.log_metric(run_id, key, float(value), step=step)

    def log_artifacts(self, run_id: str, files: Iterable[Path], artifact_path: str | None = None) -> None:
        for path in files:
            self.client.log_artifact(run_id, str(path), artifact_path=artifact_path)

    def describe(self, run_id: str, text: str) -> None:
        """The run's description in the UI. Through log_batch, not set_tag: every worker of a sweep describes its
        parent run when it ends, and set_tag's read-then-insert loses to a concurrent insert on a server's
        database (a duplicate key); the batch path retries that."""
        from mlflow.entities import RunTag

        self.client.log_batch(run_id, tags=[RunTag("mlflow.note.content", text)])

    def where(self) -> str:
        return f"MLflow: {self.cfg.uri}, experiment '{self.cfg.experiment}'; browse with `kinsul ui`"

    def end(self, run_id: str, status: str) -> None:
        self.client.set_terminated(run_id, status=status)


def tracker(cfg: TrackingConfig) -> Tracker:
    return MLflowTracker(cfg) if cfg.enabled else NoTracker()
