"""Wall-clock seconds per named phase of a job (a trial's evaluation, its training), for the time/* metrics that
show where a run's time goes."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager


class PhaseClock:
    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] += time.perf_counter() - start

    def metrics(self, prefix: str) -> dict[str, float]:
        """{f"{prefix}{phase}_s": seconds} and f"{prefix}total_s" (their sum)."""
        out = {f"{prefix}{name}_s": round(s, 3) for name, s in self.seconds.items()}
        out[f"{prefix}total_s"] = round(sum(self.seconds.values()), 3)
        return out
