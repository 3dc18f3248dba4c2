"""`kinsul report PRESET`: one table, rows = strategies, mean ± std over seeds, read back from MLflow with its
client; plots next to it; for a search, the trials ranked by the objective (from the Optuna study)."""

from __future__ import annotations

import csv
import json
import math
import statistics
from pathlib import Path

import optuna
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState
from scipy import stats

from kinsul import tracking
from kinsul.config.loader import load_config
from kinsul.config.schema import KinsulConfig
from kinsul.evaluation.environments import environment
from kinsul.runs.pretrained import vlm_name
from kinsul.sweeps.plots import TrialRun, all_plots, by_vlm, domain_gap, pooled_success
from kinsul.sweeps.run import SWEEP_TAG, storage, study_name
from kinsul.sweeps.spec import PRUNE_METRIC, VARIANT, SweepSpec, load_sweep, split_overrides

# the domain-gap bench's records (x axis of the gap figure): the sweep folder's, then the code checkout's
GAP_RECORDS = (Path("docs/benchmarks.json"), Path(__file__).resolve().parents[2] / "docs" / "benchmarks.json")

COLUMNS = [
    ("speed/steps_to_success", "steps to success"),
    ("speed/frames_to_success", "robot frames to success"),
    ("speed/seconds_to_success", "train s to success"),
    ("val/velocity_mse", "velocity mse"),
    ("eval/success", "success"),
    ("eval/success_heldout", "success held-out"),
    ("eval/language_following", "language following"),
    ("eval/retention", "retention"),
    ("time/trial_min", "min per trial"),  # training + evaluation wall time (each phase: time/* in MLflow)
]
# Chunk latency is not a column: one timing per trial is noise on a shared CPU. `kinsul bench chunk_latency`
# times both decodings interleaved (docs/benchmarks.md).


def columns(families: list[str]) -> list[tuple[str, str]]:
    """COLUMNS with the success of each headline family after the headline success (its mean)."""
    at = next(i for i, (key, _) in enumerate(COLUMNS) if key == "eval/success") + 1
    per_family = [(f"eval/success_{f}", f"success {f}") for f in families]
    return [*COLUMNS[:at], *per_family, *COLUMNS[at:]]


def _fmt(values: list[float | None], key: str = "") -> str:
    """Mean ± std over the trials that have the metric. A speed column (to the success target) is missing for a
    trial that never reached the target: it says how many of the row's trials did, e.g. "1.5e+03 ± 0 (1/3)"."""
    runs = len(values)
    values = [v for v in values if v is not None and not math.isnan(v)]
    if not values:
        return "–"
    mean = statistics.fmean(values)
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    reached = f" ({len(values)}/{runs})" if key.startswith("speed/") and len(values) < runs else ""
    return f"{mean:.3g} ± {std:.2g}{reached}"


def _history(client: MlflowClient, run_id: str, key: str) -> list[tuple[int, float]]:
    """``key`` per step as training logged it. `kinsul eval` logs its metrics afterwards (eval/retention among
    them, which training never logs), at the checkpoint's step: points from then on are not training's."""
    evaluated = [m.timestamp for m in client.get_metric_history(run_id, "eval/retention")]
    cutoff = min(evaluated) if evaluated else float("inf")
    points: dict[int, float] = {}
    for m in sorted(client.get_metric_history(run_id, key), key=lambda m: m.timestamp):
        if m.timestamp < cutoff:
            points.setdefault(m.step, m.value)
    return sorted(points.items())


