"""An example kinsul plugin: a new insulation strategy with its own loss term, written against the protocols only.

``anchored`` trains backbone and expert together by the flow loss, as pi0 (``naive``) does, and adds ``anchor``:
the L2 distance between the backbone's hidden states over [image | instruction] and those of a frozen copy of
the pretrained backbone, a classic knowledge-retention baseline (an L2 anchor to the pretrained outputs, rather
than insulating the gradient). Its weight is ``strategy.loss_weights.anchor`` (default 1.0).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from kinsul.strategies import ParamGroup


@dataclass
class Anchored:
    name: str = "anchored"
    description: str = "pi0 plus an L2 anchor of the backbone's prefix hidden states to the pretrained VLM"
    loss_weights: dict[str, float] = field(default_factory=lambda: {"fm": 1.0, "anchor": 1.0})
    vlm_ratio: float = 0.0
    decoding: str = "flow"
    needs_expert: bool = True

    @classmethod
    def from_options(cls, options: dict) -> Anchored:
        if options:
            raise ValueError(f"'anchored' takes no options (got {sorted(options)}); set the anchor's weight with "
                             "strategy.loss_weights.anchor")  # fmt: skip
        return cls()

    def param_groups(self, vla) -> list[ParamGroup]:
        return [ParamGroup("expert", list(vla.expert.parameters())),
                ParamGroup("backbone", list(vla.backbone.parameters()))]  # fmt: skip

    def frozen_modules(self, vla) -> list:
        return []

    def kv_view(self, k: torch.Tensor, v: torch.Tensor):
        return k, v  # the flow gradient reaches the backbone: the anchor, not a stop-gradient, protects it


class PrefixAnchor:
    """The ``anchor`` loss term. ``setup`` runs when the training module is built, before any checkpoint is
    restored, so the copy holds the pretrained weights, also on resume. The copy is a plain attribute, not a
    submodule: it is neither trained nor saved in checkpoints."""

    reference = None

    def setup(self, vla) -> None:
        self.reference = copy.deepcopy(vla).requires_grad_(False).eval()

    def __call__(self, ctx) -> torch.Tensor:
        out = ctx.robot_pass().out  # shared with the flow term: no second pass of the trained model
        hidden = out.hidden[:, : out.n_prefix]
        if next(self.reference.parameters()).device != hidden.device:
            self.reference.to(hidden.device)
        with torch.no_grad():
            target = self.reference(ctx.batch.robot.obs).hidden
        return F.mse_loss(hidden.float(), target.float())
