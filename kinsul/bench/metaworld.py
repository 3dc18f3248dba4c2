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
