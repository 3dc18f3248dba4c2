"""The Lightning side of a trial: report validation to Optuna and stop the run when the pruner says so."""

from __future__ import annotations

import math

import lightning as L
import optuna

from kinsul.sweeps.spec import PRUNE_METRIC


class TrialReport(L.Callback):
    """Reports val/velocity_mse to the trial at every validation; raises ``optuna.TrialPruned`` when the study's
    pruner judges the trial worse than its peers at the same step (Lightning saves the resume checkpoint first)."""

    def __init__(self, trial: optuna.Trial):
        self.trial = trial
        self.last = math.nan  # the latest val/velocity_mse (the objective when a sweep skips evaluation)

    def on_validation_end(self, trainer, pl_module):
        value = trainer.callback_metrics.get(PRUNE_METRIC)
        if trainer.sanity_checking or value is None:
            return
        self.last, step = float(value), trainer.global_step
        self.trial.report(self.last, step)
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"{PRUNE_METRIC}={self.last:.4g} at step {step}")
