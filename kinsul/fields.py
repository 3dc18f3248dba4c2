"""What every config section is built from: errors that name the key, the value and what was expected, range
and choice checks, and the stable hash that keys generated artefacts. A leaf: components validate their own
sections with it without importing the root configuration."""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import numbers
from collections.abc import Iterable
from typing import Any


class ConfigError(ValueError):
    """A configuration problem, found before any work starts."""

    def __init__(self, key: str, message: str):
        self.key, self.message = key, message
        super().__init__(f"config key '{key}': {message}")


class FieldValueError(ValueError):
    """Raised by a dataclass ``__post_init__``; the loader prefixes the full key path."""

    def __init__(self, field: str, value: Any, expected: str):
        self.field, self.value, self.expected = field, value, expected
        super().__init__(f"{field}={value!r}: expected {expected}")


def nearest(name: str, candidates: Iterable[str]) -> str | None:
    matches = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.5)
    return matches[0] if matches else None


def unknown_name_message(kind: str, name: str, known: Iterable[str]) -> str:
    known = sorted(known)
    hint = nearest(name, known)
    suggestion = f"; did you mean '{hint}'?" if hint else ""
    return f"unknown {kind} '{name}'{suggestion} (known: {', '.join(known)})"


def check_range(field: str, value: float, lo: float | None = None, hi: float | None = None) -> None:
    # written so that NaN, which compares false with everything, fails it; a string ('nan' in a free-form
    # mapping such as strategy.options) or a bool is not a number
    if not isinstance(value, numbers.Real) or isinstance(value, bool):
        raise FieldValueError(field, value, "a number")
    if not ((lo is None or value >= lo) and (hi is None or value <= hi)):
        lo_s = "-inf" if lo is None else lo
        hi_s = "inf" if hi is None else hi
        raise FieldValueError(field, value, f"a value in [{lo_s}, {hi_s}]")


def check_choice(field: str, value: Any, choices: Iterable[Any]) -> None:
    choices = list(choices)
    if value not in choices:
        hint = nearest(str(value), [str(c) for c in choices])
        extra = f" (nearest: '{hint}')" if hint else ""
        raise FieldValueError(field, value, f"one of {choices}{extra}")


def config_hash(*parts: Any, length: int = 12) -> str:
    """A stable hash of dataclass configs (and plain values): the cache key of generated artefacts."""
    payload = [dataclasses.asdict(p) if dataclasses.is_dataclass(p) else p for p in parts]
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:length]
