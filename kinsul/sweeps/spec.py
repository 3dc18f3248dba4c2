"""A sweep preset is a run preset (ablations/NAME.yaml) with a `sweep:` section: the Optuna grid over config
keys, the objective, and where the study lives."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

from omegaconf import OmegaConf

from kinsul.config.errors import ConfigError, FieldValueError, check_choice, check_range
from kinsul.config.loader import load_config, preset_path
from kinsul.strategies import create


@dataclass
class SweepSpec:
    grid: dict[str, list[Any]] = field(
        default_factory=dict
    )  # config key -> values (GridSampler, full product)
    objective: str = "eval/success"  # trial value: a metric of `kinsul eval`
    direction: str = "maximize"
    storage: str = "sqlite:///optuna.db"  # any Optuna RDB URL; share it between workers to split the grid
    heartbeat_s: int = 30  # a RUNNING trial without a heartbeat for 2x this long is failed on --resume
    evaluate: bool = True  # run `kinsul eval` on every trial (the objective needs it)

    def __post_init__(self) -> None:
        check_choice("direction", self.direction, ["maximize", "minimize"])
        check_range("heartbeat_s", self.heartbeat_s, 1, 86_400)
        if not self.grid:
            raise FieldValueError("grid", self.grid, "a mapping of config keys to lists of values")

    def points(self) -> list[dict[str, Any]]:
        keys = list(self.grid)
        return [dict(zip(keys, values, strict=True)) for values in itertools.product(*self.grid.values())]


def load_sweep(preset: str, overrides: list[str] = ()) -> SweepSpec:
    """Read the `sweep:` section and check every grid point builds a valid config, before any trial runs."""
    raw = OmegaConf.to_container(OmegaConf.load(preset_path(preset)))
    section = raw.get("sweep")
    if not isinstance(section, dict):
        raise ConfigError("sweep", f"preset '{preset}' has no `sweep:` section (grid, objective, ...)")
    try:
        spec = SweepSpec(**section)
    except TypeError as e:
        raise ConfigError("sweep", f"{e}; valid keys: {list(SweepSpec.__dataclass_fields__)}") from None
    except FieldValueError as e:
        raise ConfigError(f"sweep.{e.field}", f"got {e.value!r}, expected {e.expected}") from None
    for key, values in spec.grid.items():
        if not isinstance(values, list) or not values:
            raise ConfigError(f"sweep.grid.{key}", f"got {values!r}, expected a non-empty list of values")
        for value in values:
            cfg = load_config(preset, [*overrides, f"{key}={value}"])  # unknown keys / bad values fail here
            if key == "strategy.name":
                create(cfg.strategy.name, cfg.strategy.options)
    return spec