def _final_metrics(client: MlflowClient, run) -> dict[str, float]:
    """The run's metrics as its final evaluation left them. MLflow's summary value of a key is the one at the
    highest step, and the success curve logs eval/success (and per family) up to the last training step. `kinsul
    eval` now logs at that step too, but runs evaluated before 91dae37 logged at the best checkpoint's (often
    earlier) step, so for those keys the last-logged value is taken: the evaluation's, in either case."""
    metrics = dict(run.data.metrics)
    if "time/train_total_s" in metrics:  # runs from before the phase timers have none
        metrics["time/trial_min"] = (
            metrics["time/train_total_s"] + metrics.get("time/eval_total_s", 0.0)
        ) / 60
    for key in list(metrics):
        if key.startswith("eval/success") and not key.endswith("_n"):
            history = client.get_metric_history(run.info.run_id, key)
            metrics[key] = max(history, key=lambda m: (m.timestamp, m.step)).value
    return metrics


def _pooled_ci(runs: list[TrialRun], episodes: bool = True, key: str = "eval/success") -> str:
    """An episode rate (``key``) over every episode of a row's trials, with its 95 % Wilson interval (and how many
    episodes)."""
    pooled = pooled_success(runs, key)
    if pooled is None:
        return "–"
    p, lo, hi, n = pooled
    return f"{p:.2f} [{lo:.2f}, {hi:.2f}]" + (f" (n={n})" if episodes else "")


def _seeds_ci(values: list[float | None], floor: float = 0.0, fmt: str = ".2f") -> str:
    """Mean over a row's seeds with its 95 % Student-t interval: for a per-trial number that is not a count of
    episodes (retention, steps to the target), so the seeds are the samples; the interval stops at ``floor``,
    below which the number cannot go (a retention is >= 0). One seed: its value, no interval."""
    values = [v for v in values if v is not None and not math.isnan(v)]
    if not values:
        return "–"
    mean = statistics.fmean(values)
    if len(values) == 1:
        return f"{mean:{fmt}}"
    half = stats.t.ppf(0.975, len(values) - 1) * statistics.stdev(values) / math.sqrt(len(values))
    return f"{mean:{fmt}} [{max(mean - half, floor):{fmt}}, {mean + half:{fmt}}]"


def _at_target(runs: list[TrialRun], key: str) -> str:
    """How many of a row's seeds reached the success target within the budget, and the mean over those of
    ``key`` (steps or robot frames to it) with its t interval: "2/3: 1,625 [...]". A seed that never reached it
    has no such number, so the interval is over the seeds that did, and the count says how many."""
    if not runs:
        return "–"
    reached = [r.metrics[key] for r in runs if key in r.metrics]
    return f"{len(reached)}/{len(runs)}" + (f": {_seeds_ci(reached, fmt=',.0f')}" if reached else "")


def side_by_side(groups: dict[str, list[TrialRun]], errors: dict[str, float]) -> str:
    """The regimes side by side: a column group per VLM (titled with its K/V location error where measured, and
    the sweeps its runs came from), a row per setting; per VLM its seeds, success, held-out success and language
    following pooled over episodes with their Wilson intervals, retention over seeds with its t interval, and
    the seeds that reached the success target with the steps and robot frames it took them (`_at_target`)."""
    regimes = by_vlm(groups, errors)
    names = sorted({row for rows in regimes.values() for row in rows})
    header = ["setting"]
    for vlm, rows in regimes.items():
        sweeps = ", ".join(dict.fromkeys(r.sweep for runs in rows.values() for r in runs if r.sweep))
        where = "; ".join(
            ([f"K/V error {errors[vlm]:.3f}"] if vlm in errors else []) + ([sweeps] if sweeps else [])
        )
        header += [f"{vlm or '?'} ({where}): seeds" if where else f"{vlm or '?'}: seeds", "success, 95% CI",
                   "held-out", "language following", "retention", "at target: steps", "robot frames"]  # fmt: skip
    table = []
    for name in names:
        cells = [name]
        for rows in regimes.values():
            runs = rows.get(name, [])
            # a VLM without this setting: dashes (as _pooled_ci and _seeds_ci give for no runs)
            cells += [str(len(runs)) if runs else "–",
                      *(_pooled_ci(runs, False, key) for key in ("eval/success", "eval/success_heldout",
                                                                 "eval/language_following")),
                      _seeds_ci([r.metrics.get("eval/retention") for r in runs]),
                      _at_target(runs, "speed/steps_to_success"), _at_target(runs, "speed/frames_to_success")]  # fmt: skip
        table.append(cells)
    title = "The regimes side by side (a column group per VLM, a row per setting):"
    return f"{title}\n\n{_markdown(header, table)}"


