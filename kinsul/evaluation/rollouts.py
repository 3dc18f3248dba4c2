"""Closed-loop rollouts with action chunking, batched across environments, in any simulator that keeps
KinsulWorld's gymnasium contract: ``reset(seed=, options={"task": ...})``, observations {image, state,
instruction}, ``info["is_success"]``; language following where the environment reports which object the robot
touched first (``info["first_interaction"]`` against ``info["target"]``)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import gymnasium as gym
from torchmetrics.aggregation import MeanMetric

from kinsul.evaluation.policies import Policy


@dataclass(frozen=True)
class EpisodeSpec:
    seed: int
    task: str
    concepts: str = "seen"  # "seen" | "heldout"
    distractors: str | None = None  # "share_attribute" for language following


@dataclass
class EpisodeResult:
    spec: EpisodeSpec
    success: bool
    followed: bool | None  # the first object interacted with was the instructed one (None: not defined there)
    steps: int
    frames: list | None = None  # RGB frames, for the first ``record`` episodes of a rollout


EVALUATION_SETS = ("seen", "heldout", "language")


class EnvPool:
    """Environments made once and lent to every rollout that takes from it: a simulator's set-up (Meta-World's
    model and GL context, about a second per environment) is paid once per evaluation or training run, not once
    per rollout call. Each episode starts from ``reset(seed=, options=)``, as a fresh environment's would: a
    rollout already reuses its environments from one group of episodes to the next."""

    def __init__(self, make_env: Callable[[], gym.Env]):
        self.make_env = make_env
        self.envs: list[gym.Env] = []

    def take(self, n: int) -> list[gym.Env]:
        while len(self.envs) < n:
            self.envs.append(self.make_env())
        return self.envs[:n]

    def close(self) -> None:
        for env in self.envs:
            env.close()
        self.envs.clear()

    def __enter__(self) -> EnvPool:
        return self

    def __exit__(self, *_) -> None:
        self.close()


def evaluation_specs(tasks: list[str], episodes: int, seed: int,
                     sets: tuple[str, ...] = EVALUATION_SETS) -> dict[str, list[EpisodeSpec]]:  # fmt: skip
    """The fixed evaluation set: per task family, seen and held-out targets, and distractor scenes (the ``sets``
    an environment defines)."""
    out: dict[str, list[EpisodeSpec]] = {"seen": [], "heldout": [], "language": []}
    for f, task in enumerate(tasks):
        for i in range(episodes):
            base = seed + 100_000 * f + i
            out["seen"].append(EpisodeSpec(base, task, "seen"))
            out["heldout"].append(EpisodeSpec(base + 10_000, task, "heldout"))
            out["language"].append(EpisodeSpec(base + 20_000, task, "seen", "share_attribute"))
    return {k: v for k, v in out.items() if k in sets}


def rollout(policy: Policy, specs: list[EpisodeSpec], make_env: Callable[[], gym.Env] | EnvPool, execute_steps: int,
            batch: int = 16, record: int = 0) -> list[EpisodeResult]:  # fmt: skip
    """Run every spec to termination; the policy is queried for a chunk whenever an env has used up
    ``execute_steps`` actions of its previous one. ``make_env``: a factory (environments made and closed here) or
    an ``EnvPool`` (borrowed, left open for the next rollout)."""
    pool = make_env if isinstance(make_env, EnvPool) else EnvPool(make_env)
    try:
        return _rollout(policy, specs, pool.take(min(batch, len(specs))), execute_steps, record)
    finally:
        if pool is not make_env:
            pool.close()


def _rollout(policy: Policy, specs: list[EpisodeSpec], envs: list[gym.Env], execute_steps: int,
             record: int) -> list[EpisodeResult]:  # fmt: skip
    results: list[EpisodeResult] = []
    for start in range(0, len(specs), len(envs)):
        group = specs[start : start + len(envs)]
        live = envs[: len(group)]
        obs = [env.reset(seed=s.seed, options={"task": s.task, "concepts": s.concepts,
                                                "distractors": s.distractors})[0]
               for env, s in zip(live, group, strict=True)]  # fmt: skip
        policy.reset(live, [s.seed for s in group])
        frames = [[o["image"]] if start + i < record else None for i, o in enumerate(obs)]
        done = [False] * len(group)
        info: list[dict] = [{} for _ in group]
        steps = [0] * len(group)
        while not all(done):
            active = [i for i in range(len(group)) if not done[i]]
            chunks = policy.act([obs[i] for i in active], [live[i] for i in active])
            for j, i in enumerate(active):
                for t in range(min(execute_steps, chunks.shape[1])):
                    obs[i], _, terminated, truncated, info[i] = live[i].step(chunks[j, t])
                    steps[i] += 1
                    if frames[i] is not None:
                        frames[i].append(obs[i]["image"])
                    if terminated or truncated:
                        done[i] = True
                        break
        for i, s in enumerate(group):
            followed = info[i]["first_interaction"] == info[i]["target"] if "target" in info[i] else None
            results.append(EpisodeResult(s, bool(info[i]["is_success"]), followed, steps[i], frames[i]))
    return results


def wilson(p: float, n: int, z: float = 1.96) -> tuple[float, float]:
    """95 % Wilson score interval of a success rate over n episodes."""
    if n == 0:
        return (math.nan, math.nan)
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


def summarize(results: dict[str, list[EpisodeResult]], headline: list[str] | None = None) -> dict[str, dict]:
    """Rates per metric (overall and per task family), each with its episode count and Wilson interval.

    The overall rates (eval/success, eval/success_heldout, eval/language_following) pool the ``headline`` task
    families only (default: all); every family keeps its own rate."""

    def counted(r: EpisodeResult) -> bool:
        return headline is None or r.spec.task in headline

    metrics: dict[str, MeanMetric] = {}
    counts: dict[str, int] = {}

    def add(key: str, value: bool) -> None:
        metrics.setdefault(key, MeanMetric()).update(float(value))
        counts[key] = counts.get(key, 0) + 1

    for r in results.get("seen", []):
        if counted(r):
            add("eval/success", r.success)
        add(f"eval/success_{r.spec.task}", r.success)
    for r in results.get("heldout", []):
        if counted(r):
            add("eval/success_heldout", r.success)
        add(f"eval/success_heldout_{r.spec.task}", r.success)
    for r in results.get("language", []):
        if counted(r) and r.followed is not None:
            add("eval/language_following", r.followed)
    out = {}
    for key, m in metrics.items():
        p = float(m.compute())
        out[key] = {"value": p, "n": counts[key], "ci95": wilson(p, counts[key])}
    return out
