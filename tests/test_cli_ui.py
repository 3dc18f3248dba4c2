"""`kinsul ui`: a port in use is one line and exit 2; SIGTERM stops the MLflow server and all its workers."""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from servers import free_port, wait_until_healthy

from kinsul.cli import main


def _descendants(pid: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    out, todo = set(), [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.add(c)
            todo.append(c)
    return out


def _alive(pid: int) -> bool:
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_ui_on_a_port_in_use_says_so(tmp_path, capsys):
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        assert main(["ui", f"tracking.uri=sqlite:///{tmp_path / 'm.db'}", "--port", str(port)]) == 2
    assert f"'--port': port {port} on 127.0.0.1 is in use" in capsys.readouterr().err


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads the process tree from /proc")
@pytest.mark.integration
def test_ui_stops_its_server_and_workers_on_sigterm(tmp_path):
    port = free_port()
    cmd = [str(Path(sys.executable).parent / "kinsul"), "ui", f"tracking.uri=sqlite:///{tmp_path / 'm.db'}",
           "--port", str(port)]  # fmt: skip
    ui = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert wait_until_healthy(f"http://127.0.0.1:{port}", ui, 120), "the MLflow UI did not come up"
        spawned = _descendants(ui.pid)
        assert spawned  # the server (and its workers)
        ui.send_signal(signal.SIGTERM)
        assert ui.wait(timeout=30) == 0
        time.sleep(0.5)
        assert not [p for p in spawned if _alive(p)]
        with socket.socket() as s:
            # SO_REUSEADDR: the health checks' connections may sit in TIME_WAIT; a listening server still blocks
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", port))  # the port is free again
    finally:
        if ui.poll() is None:
            ui.kill()
        for p in _descendants(ui.pid):
            os.kill(p, signal.SIGKILL)
