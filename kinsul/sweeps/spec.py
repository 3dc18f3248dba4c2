"""A sweep preset is a run preset (ablations/NAME.yaml) with a `sweep:` section: either a grid over config keys
(Optuna's GridSampler, every point once) or a search over ranges (TPE, `n_trials` trials), the objective, optional
pruning on validation, and where the study lives."""

from __future__ import annotations

import itertools
import json
import re
from dataclasses import dataclass, field
from typing import Any

import optuna
from omegaconf import OmegaConf

from kinsul.config.loader import is_preset_file, load_config, preset_path, relative_to_preset
from kinsul.fields import ConfigError, FieldValueError, check_choice, check_range

PRUNE_METRIC = "val/velocity_mse"  # what the pruner compares between trials (lower is better; grounded)
# the grid parameter that names one of `sweep.variants` (Optuna stores the name, not the mapping)
VARIANT = "variant"
GRID_VALUE = "a number, text, true/false or null (an Optuna categorical value)"
NAME = re.compile(r"[A-Za-z0-9][\w.+=,@-]*")  # a variant name becomes part of a run (folder) name


def flatten(mapping: dict, prefix: str = "") -> dict[str, Any]:
    """{strategy: {name: topk, options: {k: 1}}} and {strategy.name: topk, strategy.options.k: 1} alike, as
    dotted config keys."""
    out: dict[str, Any] = {}
    for key, value in mapping.items():
        full = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flatten(value, f"{full}."))
        else:
            out[full] = value
    return out


def override(key: str, value: Any) -> str:
    """A config override `key=value` that parses back to ``value`` (a list or mapping as YAML flow style)."""
    if isinstance(value, list | dict):
        return f"{key}={json.dumps(value)}"  # JSON is YAML flow style
    return f"{key}={'null' if value is None else value}"


@dataclass
class SearchDim:
    """One searched config value: a range (`low`, `high`, optional `log`, `int`) or a list of `choices`."""

    low: float | None = None
    high: float | None = None
    log: bool = False  # sample the range on a log scale (learning rates)
    int: bool = False  # integer values
    choices: list[Any] | None = None

    def __post_init__(self) -> None:
        if self.choices is not None:
            if (
                self.low is not None
                or self.high is not None
                or not isinstance(self.choices, list)
                or not self.choices
            ):
                raise FieldValueError("choices", self.choices, "a non-empty list, without low/high")
            return
        if self.low is None or self.high is None or not self.low < self.high:
            raise FieldValueError("low/high", (self.low, self.high), "both set, low < high (or `choices`)")
        if self.log and self.low <= 0:
            raise FieldValueError("low", self.low, "> 0 with log: true")

    def suggest(self, trial: optuna.Trial, key: str) -> Any:
        if self.choices is not None:
            return trial.suggest_categorical(key, self.choices)
        if self.int:
            return trial.suggest_int(key, int(self.low), int(self.high), log=self.log)
        return trial.suggest_float(key, float(self.low), float(self.high), log=self.log)

    def extremes(self) -> list[Any]:
        """Values that must all build a valid config (checked before any trial runs)."""
        if self.choices is not None:
            return list(self.choices)
        cast = int if self.int else float
        return [cast(self.low), cast(self.high)]


