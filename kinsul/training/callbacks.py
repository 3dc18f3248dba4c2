"""Checkpoint callbacks shared by VLM pretraining and VLA training."""

from __future__ import annotations

from pathlib import Path

import lightning as L
from lightning.pytorch.callbacks import OnExceptionCheckpoint


class NonFiniteLossError(FloatingPointError):
    pass


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
