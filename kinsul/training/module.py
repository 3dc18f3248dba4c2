"""The LightningModule: sums the strategy's loss terms, logs each under a stable name, and builds optimizer
groups from what the strategy says. It never looks at a strategy's name."""

from __future__ import annotations

from dataclasses import dataclass

import lightning as L
import torch
from torch import nn
from torchmetrics.aggregation import MeanMetric

from kinsul.config.schema import KinsulConfig
from kinsul.data.batch import RobotBatch, TrainBatch
from kinsul.fields import ConfigError
from kinsul.models.decoding import chunk_errors
from kinsul.models.vla import VLA
from kinsul.runs.checkpoints import NonFiniteGradientError, NonFiniteLossError
from kinsul.runs.schedule import adamw_warmup_cosine
from kinsul.strategies.base import ParamGroup, Strategy, StrategyError
from kinsul.strategies.losses import LossContext, LossTerm, setup_terms
from kinsul.tokenizers.fast import FastTokenizer


def resolve_loss_weights(strategy: Strategy, overrides: dict[str, float]) -> dict[str, float]:
    for term in overrides:
        if term not in strategy.loss_weights:
            raise ConfigError(f"strategy.loss_weights.{term}",
                              f"strategy '{strategy.name}' produces no '{term}' loss (it produces "
                              f"{sorted(strategy.loss_weights)})")  # fmt: skip
    return {**strategy.loss_weights, **overrides}


@dataclass
class Fit:
    """A strategy fitted to a built model: what trains (groups), what is frozen, the loss terms it weighs."""

    groups: list[ParamGroup]
    frozen: list[nn.Module]
    weights: dict[str, float]
    terms: dict[str, LossTerm]


def fit_strategy(strategy: Strategy, vla: VLA, cfg: KinsulConfig) -> Fit:
    """The strategy meets the built model: its options checked against it (its ``setup``), its parameter groups
    and frozen modules taken from it, its loss terms built and set up on it. What does not fit is one
    StrategyError naming the model; a loss weight the strategy has no term for, a ConfigError."""
    weights = resolve_loss_weights(strategy, dict(cfg.strategy.loss_weights))
    model = f"({cfg.model.family}, size {cfg.model.size})"
    try:
        if hasattr(strategy, "setup"):
            strategy.setup(vla)
        groups, frozen = strategy.param_groups(vla), strategy.frozen_modules(vla)
    except (ValueError, KeyError, IndexError, AttributeError) as e:
        raise StrategyError(f"strategy '{strategy.name}' does not fit this model {model}: "
                            f"{type(e).__name__}: {e}") from e  # fmt: skip
    try:
        terms = setup_terms(weights, vla)  # every term the strategy may weigh, built once
    except (ValueError, KeyError, IndexError, AttributeError) as e:
        raise StrategyError(f"strategy '{strategy.name}': a loss term does not fit this model {model}: "
                            f"{type(e).__name__}: {e}") from e  # fmt: skip
    return Fit(groups, frozen, weights, terms)


def check_strategy_fits(cfg: KinsulConfig) -> None:
    """What `VLAModule` checks when a run starts (`fit_strategy`), on the config's model built on the meta
    device: no weights read, no data generated, milliseconds. A sweep runs it for every point before its first
    trial, so an option that does not fit the model (``k=3`` on a 2-layer backbone) stops the sweep at once
    instead of failing its trials one by one. Only for kinsul's own VLMs, whose architecture is the preset's
    size; a checkpoint folder's (``model.pretrained_path``) is known when its weights load, at the trial."""
    if cfg.model.pretrained_path:
        return
    from kinsul.models.build import build_vla
    from kinsul.runs.assembly import data_spec, world_tokenizer
    from kinsul.strategies import create

    strategy = create(cfg.strategy.name, cfg.strategy.options)
    with torch.device("meta"):
        vla = build_vla(cfg.model, world_tokenizer(cfg), data_spec(cfg), with_expert=strategy.needs_expert)
    try:
        fit_strategy(strategy, vla, cfg)
    except (RuntimeError, NotImplementedError):
        return  # a setup that reads weight values cannot run on meta tensors: the trial checks it