def check_storage(url: str) -> None:
    """An Optuna RDB URL whose database driver is installed: fail at load, naming what to install."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    expected = (
        "an Optuna RDB URL: sqlite:///optuna.db, or postgresql+psycopg://user:pass@host/db for many machines"
    )
    try:
        dialect = make_url(url).get_dialect()
    except (ArgumentError, NoSuchModuleError, ValueError):
        raise FieldValueError("storage", url, expected) from None
    try:
        dialect.import_dbapi()
    except ImportError as e:
        package = {"psycopg": "'kinsul[postgres]'", "psycopg2": "psycopg2-binary", "pymysql": "pymysql",
                   "MySQLdb": "mysqlclient"}.get(e.name, e.name)  # fmt: skip
        raise FieldValueError("storage", url, f"{expected}; its database driver is not installed "
                              f"(pip install {package})") from None  # fmt: skip


@dataclass
class SweepSpec:
    grid: dict[str, list[Any]] = field(default_factory=dict)  # config key -> values (full product)
    # Named settings, each a mapping of config keys (e.g. a strategy with its own options: {strategy.name: topk,
    # strategy.options.k: 1}); the grid crosses them with `grid` (e.g. seeds). A row and a run name per variant.
    variants: dict[str, dict[str, Any]] = field(default_factory=dict)
    search: dict[str, SearchDim] = field(default_factory=dict)  # config key -> range or choices (TPE)
    n_trials: int = 0  # search only: trials to complete (pruned ones count)
    startup_trials: int = 5  # search only: random trials before TPE models the objective
    objective: str = "eval/success"  # trial value: a metric of `kinsul eval`
    direction: str = "maximize"
    pruner: str = "none"  # none | median: stop a trial whose val/velocity_mse is worse than the median so far
    prune_warmup_steps: int = 0  # no pruning before this training step
    storage: str = "sqlite:///optuna.db"  # any Optuna RDB URL; share it between workers to split the work
    heartbeat_s: int = 30  # a RUNNING trial without a heartbeat for 2x this long is failed on --resume
    evaluate: bool = True  # run `kinsul eval` on every trial (the objective needs it)
    # Rows of other sweeps in the same stores that the report shows beside this one's, {preset: [row label]}:
    # settings already run there (a continuum's end points are the paper sweep's strategies) are not re-run.
    reference: dict[str, list[str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_choice("direction", self.direction, ["maximize", "minimize"])
        check_choice("pruner", self.pruner, ["none", "median"])
        check_range("heartbeat_s", self.heartbeat_s, 1, 86_400)
        check_range("startup_trials", self.startup_trials, 0, 100_000)
        check_range("prune_warmup_steps", self.prune_warmup_steps, 0, 10_000_000)
        if bool(self.grid or self.variants) == bool(self.search):
            raise FieldValueError("grid/search", (self.grid, self.search), "exactly one of `grid` and/or `variants` "
                                  "(values to cross) or `search` (ranges for TPE)")  # fmt: skip
        self._check_grid()
        if self.search:
            check_range("n_trials", self.n_trials, 1, 1_000_000)
        check_storage(self.storage)
        for preset, rows in self.reference.items():
            preset_path(preset)  # an unknown preset fails here, naming the known ones
            if not isinstance(rows, list) or not rows or not all(isinstance(r, str) for r in rows):
                raise FieldValueError(f"reference.{preset}", rows, "a non-empty list of that sweep's row labels "
                                      "(e.g. [ki] or [naive, frozen])")  # fmt: skip
        if self.pruner != "none" and self.direction != "minimize":
            # Optuna's pruners rank intermediate values in the study's direction; ours are val/velocity_mse.
            raise FieldValueError("pruner", self.pruner,
                                  f"'none' unless direction is 'minimize' (the pruner compares {PRUNE_METRIC})")  # fmt: skip

    def _check_grid(self) -> None:
        """What Optuna's grid can hold, refused up front: each value a categorical, each variant a named mapping
        of config keys that no grid key sets again."""
        if VARIANT in self.grid:
            raise FieldValueError(f"grid.{VARIANT}", self.grid[VARIANT], "no grid key named 'variant': list named "
                                  "settings under sweep.variants")  # fmt: skip
        for key, values in self.grid.items():
            if not isinstance(values, list) or not values:
                raise FieldValueError(f"grid.{key}", values, "a non-empty list of values")
            for value in values:
                if not isinstance(value, bool | int | float | str | None):
                    raise FieldValueError(f"grid.{key}", value, f"{GRID_VALUE}; to sweep settings of several "
                                          "keys together (a strategy with its own options), name each under "
                                          "sweep.variants")  # fmt: skip
        if not isinstance(self.variants, dict):
            raise FieldValueError("variants", self.variants, "a mapping of names to mappings of config keys")
        for name, setting in self.variants.items():
            if not NAME.fullmatch(str(name)):
                raise FieldValueError(f"variants.{name}", name, "a name of letters, digits and . _ - + = , @ "
                                      "(it becomes part of the run names)")  # fmt: skip
            if not isinstance(setting, dict) or not setting:
                raise FieldValueError(f"variants.{name}", setting, "a non-empty mapping of config keys to values, "
                                      "e.g. {strategy.name: topk, strategy.options.k: 1}")  # fmt: skip
            for key in flatten(setting):
                if key in self.grid or key.split(".")[0] in self.grid:
                    raise FieldValueError(f"variants.{name}.{key}", setting, f"a key the grid does not also set "
                                          f"(sweep.grid.{key} sets it for every point)")  # fmt: skip

    @property
    def kind(self) -> str:
        return "grid" if self.grid or self.variants else "search"

    def space(self) -> dict[str, list[Any]]:
        """The grid sampler's search space: the variants' names crossed with the grid."""
        return {**({VARIANT: list(self.variants)} if self.variants else {}), **self.grid}

    def points(self) -> list[dict[str, Any]]:
        """Every grid point (empty for a search), as the trial's parameters (a variant by its name)."""
        space = self.space()
        if not space:
            return []
        keys = list(space)
        return [dict(zip(keys, values, strict=True)) for values in itertools.product(*space.values())]

    def overrides(self, params: dict[str, Any]) -> list[str]:
        """A trial's parameters as config overrides: a variant expands to its own keys."""
        out = []
        for key, value in params.items():
            if key == VARIANT:
                out += [override(k, v) for k, v in flatten(self.variants[value]).items()]
            else:
                out.append(override(key, value))
        return out

    def sampler(self, seed: int) -> optuna.samplers.BaseSampler:
        if self.kind == "grid":
            return optuna.samplers.GridSampler(self.space(), seed=seed)
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=self.startup_trials)

    def make_pruner(self) -> optuna.pruners.BasePruner:
        if self.pruner == "median":
            return optuna.pruners.MedianPruner(n_startup_trials=1, n_warmup_steps=self.prune_warmup_steps)
        return optuna.pruners.NopPruner()

    def suggest(self, trial: optuna.Trial) -> dict[str, Any]:
        if self.kind == "grid":
            return {k: trial.suggest_categorical(k, v) for k, v in self.space().items()}
        return {k: dim.suggest(trial, k) for k, dim in self.search.items()}


