"""Checkpoints, shared by VLM pretraining and VLA training: safe loading, the resume step, and the callbacks that
write `last.ckpt`."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any

from lightning.pytorch.callbacks import Checkpoint, ModelCheckpoint, OnExceptionCheckpoint
from lightning.pytorch.plugins.io import TorchCheckpointIO

from kinsul.runs.signals import deferred_signals


class NonFiniteLossError(FloatingPointError):
    pass


class NonFiniteGradientError(FloatingPointError):
    """A gradient with NaN or inf, caught before the optimizer step: the weights and checkpoints stay finite."""


class NonFiniteWeightsError(FloatingPointError):
    """Weights with NaN or inf about to be written as a checkpoint: refused, the last good file stays."""


NON_FINITE = (NonFiniteLossError, NonFiniteGradientError, NonFiniteWeightsError)


class CheckpointSaveError(RuntimeError):
    """A checkpoint that could not be written: the run stops instead of going on without a resume point."""


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


def first_non_finite(state: dict) -> str | None:
    import torch

    for name, t in state.items():
        if isinstance(t, torch.Tensor) and t.is_floating_point() and not bool(torch.isfinite(t).all()):
            return name
    return None


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class SafeCheckpointIO(TorchCheckpointIO):
    """Every checkpoint lands whole or the run stops: written to a temporary file beside its target (never the
    system temp folder, so the rename is atomic on the same file system), flushed, fsynced, renamed over the
    target, its size verified. Non-finite weights are never written. A failure names the file, the cause and the
    free space, and leaves no partial file under any checkpoint's name."""

    seconds = 0.0  # wall time spent writing checkpoints in this process (time/checkpoint_s)

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        start = time.perf_counter()
        try:
            with deferred_signals():
                self._save(checkpoint, path)
        finally:
            self.seconds += time.perf_counter() - start

    def _save(self, checkpoint: dict[str, Any], path) -> None:
        import torch

        path = Path(path)
        bad = first_non_finite(checkpoint.get("state_dict", {}))
        if bad is not None:
            raise NonFiniteWeightsError(f"refusing to write '{path}' at step {checkpoint.get('global_step')}: "
                                        f"weight '{bad}' is not finite; the last good checkpoint stays")  # fmt: skip
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(tmp, "wb") as f:
                torch.save(checkpoint, f)
                f.flush()
                os.fsync(f.fileno())
                size = f.tell()
            os.replace(tmp, path)
            _fsync_dir(path.parent)
            if path.stat().st_size != size:
                raise OSError(f"wrote {size} bytes, the file holds {path.stat().st_size}")
        except (OSError, RuntimeError) as e:  # torch's zip writer reports a full disk as a RuntimeError
            tmp.unlink(missing_ok=True)
            try:
                free_bytes = shutil.disk_usage(path.parent).free
                free = f"{free_bytes / 2**20:,.1f} MiB free there"
            except OSError:
                free_bytes, free = None, "its free space unknown"
            if isinstance(e, OSError):
                cause = e.strerror or str(e)
            else:
                full = free_bytes is not None and free_bytes < 2**20
                cause = "the disk is full, the write stopped short" if full else "the write stopped short"
            raise CheckpointSaveError(f"could not write checkpoint '{path}' ({cause}; {free}): the run stops "
                                      "here; its last good checkpoint is what --resume continues") from None  # fmt: skip


class BestCheckpoint(ModelCheckpoint):
    """'best.ckpt', one file, also for a run folder that was moved or copied and then resumed.

    Lightning keys its best-model state by absolute paths and drops it when the folder changed, then writes a
    versioned 'best-v1.ckpt' beside the stale 'best.ckpt' (which `eval.checkpoint=best` would read) and forgets
    the best score. Here the paths are re-rooted into the new folder, and a save never versions the name, so a
    copy neither forks the file nor deletes the original folder's."""

    def __init__(self, **kwargs):
        super().__init__(enable_version_counter=False, **kwargs)

    @property
    def state_key(self) -> str:
        # ModelCheckpoint's key: checkpoints written before this class (and after) restore into it alike
        return super().state_key.replace(type(self).__qualname__, ModelCheckpoint.__qualname__, 1)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        old, new = state_dict.get("dirpath"), self.dirpath
        if old and new and old != new:

            def move(path):
                return new + str(path)[len(old) :] if path and str(path).startswith(old) else path

            state_dict = {**state_dict, "dirpath": new,
                          **{k: move(state_dict.get(k)) for k in ("best_model_path", "kth_best_model_path",
                                                                  "last_model_path")},
                          "best_k_models": {move(k): v for k, v in state_dict.get("best_k_models", {}).items()}}  # fmt: skip
        super().load_state_dict(state_dict)


class LastCheckpoint(Checkpoint):
    """'last.ckpt' every ``every`` steps and at max_steps (one file, overwritten in place).

    A validation at a checkpoint step runs after the step's save, so the file is written again once it is done:
    otherwise a run killed before the next save resumes without that validation's best (the best-checkpoint
    callback then writes a second, versioned best file and `kinsul eval` would read the stale one). Lightning
    runs checkpoint callbacks last, in list order: list this one after the ModelCheckpoint."""

    def __init__(self, path: Path, every: int):
        self.path, self.every = path, every

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step % self.every == 0:
            trainer.save_checkpoint(self.path)

    def on_validation_end(self, trainer, pl_module):
        if not trainer.sanity_checking and trainer.global_step and trainer.global_step % self.every == 0:
            trainer.save_checkpoint(self.path)

    def on_train_end(self, trainer, pl_module):
        trainer.save_checkpoint(self.path)


class ExceptionCheckpoint(OnExceptionCheckpoint):
    """'last.ckpt' on SIGINT, SIGTERM or a crash, so the run resumes; never on a non-finite loss (the last good
    checkpoint stays), and never before the first step: a failure while the data or the checkpoint is still
    loading would otherwise save untrained weights, over a resumed run's good checkpoint. Unlike Lightning's,
    it keeps the file after a clean finish: it is the resume point."""

    def on_exception(self, trainer, pl_module, exception):
        if not isinstance(exception, (*NON_FINITE, CheckpointSaveError)) and trainer.global_step > 0:
            super().on_exception(trainer, pl_module, exception)

    def teardown(self, trainer, pl_module, stage):
        pass


def checkpoint_step(path: Path) -> int:
    """The global step a Lightning checkpoint resumes from (0 when there is none)."""
    if not path.exists():
        return 0
    return int(load_checkpoint(path)["global_step"])
