"""The strategy section of the configuration: which registered strategy trains the VLA, its options and loss
weights (validated against the strategy itself when the root configuration loads)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from kinsul.fields import FieldValueError


@dataclass(frozen=True)
class StrategyConfig:
    """Which insulation strategy trains the VLA (a name registered under the kinsul.strategies entry points)."""

    name: str = (
        "ki"  # naive | frozen | stop_grad | fast_joint | vlm_cotrain | ki_no_vlm | ki | pi0_fast | plugin
    )
    options: dict[str, Any] = field(default_factory=dict)  # the strategy's own options, e.g. {kv_alpha: 0.1}
    loss_weights: dict[str, float] = field(default_factory=dict)  # override weights of terms it produces

    def __post_init__(self) -> None:
        for term, w in self.loss_weights.items():
            if not math.isfinite(w) or not 0 <= w <= 1e6:
                raise FieldValueError(f"loss_weights.{term}", w, "a finite weight in [0, 1e6]")
