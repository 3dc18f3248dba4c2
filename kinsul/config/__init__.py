"""Typed configuration: the root schema composing every component's own section, the run-level sections, YAML
presets under ablations/ and dot-list overrides. Components never import this package: they read the sections
they are given and validate them with `kinsul.fields`."""

from kinsul.config.loader import known_presets, load_config, save_config, to_yaml
from kinsul.config.schema import KinsulConfig
from kinsul.fields import ConfigError, FieldValueError, config_hash

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
