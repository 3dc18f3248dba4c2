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
