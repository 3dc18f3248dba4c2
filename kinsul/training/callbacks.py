"""Checkpoint callbacks shared by VLM pretraining and VLA training."""

from __future__ import annotations

from pathlib import Path

import lightning as L
from lightning.pytorch.callbacks import OnExceptionCheckpoint


class NonFiniteLossError(FloatingPointError):
    pass


class CheckpointError(ValueError):
    """A checkpoint file that cannot be read safely (corrupted, truncated, or carrying code)."""


def load_checkpoint(path: str | Path) -> dict:
    """A checkpoint as plain tensors, numbers, strings and containers. ``weights_only=True``: unpickling never runs
    code, so a crafted file is refused instead of executed; a damaged one is named."""
    import pickle

    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, OSError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if "Weights only load failed" in first:  # torch's advice (weights_only=False) is what must not happen
            first = (
                "it holds objects other than tensors and plain containers, whose unpickling could run code"
            )
        else:
            first = first.split(". ")[0]
        raise CheckpointError(f"checkpoint '{path}' cannot be loaded safely ({first[:200]}): expected a "
                              "checkpoint written by kinsul; delete it to start over") from None  # fmt: skip


class LastCheckpoint(L.Callback):
    """'last.ckpt' every ``every`` steps and at max_steps (one file, overwritten in place)."""

    def __init__(self, path: Path, every: int):
        self.path, self.every = path, every

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step % self.every == 0:
            trainer.save_checkpoint(self.path)

    def on_train_end(self, trainer, pl_module):
        trainer.save_checkpoint(self.path)


class ExceptionCheckpoint(OnExceptionCheckpoint):
    """'last.ckpt' on SIGINT, SIGTERM or a crash, so the run resumes; never on a non-finite loss (the last good
    checkpoint stays). Unlike Lightning's, it keeps the file after a clean finish: it is the resume point."""

    def on_exception(self, trainer, pl_module, exception):
        if not isinstance(exception, NonFiniteLossError):
            super().on_exception(trainer, pl_module, exception)

    def teardown(self, trainer, pl_module, stage):
        pass


class StepsToTarget(L.Callback):
    """Training speed: the first validation step where ``monitor`` reaches ``target``, and the wall time then.

    Logged once as speed/steps_to_target and speed/seconds_to_target (absent when the target is never reached).
    """

    def __init__(self, monitor: str, target: float, mode: str = "min"):
        self.monitor, self.target, self.mode = monitor, target, mode
        self.reached_at: int | None = None
        self.start = 0.0

    def on_train_start(self, trainer, pl_module):
        import time

        self.start = time.perf_counter()

    def on_validation_end(self, trainer, pl_module):
        import time

        value = trainer.callback_metrics.get(self.monitor)
        if self.reached_at is not None or value is None or trainer.sanity_checking:
            return
        if (value <= self.target) if self.mode == "min" else (value >= self.target):
            self.reached_at = trainer.global_step
            for logger in trainer.loggers:
                logger.log_metrics({"speed/steps_to_target": float(self.reached_at),
                                    "speed/seconds_to_target": time.perf_counter() - self.start},
                                   step=trainer.global_step)  # fmt: skip

    def state_dict(self):
        return {"reached_at": self.reached_at}

    def load_state_dict(self, state):
        self.reached_at = state["reached_at"]
