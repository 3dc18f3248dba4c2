"""Insulation strategies as plugins: one small protocol (`base`), strategies and loss terms registered by entry
points (`registry`, `losses`), the built-ins (`builtin`), the strategy's config section (`config`)."""

from kinsul.strategies.base import ParamGroup, Strategy, StrategyError, TrainControl
from kinsul.strategies.builtin import AxisStrategy
from kinsul.strategies.registry import available, create

__all__ = ["AxisStrategy", "ParamGroup", "Strategy", "StrategyError", "TrainControl", "available", "create"]
