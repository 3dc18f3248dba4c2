"""The simulators `kinsul eval` rolls a policy out in (eval.env), each behind the same contract (see
`kinsul.evaluation.rollouts`): a factory of environments, the task set, the evaluation sets it defines, and the
tasks eval/success averages. A new simulator is an environment class and one entry here."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import gymnasium as gym
import torch

from kinsul.config.schema import KinsulConfig


@dataclass(frozen=True)
class Environment:
    make: Callable[[], gym.Env]
    tasks: list[str]
    sets: tuple[str, ...]  # of EVALUATION_SETS: seen targets, held-out targets, language (distractor scenes)
    headline: list[str]  # the tasks that eval/success pools
    # torch threads while rolling out (None: as configured). Meta-World's software GL renderer and two torch
    # threads on two cores slowed a training run's success curve 20x (248 s against 12 s with one thread).
    torch_threads: int | None = None

    @contextmanager
    def rolling_out(self) -> Iterator[None]:
        before = torch.get_num_threads()
        if self.torch_threads:
            torch.set_num_threads(self.torch_threads)
        try:
            yield
        finally:
            torch.set_num_threads(before)


def _kinsul(cfg: KinsulConfig) -> Environment:
    from kinsul.world.env import KinsulWorldEnv

    return Environment(lambda: KinsulWorldEnv(cfg.world, cfg.concepts), list(cfg.world.tasks),
                       ("seen", "heldout", "language"), cfg.headline_tasks())  # fmt: skip


def _metaworld(cfg: KinsulConfig) -> Environment:
    from kinsul.envs.metaworld import MetaWorldEnv

    mw = cfg.data.metaworld
    make = lambda: MetaWorldEnv(mw.tasks[0], cfg.world.image_size, mw.camera, mw.max_steps)  # noqa: E731
    return Environment(make, list(mw.tasks), ("seen",), list(mw.tasks), torch_threads=1)


ENVIRONMENTS: dict[str, Callable[[KinsulConfig], Environment]] = {"kinsul": _kinsul, "metaworld": _metaworld}


def environment(cfg: KinsulConfig) -> Environment | None:
    """The configured simulator, or None (eval.env=none: offline metrics only)."""
    return ENVIRONMENTS[cfg.eval.env](cfg) if cfg.eval.env != "none" else None