class Control:
    """The ``TrainControl`` a strategy's ``on_step`` receives: its parameter groups by name, the loss weights."""

    def __init__(self, module: VLAModule):
        self.module = module

    @property
    def loss_weights(self) -> dict[str, float]:
        return self.module.weights

    def set_trainable(self, group: str, trainable: bool) -> None:
        groups = {g.name: g for g in self.module.groups}
        if group not in groups:
            raise KeyError(f"strategy '{self.module.strategy.name}' has no parameter group '{group}' "
                           f"(its groups: {sorted(groups)})")  # fmt: skip
        for p in groups[group].params:
            p.requires_grad_(trainable)


class VLAModule(L.LightningModule):
    def __init__(self, vla: VLA, strategy: Strategy, cfg: KinsulConfig, fast: FastTokenizer):
        super().__init__()
        self.vla, self.strategy, self.cfg, self.fast = vla, strategy, cfg, fast
        vla.gradient_checkpointing = cfg.trainer.gradient_checkpointing
        vla.compile_layers = cfg.trainer.compile
        fit = fit_strategy(strategy, vla, cfg)
        self.groups, self.frozen, self.weights, self.terms = fit.groups, fit.frozen, fit.weights, fit.terms
        trainable = {id(p) for g in self.groups for p in g.params}
        for p in vla.parameters():
            p.requires_grad_(id(p) in trainable)
        self.control = Control(self)
        self.val_mse = MeanMetric()
        self.val_velocity = MeanMetric()
        self.val_invalid = MeanMetric()

    def trainable_counts(self) -> dict[str, int]:
        """Parameters per strategy group, and the frozen rest (as the strategy set them up, before any step)."""
        counts = {g.name: sum(p.numel() for p in g.params) for g in self.groups}
        trainable = {id(p) for g in self.groups for p in g.params}
        counts["frozen"] = sum(p.numel() for p in self.vla.parameters() if id(p) not in trainable)
        return counts

    # -- training ------------------------------------------------------------------------------------
    def on_train_epoch_start(self) -> None:
        for m in self.frozen:
            m.eval()

    def on_validation_model_train(self) -> None:
        super().on_validation_model_train()  # Lightning puts the whole model back in train mode ...
        self.on_train_epoch_start()  # ... so frozen modules go back to eval

    def compute_losses(self, batch: TrainBatch) -> dict[str, torch.Tensor]:
        """Each term with a weight this step, from the registry; which ones is the strategy's decision."""
        ctx = LossContext(self.vla, self.strategy, batch, frozenset(self.weights),
                          (self.cfg.model.time_beta_alpha, self.cfg.model.time_beta_beta))  # fmt: skip
        losses = {}
        for name in self.weights:
            try:
                losses[name] = self.terms[name](ctx)
            except RuntimeError as e:
                # a shape bug in a plugin's strategy or term: name them, not a traceback from the layer loop
                if isinstance(e, torch.OutOfMemoryError):
                    raise
                raise StrategyError(f"strategy '{self.strategy.name}', loss term '{name}': {e}") from e
        return losses

    def on_train_batch_start(self, batch, batch_idx: int) -> None:
        if hasattr(self.strategy, "on_step"):
            self.strategy.on_step(self.global_step, self.control)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["loss_weights"] = dict(self.weights)
        if hasattr(self.strategy, "state_dict"):
            checkpoint["strategy_state"] = self.strategy.state_dict()

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.weights.update(checkpoint.get("loss_weights", {}))
        if hasattr(self.strategy, "load_state_dict") and "strategy_state" in checkpoint:
            self.strategy.load_state_dict(checkpoint["strategy_state"])

    def training_step(self, batch: TrainBatch, _):
        # Noise and flow times are a function of (seed, step), so a resumed run repeats them exactly.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.cfg.seed * 1_000_003 + self.global_step)
            losses = self.compute_losses(batch)
        for term, value in losses.items():
            if not torch.isfinite(value):
                raise NonFiniteLossError(f"loss term '{term}' is {value.item()} at step {self.global_step}; "
                                         "stopping before it reaches the weights or a checkpoint")  # fmt: skip
            self.log(f"train/loss_{term}", value, prog_bar=True)
        loss = sum(self.weights[k] * v for k, v in losses.items())
        if not torch.isfinite(loss):  # finite terms can still overflow once weighted
            raise NonFiniteLossError(f"the weighted loss is {loss.item()} at step {self.global_step} (weights "
                                     f"{self.weights}, terms { {k: v.item() for k, v in losses.items()} }); "
                                     "stopping before it reaches the weights or a checkpoint")  # fmt: skip
        self.log("train/loss", loss)
        return loss

    def on_before_optimizer_step(self, optimizer) -> None:
        """No non-finite gradient reaches the weights (a plugin's term can be finite with a NaN gradient). One
        fused norm per step; the parameter is looked up only when one is bad. Under DDP every rank checks its own
        (all-reduced, hence equal) gradients, so all ranks stop together."""
        grads = [p.grad for p in self.vla.parameters() if p.grad is not None]
        if not grads or bool(torch.isfinite(torch.stack(torch._foreach_norm(grads))).all()):
            return
        name = next(
            n
            for n, p in self.vla.named_parameters()
            if p.grad is not None and not torch.isfinite(p.grad).all()
        )
        raise NonFiniteGradientError(f"the gradient of '{name}' is not finite at step {self.global_step}; stopping "
                                     "before it reaches the weights or a checkpoint")  # fmt: skip

    # -- validation: the strategy's own decoding -----------------------------------------------------
    def validation_step(self, batch: RobotBatch, i: int):
        m = self.cfg.model
        errors, invalid = chunk_errors(self.vla, self.fast, self.strategy.decoding, batch, m.flow_steps,
                                       m.max_fast_len, i, samples=self.cfg.trainer.val_samples)  # fmt: skip
        self.val_mse.update(errors["action_mse"])
        self.val_velocity.update(errors["velocity_mse"])
        if invalid is not None:
            self.val_invalid.update(invalid.float())

    def on_validation_epoch_end(self) -> None:
        self.log("val/action_mse", self.val_mse.compute(), prog_bar=True)
        self.log("val/velocity_mse", self.val_velocity.compute(), prog_bar=True)
        self.val_mse.reset()
        self.val_velocity.reset()
        if self.val_invalid.update_count:
            self.log("val/fast_invalid", self.val_invalid.compute())
            self.val_invalid.reset()

    # -- optimisation --------------------------------------------------------------------------------
    def configure_optimizers(self):
        tc = self.cfg.trainer
        check_groups(self.vla, self.groups)
        param_groups = [{"params": g.params, "lr": tc.lr * g.lr_scale, "name": g.name} for g in self.groups]
        return adamw_warmup_cosine(param_groups, tc.lr, tc.weight_decay, tc.warmup_steps, tc.max_steps,
                                   fused=tc.fused_optimizer)  # fmt: skip


def check_groups(vla: torch.nn.Module, groups) -> None:
    """Every trainable parameter is in exactly one group, and no frozen parameter is in any."""
    seen: dict[int, str] = {}
    for g in groups:
        for p in g.params:
            if id(p) in seen:
                raise AssertionError(f"a parameter is in optimizer groups '{seen[id(p)]}' and '{g.name}'")
            seen[id(p)] = g.name
    for name, p in vla.named_parameters():
        if p.requires_grad and id(p) not in seen:  # a group may be off for now (a strategy's on_step)
            raise AssertionError(f"parameter '{name}' is trainable but in no group")
