"""The root configuration: one tree whose branches mirror the package (world, concepts, data, ...)."""

from __future__ import annotations

from dataclasses import dataclass, field

from kinsul.config.sections import EvalConfig, PretrainConfig, TrackingConfig, TrainerConfig
from kinsul.data.config import DataConfig
from kinsul.fields import FieldValueError, check_range
from kinsul.models.config import ModelConfig
from kinsul.strategies.config import StrategyConfig
from kinsul.world.concepts import ConceptConfig
from kinsul.world.config import WorldConfig


@dataclass(frozen=True)
class KinsulConfig:
    world: WorldConfig = field(default_factory=WorldConfig)
    concepts: ConceptConfig = field(default_factory=ConceptConfig)
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    strategy: StrategyConfig = field(default_factory=StrategyConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    seed: int = 0  # global seed for everything that is not data generation

    def __post_init__(self) -> None:
        from kinsul.strategies import create  # the strategy and its options, checked when the config loads

        check_range("seed", self.seed, 0, 2**32 - 1)  # torch and numpy seeds are unsigned
        strategy = create(self.strategy.name, self.strategy.options)
        for term in self.strategy.loss_weights:
            if term not in strategy.loss_weights:
                raise FieldValueError(f"strategy.loss_weights.{term}", self.strategy.loss_weights[term],
                                      f"a weight for one of strategy '{strategy.name}''s terms "
                                      f"{sorted(strategy.loss_weights)}; it produces no '{term}' loss")  # fmt: skip
        # which simulator can roll out a policy trained on which robot's data
        fits = {"kinsul": ("kinsul", "none"), "lerobot": ("none",), "metaworld": ("metaworld", "none")}
        if self.eval.env not in fits[self.data.robot_source]:
            raise FieldValueError("eval.env", self.eval.env, f"one of {list(fits[self.data.robot_source])} for "
                                  f"data.robot_source={self.data.robot_source!r}: a simulator takes its own robot's "
                                  "actions only (none: offline errors, retention and latency)")  # fmt: skip
        if self.eval.env == "none" and self.trainer.curve_every:
            raise FieldValueError("trainer.curve_every", self.trainer.curve_every, "0 with eval.env=none: the "
                                  "success curve is measured by rollouts in a simulator")  # fmt: skip
        if not self.headline_tasks():
            raise FieldValueError("eval.headline_tasks", self.eval.headline_tasks,
                                  f"at least one task family of world.tasks {list(self.world.tasks)}")  # fmt: skip

    def headline_tasks(self) -> list[str]:
        """The task families eval/success averages: eval.headline_tasks that the world has (all when empty)."""
        wanted = self.eval.headline_tasks
        return [t for t in self.world.tasks if not wanted or t in wanted]
