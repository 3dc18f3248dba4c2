"""The built-in strategies of DESIGN.md section 1, as named points of one small space.

| strategy    | backbone trained by | expert reads backbone K/V | FAST | VLM data | inference |
| naive       | flow loss           | as is                     |      |          | flow      |
| frozen      | nothing (eval mode) | as is                     |      |          | flow      |
| stop_grad   | nothing reaches it  | detached                  |      |          | flow      |
| fast_joint  | flow + FAST         | as is                     | yes  |          | flow      |
| vlm_cotrain | flow + VLM          | as is                     |      | yes      | flow      |
| ki_no_vlm   | FAST                | detached                  | yes  |          | flow      |
| ki          | FAST + VLM          | detached                  | yes  | yes      | flow      |
| pi0_fast    | FAST (+ VLM)        | no expert                 | yes  | optional | FAST      |

Beyond the paper's end points:
| grad_scale       | flow x kv_alpha (0.1) | gradient-scaled         |      |          | flow      |
| delayed_unfreeze | flow, from step N     | as is                   |      |          | flow      |
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import torch
from torch import nn

from kinsul.fields import FieldValueError, check_range
from kinsul.strategies.base import ParamGroup


def scale_grad(x: torch.Tensor, alpha: float) -> torch.Tensor:
    """Identity forward; the gradient is multiplied by ``alpha`` (0 = stop-gradient, 1 = as is)."""
    return x.detach() + alpha * (x - x.detach())


@dataclass
class AxisStrategy:
    """A strategy as a point on the axes of the method. Built-ins are instances; plugins may subclass or
    implement the protocol from scratch."""

    name: str
    description: str
    loss_weights: dict[str, float]
    backbone: str = "train"  # "train": backbone parameters are optimised; "frozen": eval mode, no gradients
    kv_alpha: float = 1.0  # gradient scale on the backbone K/V the expert reads (0 = stop-gradient)
    vlm_ratio: float = 0.0
    decoding: str = "flow"
    needs_expert: bool = True
    backbone_lr_scale: float = 1.0  # backbone lr = lr * this (pi0 trains both at one lr)

    def __post_init__(self) -> None:
        if self.backbone not in ("train", "frozen"):
            raise FieldValueError("backbone", self.backbone, "'train' or 'frozen'")
        check_range("kv_alpha", self.kv_alpha, 0.0, 1.0)
        check_range("vlm_ratio", self.vlm_ratio, 0.0, 0.9)
        check_range("backbone_lr_scale", self.backbone_lr_scale, 0.0, 100.0)

    def backbone_receives_gradient(self) -> bool:
        backbone_losses = {"fast", "vlm"} & set(self.loss_weights)
        return self.backbone == "train" and (bool(backbone_losses) or self.kv_alpha > 0)

    def param_groups(self, vla: nn.Module) -> list[ParamGroup]:
        groups = []
        if vla.expert is not None and self.needs_expert:
            groups.append(ParamGroup("expert", list(vla.expert.parameters())))
        if self.backbone_receives_gradient():
            groups.append(ParamGroup("backbone", list(vla.backbone.parameters()), self.backbone_lr_scale))
        return groups

    def frozen_modules(self, vla: nn.Module) -> list[nn.Module]:
        return [vla.backbone] if self.backbone == "frozen" else []

    def kv_view(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.kv_alpha == 1.0:
            return k, v
        if self.kv_alpha == 0.0:
            return k.detach(), v.detach()
        return scale_grad(k, self.kv_alpha), scale_grad(v, self.kv_alpha)


@dataclass
class DelayedUnfreeze(AxisStrategy):
    """The expert trains alone on a frozen backbone for ``unfreeze_at`` steps, then both train (as pi0): the
    expert first learns to read the pretrained keys/values before its gradient may change them. The step comes
    from the trainer, so a resumed run unfreezes at the same step as an uninterrupted one."""

    unfreeze_at: int = 1000

    def __post_init__(self) -> None:
        super().__post_init__()
        if (
            not isinstance(self.unfreeze_at, int)
            or isinstance(self.unfreeze_at, bool)
            or self.unfreeze_at < 0
        ):
            raise FieldValueError("unfreeze_at", self.unfreeze_at, "an integer step >= 0")

    def param_groups(self, vla: nn.Module) -> list[ParamGroup]:
        groups = [ParamGroup("expert", list(vla.expert.parameters()))]
        return groups + [ParamGroup("backbone", list(vla.backbone.parameters()), self.backbone_lr_scale)]

    def on_step(self, step: int, control) -> None:
        control.set_trainable("backbone", step >= self.unfreeze_at)


TUNABLE = ("backbone_lr_scale", "vlm_ratio", "kv_alpha")  # options a run may override


def _make(defaults: dict[str, Any], cls: type[AxisStrategy] = AxisStrategy):
    def factory(options: dict[str, Any] | None = None) -> AxisStrategy:
        options = dict(options or {})
        known = {f.name for f in fields(cls)} - {"name", "description", "loss_weights"}
        for key in options:
            if key not in known:
                raise FieldValueError(f"options.{key}", options[key], f"one of {sorted(known)}")
        merged = {**defaults, **options}
        if merged.get("vlm_ratio", 0) > 0 and "vlm" not in merged["loss_weights"]:
            merged["loss_weights"] = {**merged["loss_weights"], "vlm": 1.0}  # e.g. pi0_fast with VLM data
        return cls(**merged)

    factory.__doc__ = defaults["description"]
    return factory


naive = _make(dict(name="naive", description="pi0: backbone and expert trained together by the flow loss; "
                   "the flow gradient reaches the backbone through its keys/values",
                   loss_weights={"fm": 1.0}))  # fmt: skip
frozen = _make(dict(name="frozen", description="backbone frozen in eval mode; only the expert trains",
                    loss_weights={"fm": 1.0}, backbone="frozen"))  # fmt: skip
stop_grad = _make(dict(name="stop_grad", description="expert reads detached backbone keys/values; no loss "
                       "reaches the backbone", loss_weights={"fm": 1.0}, kv_alpha=0.0))  # fmt: skip
fast_joint = _make(dict(name="fast_joint", description="backbone trained by the flow loss and FAST tokens; "
                        "no stop-gradient", loss_weights={"fm": 1.0, "fast": 1.0}))  # fmt: skip
vlm_cotrain = _make(dict(name="vlm_cotrain", description="backbone trained by the flow loss and co-trained on "
                         "VLM data; no stop-gradient", loss_weights={"fm": 1.0, "vlm": 1.0}, vlm_ratio=0.25))  # fmt: skip
ki_no_vlm = _make(dict(name="ki_no_vlm", description="knowledge insulation without VLM data: backbone learns "
                       "FAST tokens, expert reads it through a stop-gradient",
                       loss_weights={"fm": 1.0, "fast": 1.0}, kv_alpha=0.0))  # fmt: skip
ki = _make(dict(name="ki", description="knowledge insulation: backbone learns FAST tokens and keeps co-training "
                "on VLM data; expert reads it through a stop-gradient",
                loss_weights={"fm": 1.0, "fast": 1.0, "vlm": 1.0}, kv_alpha=0.0, vlm_ratio=0.25))  # fmt: skip
pi0_fast = _make(dict(name="pi0_fast", description="pi0-FAST: autoregressive FAST tokens from the backbone, no "
                      "expert", loss_weights={"fast": 1.0}, decoding="fast", needs_expert=False))  # fmt: skip
grad_scale = _make(dict(name="grad_scale", description="partial insulation: the flow gradient reaches the backbone's "
                        "keys/values scaled by kv_alpha (0 = stop_grad, 1 = naive)",
                        loss_weights={"fm": 1.0}, kv_alpha=0.1))  # fmt: skip
delayed_unfreeze = _make(dict(name="delayed_unfreeze", description="frozen backbone for unfreeze_at steps, then "
                              "trained with the expert by the flow loss (pi0)", loss_weights={"fm": 1.0}),
                         DelayedUnfreeze)  # fmt: skip
