"""Real servers for the scale-out tests: a PostgreSQL cluster and an `mlflow server` on loopback, each started in
a temporary folder and stopped afterwards. Nothing here is a stand-in: the sweeps under test talk to them over
TCP exactly as workers on other machines would."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_healthy(url: str, process: subprocess.Popen, timeout_s: float) -> bool:
    """Poll an MLflow server's /health until it answers 200 (True), or until ``process`` exits or ``timeout_s``
    passes (False)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
                if r.status == 200:
                    return True
        except OSError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            return False
        time.sleep(0.5)


def postgres_bin() -> Path | None:
    """The server binaries of Debian's postgresql package (initdb and pg_ctl are not on PATH there)."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if found:
        return found[-1].parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def _as_server_user(cmd: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: as root, run it as the package's `postgres` user."""
    if os.geteuid() != 0:
        return cmd
    runuser = shutil.which("runuser")
    if runuser is None:
        pytest.skip("running as root without runuser: PostgreSQL refuses to run as root")
    return [runuser, "-u", "postgres", "--", *cmd]


@contextlib.contextmanager
def postgres_server():
    """A fresh PostgreSQL cluster on a loopback port; yields ``url(database)``, which creates that database and
    returns its SQLAlchemy URL (the psycopg 3 driver of the `postgres` extra). Optuna and MLflow each need their
    own database: both keep their schema version in a table named alembic_version. Skips, saying why, where the
    server is not installed."""
    bindir = postgres_bin()
    if bindir is None:
        pytest.skip(
            "PostgreSQL's server is not installed (Debian: apt-get install postgresql; .ci/run installs it)"
        )
    pytest.importorskip(
        "psycopg", reason="the database driver comes with the extra: pip install -e '.[postgres]'"
    )
    root = Path(tempfile.mkdtemp(prefix="kinsul-pg-"))
    root.chmod(0o755)
    data, sockets = root / "data", root / "sock"
    sockets.mkdir()
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
        shutil.chown(sockets, "postgres")
    port = free_port()
    subprocess.run(_as_server_user([str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust",
                                    "-E", "UTF8", "--no-sync"]), check=True, capture_output=True)  # fmt: skip
    opts = f"-p {port} -k {sockets} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200"
    subprocess.run(_as_server_user([str(bindir / "pg_ctl"), "-D", str(data), "-o", opts, "-w", "-l",
                                    str(root / "server.log"), "start"]), check=True, capture_output=True)  # fmt: skip

    def url(database: str) -> str:
        subprocess.run(["psql", "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "-c", f"CREATE DATABASE {database}"],
                       check=True, capture_output=True)  # fmt: skip
        return f"postgresql+psycopg://postgres@127.0.0.1:{port}/{database}"

    try:
        yield url
    finally:
        subprocess.run(_as_server_user([str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"]),
                       capture_output=True)  # fmt: skip
        shutil.rmtree(root, ignore_errors=True)


@contextlib.contextmanager
def mlflow_server(backend: str, artifacts: Path, timeout_s: float = 120.0):
    """`mlflow server` on a loopback port with ``backend`` as its store and ``artifacts`` as the artifact
    destination every worker uploads to through the server; yields its URL."""
    port = free_port()
    mlflow = Path(sys.executable).parent / "mlflow"
    log = open(artifacts.parent / "mlflow-server.log", "w")  # noqa: SIM115 (closed below)
    server = subprocess.Popen([str(mlflow), "server", "--backend-store-uri", backend, "--artifacts-destination",
                               artifacts.as_uri(), "--host", "127.0.0.1", "--port", str(port), "--workers", "2"],
                              stdout=log, stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        if not wait_until_healthy(url, server, timeout_s):
            log_text = (artifacts.parent / "mlflow-server.log").read_text()[-2000:]
            raise RuntimeError(f"mlflow server did not start: {log_text}")
        yield url
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, 15)
        server.wait(timeout=30)
        log.close()
