"""Insulation strategies as plugins: one small protocol, registered by entry points."""

from kinsul.strategies.base import ParamGroup, Strategy, StrategyError, TrainControl
from kinsul.strategies.registry import available, create

__all__ = ["ParamGroup", "Strategy", "StrategyError", "TrainControl", "available", "create"]
