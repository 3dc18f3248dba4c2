"""VLA training callbacks: training speed as the first step a validation metric reaches its target."""

from __future__ import annotations

import lightning as L


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


class PhaseTimes(L.Callback):
    """Where a training run's wall time goes, logged at its end as time/train_*_s (accumulated over resumes,
    kept in the checkpoint): validation, the success curve's rollouts, checkpoint writes, and the rest, the
    steps themselves with their data and logging (time/train_steps_s, and per step time/train_step_ms).
    First in the callback list, so the curve's step-0 point counts; the final checkpoint, written after
    training ends, does not."""

    PHASES = ("total", "steps", "validation", "curve", "checkpoint")

    def __init__(self) -> None:
        self.earlier = dict.fromkeys(self.PHASES, 0.0)  # up to the checkpoint this run resumed from
        self.validation = 0.0
        self._start = self._val_start = self._trainer = None
        self._curve0 = self._ckpt0 = 0.0

    @staticmethod
    def _curve(trainer) -> float:
        return sum(getattr(cb, "curve_seconds", 0.0) for cb in trainer.callbacks)

    @staticmethod
    def _checkpoint(trainer) -> float:
        io = trainer.strategy.checkpoint_io
        io = getattr(io, "checkpoint_io", None) or io  # Lightning may wrap the plugin
        return getattr(io, "seconds", 0.0)

    def on_train_start(self, trainer, pl_module):
        import time

        self._start = time.perf_counter()
        self._curve0, self._ckpt0 = self._curve(trainer), self._checkpoint(trainer)

    def on_validation_start(self, trainer, pl_module):
        import time

        self._val_start = time.perf_counter()

    def on_validation_end(self, trainer, pl_module):
        import time

        if self._val_start is not None and not trainer.sanity_checking:
            self.validation += time.perf_counter() - self._val_start
        self._val_start = None

    def totals(self, trainer) -> dict[str, float]:
        """Seconds per phase so far, this process's and the runs' before a resume."""
        import time

        if self._start is None:
            return dict(self.earlier)
        now = {"total": time.perf_counter() - self._start, "validation": self.validation,
               "curve": self._curve(trainer) - self._curve0, "checkpoint": self._checkpoint(trainer) - self._ckpt0}  # fmt: skip
        now["steps"] = now["total"] - now["validation"] - now["curve"] - now["checkpoint"]
        return {k: self.earlier[k] + now.get(k, 0.0) for k in self.PHASES}

    def on_train_end(self, trainer, pl_module):
        totals = self.totals(trainer)
        metrics = {f"time/train_{k}_s": round(v, 3) for k, v in totals.items()}
        if (
            trainer.global_step
        ):  # the earlier seconds were saved with the checkpoint's step: every step counts
            metrics["time/train_step_ms"] = round(1000 * totals["steps"] / trainer.global_step, 2)
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=trainer.global_step)

    def setup(self, trainer, pl_module, stage):
        self._trainer = trainer

    def state_dict(self):
        return {"seconds": self.totals(self._trainer) if self._trainer is not None else dict(self.earlier)}

    def load_state_dict(self, state):
        self.earlier = {k: float(state["seconds"].get(k, 0.0)) for k in self.PHASES}
