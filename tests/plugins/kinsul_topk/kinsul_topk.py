"""Top-k unfreeze: knowledge insulation where only the top k decoder layers of the backbone learn.

``topk`` reads the backbone's keys/values through a stop-gradient, as ``ki`` does, and trains the top ``k``
decoder layers of the language model on FAST tokens; the vision tower, the connector, the embeddings (and the
LM head tied to them) and the lower layers keep their pretrained weights. ``l2sp`` pulls every backbone weight
that trains back towards its pretrained value (L2-SP, Li et al. 2018): a second, softer guard on the VLM's
knowledge. The tutorial docs/write-a-strategy.md builds this file step by step.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch

from kinsul.fields import FieldValueError
from kinsul.strategies import AxisStrategy, ParamGroup


@dataclass
class TopK(AxisStrategy):
    """Stop-gradient to the expert; the top ``k`` decoder layers learn FAST tokens (and keep the L2-SP anchor)."""

    k: int = 1  # how many decoder layers, counted from the top, train

    def __post_init__(self) -> None:
        super().__post_init__()  # the axes' own checks (kv_alpha, vlm_ratio, backbone_lr_scale)
        if not isinstance(self.k, int) or isinstance(self.k, bool) or self.k < 1:
            raise FieldValueError("options.k", self.k, "an integer >= 1 (decoder layers that train)")

    def setup(self, vla) -> None:
        """The model-aware check: runs on the built model before any step; a ValueError is one line, exit 2."""
        layers = len(vla.lm.layers)
        if self.k > layers:
            raise ValueError(f"strategy.options.k={self.k}: this backbone has {layers} decoder layers")

    def param_groups(self, vla) -> list[ParamGroup]:
        top = [p for layer in vla.lm.layers[-self.k :] for p in layer.parameters()]
        return [ParamGroup("expert", list(vla.expert.parameters())),
                ParamGroup("top_layers", top, self.backbone_lr_scale)]  # fmt: skip


def topk(options: dict | None = None) -> TopK:
    """The entry point: options come from `strategy.options` (k, and the axes' own: backbone_lr_scale, ...)."""
    options = dict(options or {})
    known = sorted({f.name for f in fields(TopK)} - {"name", "description", "loss_weights"})
    for key in options:
        if key not in known:
            raise FieldValueError(f"options.{key}", options[key], f"one of {known}")
    return TopK(name="topk", description="stop-gradient to the expert; only the top k decoder layers learn, by "
                "FAST tokens, anchored to their pretrained weights (L2-SP)",
                loss_weights={"fm": 1.0, "fast": 1.0, "l2sp": 0.1}, kv_alpha=0.0, **options)  # fmt: skip


class L2SP:
    """``l2sp``: the squared distance of the trainable backbone weights from their pretrained values. ``setup``
    runs before a checkpoint is restored, so the reference is the pretrained VLM, also on resume; it lives on
    this object, not in the model, and is neither trained nor saved."""

    reference: dict[str, torch.Tensor] | None = None

    def setup(self, vla) -> None:
        self.reference = {n: p.detach().clone() for n, p in vla.backbone.named_parameters()}

    def __call__(self, ctx) -> torch.Tensor:
        total = torch.zeros((), device=next(ctx.vla.parameters()).device)
        for name, p in ctx.vla.backbone.named_parameters():
            if p.requires_grad:  # only what trains this step: a frozen weight cannot move
                ref = self.reference[name]
                if ref.device != p.device:
                    ref = self.reference[name] = ref.to(p.device)
                total = total + (p.float() - ref.float()).pow(2).sum()
        return total
