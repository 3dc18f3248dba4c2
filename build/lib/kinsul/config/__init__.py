"""Typed configuration: dataclass schemas, YAML presets under ablations/, dot-list overrides.

Component configs import ``kinsul.config.errors`` while the root schema imports the components, so the
loader is imported lazily here to keep that graph acyclic.
"""

from kinsul.config.errors import ConfigError, FieldValueError

_LAZY = {
    "KinsulConfig": "kinsul.config.schema",
    "config_hash": "kinsul.config.loader",
    "known_presets": "kinsul.config.loader",
    "load_config": "kinsul.config.loader",
    "save_config": "kinsul.config.loader",
    "to_yaml": "kinsul.config.loader",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'kinsul.config' has no attribute '{name}'")


__all__ = ["ConfigError", "FieldValueError", *_LAZY]
