"""Loss terms as a registry: the ``kinsul.loss_terms`` entry-point group maps a term's name to a factory
``() -> LossTerm``; a strategy's ``loss_weights`` names the terms it trains with. Built-ins (``fm``, ``fast``,
``vlm``) register like any plugin's term (e.g. the example plugin's ``anchor``), so a new term needs no kinsul edit.

The robot pass is shared: the backbone over [image | instruction | FAST tokens] and the expert over noisy actions
run once per step however many terms read it (``LossContext.robot_pass``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from importlib.metadata import EntryPoint
from typing import Protocol, runtime_checkable

import torch
from torch import nn

from kinsul.data.batch import TrainBatch
from kinsul.models.flow import interpolate, sample_time
from kinsul.models.vla import VLA, VLAOutput, flow_loss, token_loss
from kinsul.strategies.base import StrategyError
from kinsul.strategies.plugins import lookup, package, plain_names

GROUP = "kinsul.loss_terms"


@dataclass
class RobotPass:
    out: VLAOutput  # suffix_logits over the FAST tokens (if a term wants them), velocity (if one wants the flow)
    target_velocity: torch.Tensor | None  # u = noise - actions, the flow-matching target


@dataclass
class LossContext:
    """What a loss term may read: the model, the strategy, the step's typed batch and the shared robot pass."""

    vla: VLA
    strategy: object
    batch: TrainBatch
    active: frozenset[str]  # the terms with a weight this step
    time_beta: tuple[float, float]  # model.time_beta_alpha, model.time_beta_beta: the flow-time distribution
    _robot: RobotPass | None = field(default=None, repr=False)

    @property
    def wants_flow(self) -> bool:
        return "fm" in self.active

    @property
    def wants_fast(self) -> bool:
        return "fast" in self.active

    def robot_pass(self) -> RobotPass:
        """One joint pass over the robot batch: FAST tokens when the ``fast`` term is active, the expert over
        x_t when ``fm`` is. Noise and flow times are drawn here, first, so the draw order never depends on
        which term asks first."""
        if self._robot is None:
            robot = self.batch.robot
            x_t = t = u = None
            if self.wants_flow:
                noise = torch.randn_like(robot.actions)
                t = sample_time(len(noise), *self.time_beta, device=noise.device)
                x_t, u = interpolate(robot.actions, noise, t)
            ids, mask = (robot.fast_ids, robot.fast_mask) if self.wants_fast else (None, None)
            out = self.vla(robot.obs, ids, mask, x_t, t, kv_view=self.strategy.kv_view)
            self._robot = RobotPass(out, u)
        return self._robot


@runtime_checkable
class LossTerm(Protocol):
    """A scalar loss from the step's context. Optional: ``setup(vla)``, called once when the training module is
    built (the pretrained weights are loaded then, a checkpoint not yet), e.g. to keep a frozen reference."""

    def __call__(self, ctx: LossContext) -> torch.Tensor: ...


class FlowMatching:
    """``fm``: the expert's velocity against u = noise - actions (padding past the episode end excluded)."""

    def __call__(self, ctx: LossContext) -> torch.Tensor:
        p = ctx.robot_pass()
        return flow_loss(p.out.velocity, p.target_velocity, ctx.batch.robot.action_pad)


class FastTokens:
    """``fast``: next-token cross-entropy of the backbone on the chunk's FAST tokens."""

    def __call__(self, ctx: LossContext) -> torch.Tensor:
        r = ctx.batch.robot
        out = ctx.robot_pass().out
        return token_loss(out.suffix_logits, r.fast_ids, r.fast_mask, out.first_logits)


class VLMAnswers:
    """``vlm``: next-token cross-entropy of the backbone on VLM answers (co-training data)."""

    def __call__(self, ctx: LossContext) -> torch.Tensor:
        v = ctx.batch.vlm
        if v is None:
            raise ValueError(
                "the 'vlm' loss term needs VLM samples in the batch: set the strategy's vlm_ratio > 0"
            )
        out = ctx.vla(v.obs, v.suffix_ids, v.suffix_mask)
        return token_loss(out.suffix_logits, v.suffix_ids, v.suffix_mask, out.first_logits)


def available() -> dict[str, EntryPoint]:
    """Registered loss terms by plain name (a name two packages claim is left out: see ``plugins``)."""
    return plain_names(GROUP)


@cache
def _factory(name: str):
    ep = lookup(GROUP, "loss term", "the strategy's loss_weights key", name)  # a shared name raises
    if ep is None:
        raise KeyError(name)
    try:
        return ep.load()
    except (Exception, SystemExit) as e:
        raise StrategyError(f"loss term '{name}' (entry point {ep.value}, package '{package(ep)}') could not be "
                            f"imported: {type(e).__name__}: {e}") from None  # fmt: skip


def create(name: str) -> LossTerm:
    """A fresh instance of the registered term ``name`` (one per training module: terms may hold state)."""
    term = _factory(name)()
    if not isinstance(term, LossTerm):
        raise TypeError(
            f"loss term '{name}' ({lookup(GROUP, 'loss term', 'loss_weights', name).value}) is not callable as "
            "term(ctx) -> Tensor"
        )
    return term


def setup_terms(names, vla: nn.Module) -> dict[str, LossTerm]:
    terms = {n: create(n) for n in names}
    for term in terms.values():
        if hasattr(term, "setup"):
            term.setup(vla)
    return terms
