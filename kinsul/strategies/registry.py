"""Strategies are found through the ``kinsul.strategies`` entry-point group, built-ins included."""

from __future__ import annotations

from importlib.metadata import EntryPoint
from typing import Any

from kinsul.fields import ConfigError, FieldValueError, unknown_name_message
from kinsul.strategies.base import Strategy, StrategyError, validate
from kinsul.strategies.plugins import PluginConflictError, lookup, plain_names

GROUP = "kinsul.strategies"


def available() -> dict[str, EntryPoint]:
    """Registered strategies by plain name (a name two packages claim is left out: see ``plugins``)."""
    return plain_names(GROUP)


def builtins() -> list[str]:
    """The strategies kinsul itself ships (entry points into kinsul.strategies.builtin), in registration order."""
    return [name for name, ep in available().items() if ep.value.startswith("kinsul.strategies.builtin:")]


def create(name: str, options: dict[str, Any] | None = None) -> Strategy:
    ep = available().get(name)
    if ep is None:  # a qualified name (package:name), or a plain name two packages claim (refused)
        try:
            ep = lookup(GROUP, "strategy", "strategy.name", name)
        except PluginConflictError as e:
            raise ConfigError("strategy.name", str(e)) from None
    if ep is None:
        raise ConfigError("strategy.name", unknown_name_message("strategy", name, available()))
    source = f"strategy '{name}' (entry point {ep.value})"
    try:
        factory = ep.load()
    except (Exception, SystemExit) as e:  # a plugin that raises or exits on import: named, not a traceback
        raise StrategyError(f"{source} could not be imported: {type(e).__name__}: {e}") from e
    if not callable(factory):
        raise StrategyError(f"{source} is not callable: expected a factory (options: dict) -> Strategy")
    try:
        strategy = factory(dict(options or {}))
    except FieldValueError as e:
        key = e.field.removeprefix("options.")  # every factory argument is one of strategy.options
        raise ConfigError(f"strategy.options.{key}", f"got {e.value!r}, expected {e.expected}") from None
    except Exception as e:  # a plugin's own bug: name the plugin and where it lives, not a traceback
        raise StrategyError(f"{source} failed to build with options {dict(options or {})}: "
                            f"{type(e).__name__}: {e}") from e  # fmt: skip
    return validate(strategy, source)