def split_overrides(overrides) -> tuple[list[str], list[str]]:
    """(run overrides, `sweep.*` overrides): the second set the sweep's own section, the first every trial."""
    run = [o for o in overrides if not o.startswith("sweep.")]
    return run, [o for o in overrides if o.startswith("sweep.")]


def _sweep_section(preset: str, seen: tuple[str, ...] = ()) -> dict | None:
    """The preset's `sweep:` section over its `base:` preset's (a preset that only changes the data or the model
    of another sweep keeps that sweep's grid)."""
    path = preset_path(preset)
    raw = OmegaConf.to_container(OmegaConf.load(path))
    section, base = raw.get("sweep"), raw.get("base")
    if isinstance(section, dict) and isinstance(section.get("reference"), dict):
        # another sweep's preset file, named as a path: from this preset's folder (see PRESET_RELATIVE)
        section["reference"] = {relative_to_preset(path, str(k)) if is_preset_file(str(k)) else k: v
                                for k, v in section["reference"].items()}  # fmt: skip
    if base is not None and is_preset_file(str(base)):
        base = relative_to_preset(path, str(base))
    chain = (*seen, str(path.resolve()))
    if base is None or str(preset_path(str(base)).resolve()) in chain:
        return section
    inherited = _sweep_section(str(base), chain)
    if not isinstance(inherited, dict):
        return section
    if not isinstance(section, dict):
        return inherited
    return OmegaConf.to_container(OmegaConf.merge(inherited, section))


