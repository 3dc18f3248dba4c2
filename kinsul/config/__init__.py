"""Typed configuration: dataclass schemas, YAML presets under ablations/, dot-list overrides."""

from kinsul.config.errors import ConfigError, FieldValueError
from kinsul.config.loader import config_hash, known_presets, load_config, save_config, to_yaml
from kinsul.config.schema import KinsulConfig

__all__ = [
    "ConfigError",
    "FieldValueError",
    "KinsulConfig",
    "config_hash",
    "known_presets",
    "load_config",
    "save_config",
    "to_yaml",
]