def group_keys(spec: SweepSpec) -> list[str]:
    """The swept keys besides strategy (or variant) and seed: a row per combination (e.g.
    strategy.options.kv_alpha)."""
    named = ("seed",) if spec.variants else ("strategy.name", "seed")
    return [k for k in spec.grid if k not in named]


def collect(preset: str, cfg: KinsulConfig, spec: SweepSpec) -> dict[str, list[TrialRun]]:
    """Finished child runs of the sweep ``preset``, read from the store ``cfg.tracking`` names (the reporting
    sweep's: a reference sweep's runs are read from the same folder), grouped by strategy and every other swept key
    except the seed: {row label: [one TrialRun per seed/trial]}. A sweep with none fails, saying so."""
    keys = group_keys(spec)
    # runs logged before the `kinsul.vlm` tag existed started from their own preset's VLM (not swept then): the
    # preset's, not the reporting sweep's, which may be another regime
    own = load_config(preset)
    untagged_vlm = own.model.pretrained_path or vlm_name(own)
    missing = FileNotFoundError(f"sweep '{study_name(preset)}' has no finished trials in {cfg.tracking.uri}: run "
                                f"`kinsul sweep {preset}` first, from the folder that holds its stores")  # fmt: skip
    db = cfg.tracking.uri.removeprefix("sqlite:///")
    if db != cfg.tracking.uri and not Path(db).is_file():  # reading must not create an empty store
        raise missing
    client = tracking.client(cfg.tracking.uri)
    exp = client.get_experiment_by_name(cfg.tracking.experiment)
    if exp is None:
        raise missing
    query = f"tags.`{SWEEP_TAG}` = '{study_name(preset)}' and attributes.status = 'FINISHED'"
    groups: dict[str, list[TrialRun]] = {}
    for run in client.search_runs([exp.experiment_id], query, max_results=10_000):
        if run.data.tags.get("kinsul.role") == "parent":
            continue
        max_steps = int(run.data.params.get("trainer.max_steps", 0))
        run_id = run.info.run_id
        # a variant by its name, otherwise the strategy
        name = run.data.tags.get(f"sweep.{VARIANT}") or run.data.tags.get("strategy", "?")
        label = " ".join([name,
                          *(f"{k.rsplit('.', 1)[-1]}={run.data.params.get(k, '–')}" for k in keys)])  # fmt: skip
        groups.setdefault(label, []).append(
            TrialRun(_final_metrics(client, run), _history(client, run_id, "val/velocity_mse"), max_steps,
                     _history(client, run_id, "eval/success"),
                     run.data.tags.get("kinsul.vlm") or untagged_vlm,
                     setting(run.data.tags.get("strategy", "?"), run.data.params), study_name(preset))
        )  # fmt: skip
    if not groups:
        raise missing
    return dict(sorted(groups.items()))


def setting(strategy: str, params: dict[str, str]) -> str:
    """A run's strategy with the options its config set (`naive backbone_lr_scale=0.01`): what rows of different
    VLMs are compared at. The logger flattens the options into one param each (`strategy.options.<key>`); a
    strategy without any logs `strategy.options` as `{}`."""
    prefix = "strategy.options."
    options = {k.removeprefix(prefix): v for k, v in params.items() if k.startswith(prefix)}
    return " ".join([strategy, *(f"{k}={v}" for k, v in sorted(options.items()))])


