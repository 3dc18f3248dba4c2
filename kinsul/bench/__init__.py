"""Named benchmarks; `kinsul bench NAME` runs one and records it in docs/benchmarks.{json,md}."""

from __future__ import annotations

from collections.abc import Callable

from kinsul.bench import (
    calibration,
    domain_gap,
    fast_placement,
    memory,
    metaworld,
    models,
    sweep,
    tolerance,
    train,
    world,
)

BENCHMARKS: dict[str, Callable[[], dict]] = {
    "world_step": world.world_step,
    "generate_demos": world.generate_demos,
    "param_counts": models.param_counts,
    "chunk_latency": models.chunk_latency,
    "bf16_step": models.bf16_step,
    "vlm_probe": models.vlm_probe,
    "strategy_steps": train.strategy_steps,
    "step_profile": train.step_profile,
    "step_speedups": train.step_speedups,
    "step_against_baseline": train.step_against_baseline,
    "eval_checkpoint": models.eval_checkpoint,
    "main_job": sweep.main_job,
    "calibration": calibration.calibration,
    "perception_tolerance": tolerance.perception_tolerance,
    "real_size_memory": memory.real_size_memory,
    "domain_gap": domain_gap.domain_gap,
    "fast_placement": fast_placement.fast_placement,
    "metaworld_references": metaworld.metaworld_references,
    "env_pool": metaworld.env_pool,
}
SLOW = {
    "main_job",
    "domain_gap",
    "fast_placement",
    "metaworld_references",
    "env_pool",
    "step_against_baseline",
}  # minutes each: run by name, not by `kinsul bench all`
