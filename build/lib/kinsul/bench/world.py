"""Benchmarks of the embedded world: env stepping with rendering, and demonstration generation."""

from __future__ import annotations

import os
import tempfile
import time

import gymnasium as gym
import numpy as np

from kinsul.config import load_config
from kinsul.world import ENV_ID


def world_step(steps: int = 20_000) -> dict:
    """Env steps/s on one core: gym.make (with its wrappers), random actions, an RGB frame every step."""
    cores = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(cores)})
    try:
        return _world_step(steps)
    finally:
        os.sched_setaffinity(0, cores)


def _world_step(steps: int) -> dict:
    env = gym.make(ENV_ID)
    rng = np.random.default_rng(0)
    actions = rng.uniform(-1, 1, size=(steps, 3)).astype(np.float32)
    env.reset(seed=0)
    resets = 0
    start = time.perf_counter()
    for i in range(steps):
        obs, _, terminated, truncated, _ = env.step(actions[i])
        if terminated or truncated:
            env.reset()
            resets += 1
    seconds = time.perf_counter() - start
    rate = steps / seconds
    return {
        "value": round(rate),
        "unit": "steps/s",
        "goal": ">= 2,000 steps/s",
        "ok": rate >= 2000,
        "command": "kinsul bench world_step",
        "details": {"steps": steps, "resets": resets, "image": f"{obs['image'].shape}", "cores": 1},
    }


def generate_demos(episodes: int = 1000) -> dict:
    """Wall time of `kinsul data generate` for ``episodes`` robot demonstrations on 2 worker processes."""
    from kinsul.data.store import generate

    with tempfile.TemporaryDirectory() as root:
        cfg = load_config(
            overrides=[
                f"data.root={root}",
                f"data.robot_episodes.train={episodes}",
                "data.robot_episodes.validation=0",
                "data.robot_episodes.probe=0",
                "data.num_workers=2",
            ]
        )
        start = time.perf_counter()
        path = generate(cfg, "robot", progress=False)
        seconds = time.perf_counter() - start
        from kinsul.data.store import open_dataset

        frames = len(open_dataset(path)["train"])
    return {
        "value": round(seconds, 1),
        "unit": "s",
        "goal": "<= 60 s on 2 cores",
        "ok": seconds <= 60,
        "command": "kinsul bench generate_demos",
        "details": {"episodes": episodes, "frames": frames, "workers": 2},
    }