def location_errors(paths: tuple[Path, ...] = GAP_RECORDS) -> dict[str, float]:
    """{VLM name: K/V location error} from the recorded `kinsul bench domain_gap` runs: the sweep folder's record
    first, the code checkout's for VLMs it does not name (empty if neither holds one)."""
    errors: dict[str, float] = {}
    for path in paths:
        if path.is_file():
            rows = json.loads(path.read_text()).get("domain_gap", {}).get("table", [])
            errors = {r["vlm"]: r["kv_location_error"] for r in rows} | errors
    return errors


def _markdown(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def trials_table(spec: SweepSpec, preset: str) -> str:
    """A search's trials: completed ones best first, then pruned ones (their value is the validation error
    where they stopped, not comparable with a completed trial's objective), then the rest."""
    study = optuna.load_study(study_name=study_name(preset), storage=storage(spec))
    keys = list(spec.search or spec.space())
    order = {TrialState.COMPLETE: 0, TrialState.PRUNED: 1}
    sign = -1 if spec.direction == "maximize" else 1
    trials = sorted(
        study.trials, key=lambda t: (order.get(t.state, 2), t.value is None, sign * (t.value or 0))
    )

    def value(t) -> str:
        if t.value is None:
            return "–"
        if t.state == TrialState.PRUNED and t.intermediate_values:
            return f"{PRUNE_METRIC} {t.value:.4g} at step {max(t.intermediate_values)}"
        return f"{t.value:.4g}"

    rows = [[str(t.number), t.state.name, *(f"{t.params[k]:.4g}" if isinstance(t.params.get(k), float)
                                             else str(t.params.get(k, "–")) for k in keys), value(t)]
            for t in trials]  # fmt: skip
    return _markdown(["trial", "state", *keys, spec.objective], rows)


def report(preset: str, overrides: list[str] = (), out_dir: str | Path | None = None) -> str:
    """The comparison table (returned); with ``out_dir`` also report.md/.csv and the PNG plots there."""
    spec = load_sweep(preset, list(overrides))
    cfg = load_config(preset, split_overrides(overrides)[0])
    groups = collect(preset, cfg, spec)
    notes = []
    for ref, labels in spec.reference.items():
        try:
            found = collect(ref, cfg, load_sweep(ref))
        except FileNotFoundError:
            found = {}
        for label in labels:
            if label in found:
                groups[f"{label} ({study_name(ref)})"] = found[label]
            else:
                notes.append(f"reference row '{label}' of sweep '{study_name(ref)}': no finished trials in "
                             f"{cfg.tracking.uri} yet (`kinsul sweep {ref}` from this folder)")  # fmt: skip
    search = spec.kind == "search"
    env = environment(cfg)  # the per-task columns: the simulator's headline tasks (none without a simulator)
    cols = columns(env.headline if env else [])
    # a grid averages a strategy over its seeds; a search over its trials (see the trials table for each)
    header = [
        "strategy",
        "trials" if search else "seeds",
        *(label for _, label in cols),
        "success pooled, 95% CI",
    ]
    rows = [[s, str(len(runs)), *(_fmt([r.metrics.get(key) for r in runs], key) for key, _ in cols), _pooled_ci(runs)]
            for s, runs in groups.items()]  # fmt: skip
    text = _markdown(header, rows)
    # each VLM's K/V location error where measured: the regimes' order and the gap figure's x
    errors = location_errors()
    several_vlms = len({r.vlm for runs in groups.values() for r in runs}) > 1
    if several_vlms:
        text += "\n\n" + side_by_side(groups, errors)
    if notes:
        text += "\n\n" + "\n".join(f"- {n}" for n in notes)
    if search:
        text += "\n\n" + trials_table(spec, preset)
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        all_plots(groups, out)
        if domain_gap(groups, errors, out) is None and several_vlms:
            text += ("\n\n- rows of several VLMs, but not two at one setting with a K/V location error in "
                     "docs/benchmarks.json (`kinsul bench domain_gap`): no domain_gap.png")  # fmt: skip
        (out / "report.md").write_text(text + "\n")
        with open(out / "report.csv", "w", newline="") as f:
            csv.writer(f).writerows([header, *rows])
    return text
