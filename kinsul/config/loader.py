"""Defaults (dataclasses) <- preset YAML (ablations/) <- CLI dot-list, validated before any work starts."""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Any, TypeVar

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from kinsul.config.schema import KinsulConfig
from kinsul.fields import ConfigError, FieldValueError, nearest, unknown_name_message

T = TypeVar("T")
# ablations/, linked into the package as kinsul/presets: wheels ship it
PRESET_DIR = Path(__file__).resolve().parents[1] / "presets"


@cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _is_dataclass_type(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def known_presets() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def preset_path(name: str) -> Path:
    path = Path(name)
    if path.suffix in (".yaml", ".yml"):
        if not path.is_file():
            raise ConfigError("preset", f"file '{path}' does not exist: expected a YAML preset file")
        return path
    path = PRESET_DIR / f"{name}.yaml"
    if not path.is_file():
        raise ConfigError("preset", unknown_name_message("preset", name, known_presets()))
    return path


# Input paths a preset may name: relative ones are read from the preset's folder, so a study folder with its
# preset, VLM and data works from any working folder. Outputs (data.root, trainer.runs_dir, tracking.uri,
# sweep.storage) stay relative to the working folder, where `kinsul report` and `kinsul ui` look for them.
PRESET_RELATIVE = ("model.pretrained_path", "data.vqa_path", "data.lerobot.root")


def is_preset_file(name: str) -> bool:
    return Path(name).suffix in (".yaml", ".yml")


def relative_to_preset(preset: Path, value: str) -> str:
    """``value`` (a path written in ``preset``) as a path that works from the working folder."""
    path = Path(value).expanduser()
    return str(path if path.is_absolute() else preset.parent / path)


def _load_preset(name: str, seen: tuple[str, ...] = ()) -> list[DictConfig]:
    """A preset may name a ``base`` preset it refines; returns the layers, base first."""
    path = preset_path(name)
    try:
        layer = OmegaConf.load(path)
    except Exception as e:  # a YAML syntax error: say which file
        raise ConfigError("preset", f"could not parse '{path}' as YAML: {e}") from e
    if not isinstance(layer, DictConfig):
        raise ConfigError(
            "preset", f"'{path}' must hold a mapping of config keys, got {type(layer).__name__}"
        )
    layer.pop("sweep", None)  # a sweep preset's own section; the rest is an ordinary run preset
    for key in PRESET_RELATIVE:
        value = OmegaConf.select(layer, key, default=None)
        if isinstance(value, str):
            OmegaConf.update(layer, key, relative_to_preset(path, value))
    base = layer.pop("base", None)
    if base is not None and is_preset_file(str(base)):
        base = relative_to_preset(path, str(base))
    if base is None:
        return [layer]
    chain = (*seen, str(path.resolve()))  # files, not names: a preset named two ways is one preset
    if str(preset_path(str(base)).resolve()) in chain:
        raise ConfigError("base", f"preset '{name}' inherits from itself through "
                          f"{' -> '.join(Path(p).stem for p in chain)} -> {Path(str(base)).stem}")  # fmt: skip
    return [*_load_preset(str(base), chain), layer]


def _parse_overrides(overrides: Sequence[str]) -> DictConfig:
    for item in overrides:
        if "=" not in item:
            raise ConfigError(item, "an override must look like key.path=value")
    import yaml

    for item in overrides:  # one at a time: the error names the override that does not parse
        try:
            OmegaConf.from_dotlist([item])
        except (OmegaConfBaseException, yaml.YAMLError) as e:
            key, value = item.split("=", 1)
            reason = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise ConfigError(
                key, f"got {value!r}, which does not parse as a YAML value ({reason})"
            ) from None
    return OmegaConf.from_dotlist(list(overrides))


def check_keys(layer: Any, cls: type, path: str = "") -> None:
    """Reject keys the schema does not have, naming the full path and the nearest valid key."""
    if not isinstance(layer, dict | DictConfig):
        return
    hints = _hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    for key in layer:
        full = f"{path}{key}"
        if key not in names:
            hint = nearest(str(key), names)
            suggestion = (
                f"; did you mean '{path}{hint}'?" if hint else f" (valid keys under '{path or '.'}': {names})"
            )
            raise ConfigError(full, f"unknown key{suggestion}")
        if _is_dataclass_type(hints[key]):
            value = layer[key]
            if not isinstance(value, dict | DictConfig):
                fields = [f.name for f in dataclasses.fields(hints[key])]
                raise ConfigError(full, f"got {value!r}, expected a mapping with keys from {fields}")
            check_keys(value, hints[key], f"{full}.")
        elif hints[key] in (str, str | None) and isinstance(layer[key], bool):
            # YAML reads unquoted on/off/yes/no/true/false as booleans; a text field would get "False" silently
            raise ConfigError(full, f"got the YAML boolean {layer[key]!r}, expected text: quote the word "
                              f"(e.g. {full}=\"'off'\")")  # fmt: skip


def _lookup(layers: Sequence[DictConfig], key: str) -> Any:
    value: Any = "?"
    for layer in layers:
        v = OmegaConf.select(layer, key, default="__missing__")
        if v != "__missing__":
            value = v
    return value


def _expected_type(schema: type, key: str) -> str | None:
    tp: Any = schema
    for part in key.split("."):
        if not _is_dataclass_type(tp) or part not in _hints(tp):
            return None
        tp = _hints(tp)[part]
    return getattr(tp, "__name__", None) if isinstance(tp, type) else str(tp)


def build(cls: type[T], data: dict[str, Any], path: str = "") -> T:
    """Instantiate nested dataclasses bottom-up so a ``__post_init__`` error carries its full key path."""
    hints = _hints(cls)
    kwargs = {}
    for f in dataclasses.fields(cls):
        value = data[f.name]
        kwargs[f.name] = (
            build(hints[f.name], value, f"{path}{f.name}.") if _is_dataclass_type(hints[f.name]) else value
        )
    try:
        return cls(**kwargs)
    except FieldValueError as e:
        raise ConfigError(f"{path}{e.field}", f"got {e.value!r}, expected {e.expected}") from None


def load_config(
    preset: str | None = None, overrides: Sequence[str] = (), schema: type[T] = KinsulConfig
) -> T:
    layers = _load_preset(preset) if preset else []
    if overrides:
        layers.append(_parse_overrides(overrides))
    for layer in layers:
        check_keys(layer, schema)
        check_interpolations(layer)
    try:
        merged = OmegaConf.merge(OmegaConf.structured(schema), *layers)
    except OmegaConfBaseException as e:
        key = getattr(e, "full_key", None) or "?"
        expected = _expected_type(schema, key) or str(getattr(e, "msg", e)).splitlines()[0]
        raise ConfigError(key, f"got {_lookup(layers, key)!r}, expected {expected}") from None
    try:
        data = OmegaConf.to_container(merged, resolve=True)
    except OmegaConfBaseException as e:  # ${nosuch.key}: one line naming the key that refers to it
        key = getattr(e, "full_key", None) or "?"
        raise ConfigError(
            key, f"cannot resolve its interpolation: {str(getattr(e, 'msg', e)).splitlines()[0]}"
        ) from None
    return build(schema, data)


ENV_INTERPOLATION = ("oc.env", "env:", "oc.decode")


def check_interpolations(layer: Any, path: str = "") -> None:
    """A config never reads the environment: ``${oc.env:...}`` in a preset or an override is refused, so a
    shared preset cannot pull a machine's secrets into a run's logged parameters. References to other keys
    (``${trainer.lr}``) stay allowed."""
    if isinstance(layer, DictConfig):
        layer = OmegaConf.to_container(layer, resolve=False)
    if not isinstance(layer, dict):
        return
    for key, value in layer.items():
        full = f"{path}{key}"
        if isinstance(value, str) and any(f"${{{k}" in value.replace(" ", "") for k in ENV_INTERPOLATION):
            raise ConfigError(full, f"got {value!r}: environment interpolation is off in kinsul configs; write "
                              "the value itself")  # fmt: skip
        check_interpolations(value, f"{full}.")


def to_yaml(cfg: Any) -> str:
    return OmegaConf.to_yaml(OmegaConf.structured(cfg))


def save_config(cfg: Any, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(to_yaml(cfg))
    return path
