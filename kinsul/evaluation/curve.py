"""Training speed as the paper measures it: closed-loop success against training steps.

``SuccessCurve`` runs a small fixed closed-loop evaluation (the same seeds every time, environments stepped in
lockstep) every ``every`` optimizer steps and logs ``eval/success`` (and per task family) at that step. The first
step whose success reaches ``target`` is the run's training speed, logged as ``speed/steps_to_success`` with the
robot frames and the training wall time it took (``speed/frames_to_success``, ``speed/seconds_to_success``).
Its state (the step reached, the curve so far) is saved in the checkpoint, so a resumed run reports the same.
"""

from __future__ import annotations

import time

import lightning as L
import torch

from kinsul.evaluation.environments import Environment
from kinsul.evaluation.policies import NormalizedPolicy, VLAPolicy
from kinsul.evaluation.rollouts import EnvPool, EpisodeSpec, rollout, summarize


def curve_specs(tasks: list[str], episodes: int, seed: int) -> list[EpisodeSpec]:
    """The curve's fixed seed set: ``episodes`` seen-concept episodes of each family in ``tasks`` (the headline
    families: eval/success is their pooled rate), disjoint from `kinsul eval`'s seeds (those start at eval.seed;
    these at eval.seed + 50,000 within each family's block)."""
    return [
        EpisodeSpec(seed + 100_000 * f + 50_000 + i, task)
        for f, task in enumerate(tasks)
        for i in range(episodes)
    ]


class SuccessCurve(L.Callback):
    """``env``: the simulator (`kinsul.evaluation.environments`); ``normalization``: the data's state and
    action scaling (a LeRobot source's), undone on the policy's actions."""

    def __init__(self, specs: list[EpisodeSpec], env: Environment, every: int, target: float, execute_steps: int,
                 frames_per_step: int, policy_args: dict, normalization: dict | None = None):  # fmt: skip
        self.specs, self.env, self.normalization = specs, env, normalization
        self.every, self.target, self.execute_steps = every, target, execute_steps
        self.frames_per_step, self.policy_args = frames_per_step, policy_args
        self.reached_at: int | None = None
        self.points: list[tuple[int, float]] = []
        self.train_seconds = 0.0  # training time only: the evaluations themselves are not counted
        self.curve_seconds = 0.0  # the curve's own rollouts, in this process (time/curve_s)
        self._tick = 0.0
        self._envs: EnvPool | None = None  # made at the first point, reused by every later one

    # -- timing: wall time of training steps, evaluation excluded --------------------------------------
    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self._tick = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.train_seconds += time.perf_counter() - self._tick
        step = trainer.global_step
        if step % self.every == 0 or step >= trainer.max_steps:
            self.measure(trainer, pl_module, step)

    def on_train_start(self, trainer, pl_module):
        # step 0: the untrained expert, the curve's origin. A run resumed from a checkpoint written by a signal
        # (after the step, before its curve point) measures that point now: every point at the uninterrupted
        # run's steps (measure() skips a point already taken).
        if trainer.global_step % self.every == 0:
            self.measure(trainer, pl_module, trainer.global_step)

    @torch.no_grad()
    def measure(self, trainer, pl_module, step: int) -> None:
        if self.points and self.points[-1][0] == step:
            return
        start = time.perf_counter()
        try:
            self._measure(trainer, pl_module, step)
        finally:
            self.curve_seconds += time.perf_counter() - start

    def _measure(self, trainer, pl_module, step: int) -> None:
        vla = pl_module.vla
        was_training = vla.training
        policy = VLAPolicy(vla, **self.policy_args)  # puts the model in eval mode
        if self.normalization:
            policy = NormalizedPolicy(policy, self.normalization)
        try:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(step)  # the policy's flow noise: same at every run of this step
                with self.env.rolling_out():
                    if self._envs is None:
                        self._envs = EnvPool(self.env.make)
                    results = rollout(
                        policy, self.specs, self._envs, self.execute_steps, batch=len(self.specs)
                    )
        finally:
            vla.train(was_training)
            if was_training:
                pl_module.on_validation_model_train()  # frozen modules back to eval mode
        rates = summarize({"seen": results})
        success = rates["eval/success"]["value"]
        metrics = {k: r["value"] for k, r in rates.items()}
        self.points.append((step, success))
        if self.reached_at is None and success >= self.target:
            self.reached_at = step
            metrics.update({"speed/steps_to_success": float(step),
                            "speed/frames_to_success": float(step * self.frames_per_step),
                            "speed/seconds_to_success": self.train_seconds})  # fmt: skip
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=step)

    def teardown(self, trainer, pl_module, stage: str) -> None:
        if self._envs is not None:
            self._envs.close()
            self._envs = None

    def state_dict(self):
        return {"reached_at": self.reached_at, "points": self.points, "train_seconds": self.train_seconds}

    def load_state_dict(self, state):
        self.reached_at = state["reached_at"]
        self.points = [tuple(p) for p in state["points"]]
        self.train_seconds = state["train_seconds"]
