"""Insulation strategies as plugins: one small protocol, registered by entry points."""

from kinsul.strategies.base import LOSS_TERMS, ParamGroup, Strategy, StrategyError
from kinsul.strategies.registry import available, create

__all__ = ["LOSS_TERMS", "ParamGroup", "Strategy", "StrategyError", "available", "create"]
