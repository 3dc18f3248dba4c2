"""An example kinsul strategy plugin, written against the protocol only (no kinsul base class).

Between stop-gradient (alpha = 0) and naive pi0 (alpha = 1): the expert's flow gradient reaches the
backbone's keys/values multiplied by alpha, and the backbone trains at its own learning-rate scale.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from kinsul.strategies import ParamGroup


@dataclass
class GradScale:
    alpha: float = 0.1
    backbone_lr_scale: float = 1.0
    name: str = "grad_scale"
    description: str = "flow gradient into the backbone scaled by alpha (0 = stop_grad, 1 = naive)"
    loss_weights: dict[str, float] = field(default_factory=lambda: {"fm": 1.0})
    vlm_ratio: float = 0.0
    decoding: str = "flow"
    needs_expert: bool = True

    @classmethod
    def from_options(cls, options: dict) -> GradScale:
        alpha = float(options.pop("alpha", 0.1))
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"grad_scale option alpha={alpha}: expected a value in [0, 1]")
        return cls(alpha=alpha, **options)

    def param_groups(self, vla) -> list[ParamGroup]:
        return [
            ParamGroup("expert", list(vla.expert.parameters())),
            ParamGroup("backbone", list(vla.backbone.parameters()), self.backbone_lr_scale),
        ]

    def frozen_modules(self, vla) -> list:
        return []

    def kv_view(self, k: torch.Tensor, v: torch.Tensor):
        a = self.alpha
        return k.detach() + a * (k - k.detach()), v.detach() + a * (v - v.detach())
