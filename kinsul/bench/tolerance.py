"""How much perception error each task family tolerates: the scripted expert acting on a noisy target position.

A learned policy locates the instructed object only approximately, and it re-perceives it at every chunk it
plans. This benchmark gives the scripted expert the same handicap: it plans on the target's position plus an
error drawn afresh every ``eval.execute_steps`` env steps (normal, ``sigma`` table units per axis), while the
world moves the true object. Success against ``sigma`` says how precisely a policy must locate the target for a
family to be learnable, and how that depends on the pusher (``world.pusher``): docs/results.md, section 1.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from kinsul.config import load_config
from kinsul.world.env import KinsulWorldEnv
from kinsul.world.expert import ScriptedExpert

SIGMAS = (0.0, 0.03, 0.06, 0.09)


def noisy_expert_success(world, concepts, family: str, sigma: float, episodes: int, every: int, seed: int,
                         blind: bool = False) -> float:  # fmt: skip
    """Success rate of the expert planning on a target position perceived with error ``sigma``; ``blind``: on
    an object drawn at random from the scene instead of the instructed one (a policy that ignores which object the
    instruction names, but knows the task and the region)."""
    env = KinsulWorldEnv(world, concepts)
    rng = np.random.default_rng(seed)
    expert = ScriptedExpert(env, rng)
    wins = 0
    for episode in range(episodes):
        env.reset(seed=seed + episode, options={"task": family, "concepts": "seen"})
        expert.reset()
        task = env.task
        planned = (
            dataclasses.replace(task, target=int(rng.integers(len(env.scene.objects)))) if blind else task
        )
        done, step, info = False, 0, {}
        while not done:
            if step % every == 0:
                error = rng.normal(0.0, sigma, 2)
            target = env.scene.objects[planned.target]
            true = target.pos.copy()
            target.pos, env.task = true + error, planned  # what the expert plans on
            action = expert.act()
            target.pos, env.task = true, task  # what the world moves and scores
            _, _, terminated, truncated, info = env.step(action)
            done, step = terminated or truncated, step + 1
        wins += bool(info["is_success"])
    return wins / episodes


def perception_tolerance(episodes: int = 200) -> dict:
    cfg = load_config()
    rows = {}
    for pusher in ("round", "flat"):
        world = dataclasses.replace(cfg.world, pusher=pusher)
        for family in ("reach", "push"):
            rows[f"{family}/{pusher}"] = {
                f"sigma={s}": noisy_expert_success(world, cfg.concepts, family, s, episodes,
                                                   cfg.eval.execute_steps, cfg.eval.seed)
                for s in SIGMAS
            }  # fmt: skip
    clean = min(r["sigma=0.0"] for r in rows.values())
    blind = {family: noisy_expert_success(cfg.world, cfg.concepts, family, 0.0, episodes, cfg.eval.execute_steps,
                                          cfg.eval.seed, blind=True)
             for family in ("reach", "push")}  # fmt: skip
    return {
        "value": rows["push/flat"]["sigma=0.06"],
        "unit": "push success at sigma 0.06 (flat pusher)",
        "goal": "the expert itself >= 0.95 (sigma 0)",
        "ok": clean >= 0.95,
        "command": "kinsul bench perception_tolerance",
        "details": {
            "episodes": episodes,
            "replan_every": cfg.eval.execute_steps,
            "success": rows,
            "instruction_blind_success": blind,
        },
    }
