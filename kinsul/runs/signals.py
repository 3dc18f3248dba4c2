"""The end of a run by a signal, as one exception the CLI turns into the conventional exit codes."""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from pathlib import Path


class RunInterrupted(KeyboardInterrupt):
    """SIGTERM or SIGINT ended a run: its last checkpoint is saved and its MLflow run is KILLED. A
    KeyboardInterrupt, so a sweep stops (Optuna fails the trial and re-raises it; its catch=Exception would
    otherwise go on to the next trial)."""

    CODES = {"SIGTERM": 143, "SIGINT": 130}

    def __init__(self, signal: str, step: int, run_dir: Path, checkpoint: Path | None):
        self.signal, self.step, self.run_dir, self.checkpoint = signal, step, run_dir, checkpoint
        self.exit_code = self.CODES[signal]
        saved = f"checkpoint '{checkpoint}'" if checkpoint else "no checkpoint yet (it starts over)"
        super().__init__(f"{signal} at step {step}; {saved}; continue with the same command and --resume")


@contextmanager
def deferred_signals(signals=(signal.SIGINT, signal.SIGTERM)):
    """Hold SIGINT and SIGTERM until the block is done, then deliver them: a Ctrl-C landing inside a checkpoint
    write would otherwise raise in the middle of torch's zip writer (which reports it as a short write) instead of
    at the next step. Outside the main thread, where Python cannot install handlers, the block runs as is."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held: list[int] = []
    previous = {s: signal.signal(s, lambda number, frame: held.append(number)) for s in signals}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        for number in dict.fromkeys(held):
            signal.raise_signal(number)
