"""The Meta-World task set's reference points on `kinsul eval`'s seeds: Meta-World's own scripted policy (the
ceiling) and a robot that never moves (the floor), with the harness's rollout rate (rendering included)."""

from __future__ import annotations

import time

from kinsul.config import load_config
from kinsul.evaluation.environments import environment
from kinsul.evaluation.policies import SimulatorScriptedPolicy, StillPolicy
from kinsul.evaluation.rollouts import evaluation_specs, rollout, summarize


def metaworld_references() -> dict:
    cfg = load_config("metaworld")
    env = environment(cfg)
    specs = evaluation_specs(env.tasks, cfg.eval.episodes, cfg.eval.seed, env.sets)["seen"]
    out, steps, seconds = {}, 0, 0.0
    for name, policy in (("scripted", SimulatorScriptedPolicy()), ("still", StillPolicy(4))):
        start = time.perf_counter()
        results = rollout(policy, specs, env.make, execute_steps=1, batch=cfg.eval.batch)
        seconds += time.perf_counter() - start
        steps += sum(r.steps for r in results)
        rates = summarize({"seen": results}, env.headline)
        out[name] = {k.removeprefix("eval/success_"): round(v["value"], 3) for k, v in rates.items()}
    return {
        "value": out["scripted"]["eval/success"],
        "unit": "success (scripted policy)",
        "command": "kinsul bench metaworld_references",
        "details": {"scripted": out["scripted"], "still": out["still"], "episodes_per_task": cfg.eval.episodes,
                    "max_steps": cfg.data.metaworld.max_steps, "rollout_steps_per_s": round(steps / seconds, 1)},
    }  # fmt: skip


def env_pool(points: int = 3, steps: int = 20) -> dict:
    """Success-curve points on Meta-World (one seen episode per task, ``steps`` steps each, a still robot: the
    rollout is the harness's, the policy costs nothing), with environments made for every point against one
    EnvPool lent to all of them; the outcomes must be the same."""
    from kinsul.evaluation.curve import curve_specs
    from kinsul.evaluation.rollouts import EnvPool

    cfg = load_config("metaworld", [f"data.metaworld.max_steps={steps}"])
    env = environment(cfg)
    specs = curve_specs(env.headline, 1, cfg.eval.seed)

    def curve(make) -> tuple[float, list]:
        start = time.perf_counter()
        out = [[(r.success, r.steps) for r in rollout(StillPolicy(4), specs, make, 1, batch=len(specs))]
               for _ in range(points)]  # fmt: skip
        return time.perf_counter() - start, out

    with env.rolling_out():
        fresh_s, fresh = curve(env.make)
        with EnvPool(env.make) as pool:
            pool_s, pooled = curve(pool)
    return {"value": round(fresh_s / pool_s, 2), "unit": "x (curve time, fresh environments / one pool)",
            "goal": "the same outcomes, less time", "ok": fresh == pooled and pool_s < fresh_s,
            "command": "kinsul bench env_pool",
            "details": {"points": points, "episodes_per_point": len(specs), "steps_per_episode": steps,
                        "fresh_s": round(fresh_s, 1), "pool_s": round(pool_s, 1), "same_outcomes": fresh == pooled}}  # fmt: skip
