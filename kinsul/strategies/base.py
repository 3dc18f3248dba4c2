"""The strategy protocol: everything that distinguishes one gradient-flow mode from another.

The model exposes hooks (the expert's view of the backbone keys/values, loss terms, parameters); a strategy
decides them; the LightningModule only composes. Built-ins and third-party plugins register through the same
entry-point group, ``kinsul.strategies``; each entry point names a factory ``(options: dict) -> Strategy``.

Required: the attributes and three methods of ``Strategy``. Optional, found by name:
- ``on_step(step, control)``: called before every training step with the global step (exact after a resume)
  and a ``TrainControl``: switch parameter groups on or off, change loss weights; a strategy may change its own
  ``kv_alpha``-like fields too. Its decisions must be a function of the step and the strategy's state.
- ``state_dict() -> dict`` / ``load_state_dict(dict)``: the strategy's state, saved in every checkpoint and
  restored on resume. Plain numbers, strings, lists and dicts only (checkpoints load with ``weights_only``).
- ``setup(vla)``: called once when the training module is built (pretrained weights loaded, no checkpoint yet).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import torch
from torch import nn

DECODINGS = ("flow", "fast")


@dataclass
class ParamGroup:
    """One optimizer group: its parameters train at ``lr * lr_scale``."""

    name: str
    params: list[nn.Parameter] = field(repr=False)
    lr_scale: float = 1.0


@runtime_checkable
class Strategy(Protocol):
    name: str
    description: str
    loss_weights: dict[str, float]  # active loss terms (subset of LOSS_TERMS) and their default weights
    vlm_ratio: float  # share of each step's batch that is VLM samples, in [0, 1) (0: robot data only)
    decoding: str  # "flow" (expert, 10 Euler steps) or "fast" (autoregressive FAST tokens)
    needs_expert: bool  # False for pi0-FAST: the model has no action expert

    def param_groups(self, vla: nn.Module) -> list[ParamGroup]:
        """Trainable parameters, grouped; a parameter in no group is frozen."""

    def frozen_modules(self, vla: nn.Module) -> list[nn.Module]:
        """Modules kept in eval mode during training."""

    def kv_view(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """How the expert sees the backbone's keys/values: as is, detached, or gradient-scaled."""


class TrainControl(Protocol):
    """What a strategy's ``on_step`` may change. Implemented by the training module."""

    loss_weights: dict[str, float]  # the weights of this step's terms; a term set to 0 is still computed

    def set_trainable(self, group: str, trainable: bool) -> None:
        """Turn one of the strategy's ``param_groups`` on or off (requires_grad). A group that is off gets no
        gradient and no optimizer update (AdamW skips parameters without a gradient, weight decay included)."""


class StrategyError(ValueError):
    pass


def validate(strategy: object, source: str) -> Strategy:
    """Fail early and precisely when a plugin does not satisfy the protocol."""
    if not isinstance(strategy, Strategy):
        missing = [m for m in ("name", "description", "loss_weights", "vlm_ratio", "decoding", "needs_expert",
                               "param_groups", "frozen_modules", "kv_view") if not hasattr(strategy, m)]  # fmt: skip
        raise StrategyError(f"{source} returned {type(strategy).__name__}, which does not satisfy the Strategy "
                            f"protocol: missing {missing}")  # fmt: skip
    from kinsul.strategies.losses import GROUP as TERMS  # the registry imports the models
    from kinsul.strategies.losses import available as available_terms
    from kinsul.strategies.plugins import PluginConflictError, lookup

    terms = sorted(available_terms())
    try:
        unknown = {
            t for t in strategy.loss_weights if lookup(TERMS, "loss term", "loss_weights key", t) is None
        }
    except PluginConflictError as e:
        raise StrategyError(f"{source}: {e}") from None
    if unknown or not strategy.loss_weights:
        raise StrategyError(f"{source}: loss terms {sorted(strategy.loss_weights)} must be a non-empty subset of "
                            f"the registered terms {terms} (entry-point group kinsul.loss_terms)")  # fmt: skip
    if strategy.decoding not in DECODINGS:
        raise StrategyError(f"{source}: decoding '{strategy.decoding}' must be one of {list(DECODINGS)}")
    if strategy.decoding == "fast" and "fast" not in strategy.loss_weights:
        raise StrategyError(f"{source}: decoding 'fast' needs the 'fast' loss (nothing would train the backbone to "
                            "emit FAST tokens); set decoding: flow or add the FAST loss")  # fmt: skip
    if strategy.decoding == "flow" and not strategy.needs_expert:
        raise StrategyError(f"{source}: flow decoding needs the action expert")
    if "fm" in strategy.loss_weights and not strategy.needs_expert:
        raise StrategyError(f"{source}: the flow-matching loss needs the action expert")
    if not 0 <= strategy.vlm_ratio < 1:
        raise StrategyError(f"{source}: vlm_ratio={strategy.vlm_ratio} must be in [0, 1): the share of each "
                            "batch that is VLM samples")  # fmt: skip
    if (strategy.vlm_ratio > 0) != ("vlm" in strategy.loss_weights):
        raise StrategyError(
            f"{source}: vlm_ratio={strategy.vlm_ratio} must be > 0 exactly when the 'vlm' loss is on"
        )
    return strategy