def load_sweep(preset: str, overrides: list[str] = (), fits: bool = False) -> SweepSpec:
    """Read the `sweep:` section (with `sweep.*` overrides applied) and check every value it may set builds a
    valid config, before any trial runs; with ``fits`` (a sweep about to run, or its dry run), also that each
    distinct strategy, options and model fits its model (`check_strategy_fits`), so a point that does not stops
    the sweep here, named, instead of failing its trials while the others train."""
    overrides, sweep_overrides = split_overrides(overrides)
    section = _sweep_section(preset)
    if not isinstance(section, dict):
        raise ConfigError(
            "sweep", f"preset '{preset}' has no `sweep:` section (grid or search, objective, ...)"
        )
    if sweep_overrides:
        try:
            merged = OmegaConf.merge(
                OmegaConf.create({"sweep": section}), OmegaConf.from_dotlist(sweep_overrides)
            )
        except Exception as e:
            raise ConfigError("sweep", f"bad override in {sweep_overrides}: {e}") from None
        section = OmegaConf.to_container(merged)["sweep"]
    section = dict(section)
    search = section.pop("search", None) or {}
    if not isinstance(search, dict):
        raise ConfigError("sweep.search", f"got {search!r}, expected a mapping of config keys to ranges")
    dims = {}
    for key, dim in search.items():
        try:
            dims[key] = SearchDim(**dim) if isinstance(dim, dict) else SearchDim(choices=dim)
        except TypeError as e:
            raise ConfigError(
                f"sweep.search.{key}", f"{e}; valid keys: {list(SearchDim.__dataclass_fields__)}"
            ) from None
        except FieldValueError as e:
            raise ConfigError(
                f"sweep.search.{key}.{e.field}", f"got {e.value!r}, expected {e.expected}"
            ) from None
    try:
        spec = SweepSpec(**section, search=dims)
    except TypeError as e:
        raise ConfigError("sweep", f"{e}; valid keys: {list(SweepSpec.__dataclass_fields__)}") from None
    except FieldValueError as e:
        raise ConfigError(f"sweep.{e.field}", f"got {e.value!r}, expected {e.expected}") from None
    fitted = set() if fits else None
    for point in spec.points():  # each grid point as a whole: a value may only fit beside the point's others
        _check_point(preset, overrides, spec, point, fitted)
    for key, dim in spec.search.items():
        for value in dim.extremes():
            _check_point(preset, overrides, spec, {key: value}, fitted)
    base = load_config(preset, list(overrides))
    if spec.objective.split("/")[0] not in ("eval", "val", "speed"):
        raise ConfigError("sweep.objective", f"got '{spec.objective}', expected a metric of `kinsul eval` "
                                             "(eval/..., val/... or speed/...)")  # fmt: skip
    if spec.evaluate is False and spec.objective != PRUNE_METRIC:
        raise ConfigError("sweep.objective", f"'{spec.objective}' needs evaluate: true (only {PRUNE_METRIC} comes "
                                             "from training)")  # fmt: skip
    if spec.pruner != "none" and base.trainer.val_every >= base.trainer.max_steps:
        raise ConfigError("trainer.val_every", f"{base.trainer.val_every} >= trainer.max_steps: pruning needs "
                                               "validations during training")  # fmt: skip
    return spec


def _check_point(
    preset: str, overrides: list[str], spec: SweepSpec, point: dict[str, Any], fitted: set[str] | None
) -> None:
    """The config a trial with these parameters would build, built now (unknown keys, bad values, a strategy's
    options fail here), the error naming the point; with ``fitted`` (the models already checked), the strategy
    also fitted to the point's model on the meta device."""
    where = ", ".join(f"{k}={v}" for k, v in point.items())
    try:
        cfg = load_config(preset, [*overrides, *spec.overrides(point)])
    except ConfigError as e:
        raise ConfigError(e.key, f"{e.message} (at grid point {where})") from None
    # what the fit depends on: points that differ only in seed, budget or evaluation share one check
    what = repr((cfg.strategy, cfg.model, cfg.data))
    if fitted is None or what in fitted:
        return
    fitted.add(what)
    from kinsul.strategies.base import StrategyError
    from kinsul.training.module import check_strategy_fits

    try:
        check_strategy_fits(cfg)
    except StrategyError as e:
        raise StrategyError(f"{e} (at point {where}; no trial was started)") from None
    except ConfigError as e:
        raise ConfigError(e.key, f"{e.message} (at grid point {where})") from None
