"""The optimiser and learning-rate schedule shared by VLM pretraining (both stages) and VLA training."""

from __future__ import annotations

import math

import torch


def warmup_cosine(optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int) -> dict:
    """Linear warm-up over ``warmup_steps``, then cosine decay to zero at ``total_steps``; stepped per batch."""

    def factor(step: int) -> float:
        warm = min(1.0, (step + 1) / max(1, warmup_steps))
        return warm * 0.5 * (1 + math.cos(math.pi * min(step, total_steps) / total_steps))

    return {"scheduler": torch.optim.lr_scheduler.LambdaLR(optimizer, factor), "interval": "step"}


def adamw_warmup_cosine(params, lr: float, weight_decay: float, warmup_steps: int, total_steps: int,
                        fused: bool = False) -> dict:  # fmt: skip
    """Lightning's ``configure_optimizers`` answer: AdamW over ``params`` (tensors or groups with their own
    ``lr``) with the warm-up + cosine schedule above. ``fused``: torch's one-kernel AdamW (CPU and CUDA)."""
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, fused=fused or None)
    return {"optimizer": opt, "lr_scheduler": warmup_cosine(opt, warmup_steps, total_steps)}
