"""What a strategy is made of, for people: its options (dataclass fields beyond the protocol's) with their
types and values, and the package and version that registered it."""

from __future__ import annotations

import dataclasses
from importlib.metadata import EntryPoint
from typing import Any

PROTOCOL_FIELDS = {"name", "description", "loss_weights", "vlm_ratio", "decoding", "needs_expert"}


def options_of(strategy: object) -> dict[str, tuple[str, Any]]:
    """option -> (type, value) for a dataclass strategy (what `strategy.options` may set; vlm_ratio included);
    {} for a strategy that is not a dataclass (its factory's own keyword arguments are its options)."""
    if not dataclasses.is_dataclass(strategy):
        return {}
    out = {}
    for f in dataclasses.fields(strategy):
        if f.name in PROTOCOL_FIELDS - {"vlm_ratio", "decoding"}:
            continue
        kind = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
        out[f.name] = (kind, getattr(strategy, f.name))
    return out


def version_of(ep: EntryPoint) -> str:
    dist = getattr(ep, "dist", None)
    return dist.version if dist is not None else "?"
