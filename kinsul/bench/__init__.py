"""Named benchmarks; `kinsul bench NAME` runs one and records it in docs/benchmarks.{json,md}."""

from __future__ import annotations

from collections.abc import Callable

from kinsul.bench import world

BENCHMARKS: dict[str, Callable[[], dict]] = {
    "world_step": world.world_step,
    "generate_demos": world.generate_demos,
}
