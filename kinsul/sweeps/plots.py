"""The sweep report's figures (PNG, matplotlib Agg): learning curves, retention, success seen vs held-out, and
training speed against knowledge retention. Each takes the finished trials grouped by strategy."""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib

from kinsul.evaluation.rollouts import wilson

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


@dataclass
class TrialRun:
    """One finished trial as read back from MLflow."""

    metrics: dict[str, float]
    curve: list[tuple[int, float]] = field(default_factory=list)  # (step, val/velocity_mse) during training
    max_steps: int = 0
    success_curve: list[tuple[int, float]] = field(
        default_factory=list
    )  # (step, eval/success) during training
    vlm: str = ""  # the pretrained VLM it started from (its name, or a folder)
    setting: str = ""  # the strategy and its non-default options that the row's VLMs are compared at
    sweep: str = ""  # the study it ran in: the reported sweep's, or a reference sweep's (another regime's)


def _stats(runs: list[TrialRun], key: str) -> tuple[float, float]:
    vals = [r.metrics[key] for r in runs if key in r.metrics and not math.isnan(r.metrics[key])]
    if not vals:
        return math.nan, 0.0
    return statistics.fmean(vals), statistics.stdev(vals) if len(vals) > 1 else 0.0


def _steps_stats(runs: list[TrialRun]) -> tuple[float, float]:
    """Mean and std over a row's seeds of the steps to the success target; a seed that never reached it counts
    at its budget (the speed is 'more than max_steps')."""
    xs = [r.metrics.get("speed/steps_to_success", r.max_steps) for r in runs]
    return statistics.fmean(xs), statistics.stdev(xs) if len(xs) > 1 else 0.0


def pooled_success(runs: list[TrialRun], key: str = "eval/success") -> tuple[float, float, float, int] | None:
    """(rate, 95 % Wilson low, high, episodes) over every episode of a row's trials behind the episode rate
    ``key`` (headline success; eval/success_heldout, eval/language_following: each logged with its ``_n``); None
    if none."""
    n = sum(r.metrics.get(f"{key}_n", 0) for r in runs)
    if not n:
        return None
    p = sum(r.metrics.get(key, 0) * r.metrics.get(f"{key}_n", 0) for r in runs) / n
    return (p, *wilson(p, int(n)), int(n))


def _colours(strategies: list[str]) -> dict[str, tuple]:
    cmap = plt.get_cmap("tab10")
    return {s: cmap(i % 10) for i, s in enumerate(strategies)}


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _row_name(label: str, runs: list[TrialRun]) -> str:
    """A row's name within its own sweep: the report labels a reference row `naive (paper)`; in `paper` it is
    `naive`."""
    sweep = runs[0].sweep
    return label.removesuffix(f" ({sweep})") if sweep else label


def by_sweep(groups: dict[str, list[TrialRun]]) -> dict[str, dict[str, list[TrialRun]]]:
    """{sweep: {row name: runs}}: the reported sweep's rows first, then each reference sweep's."""
    panels: dict[str, dict[str, list[TrialRun]]] = {}
    for label, runs in groups.items():
        panels.setdefault(runs[0].sweep, {})[_row_name(label, runs)] = runs
    return panels


def _row_colours(groups: dict[str, list[TrialRun]]) -> dict[str, tuple]:
    """{row name: colour}: a strategy's colour is the same in every sweep of the report."""
    return _colours(sorted({_row_name(label, runs) for label, runs in groups.items()}))


def _styles(groups: dict[str, list[TrialRun]]) -> dict[str, tuple[tuple, str]]:
    """{row label: (colour, marker)}: the row's colour (`_row_colours`); the marker tells the sweeps (regimes)
    apart: a circle for the reported sweep's rows, other shapes for reference rows."""
    colours = _row_colours(groups)
    markers = dict(zip(by_sweep(groups), "osD^v<>", strict=False))
    return {label: (colours[_row_name(label, runs)], markers.get(runs[0].sweep, "o"))
            for label, runs in groups.items()}  # fmt: skip


def _panel_title(sweep: str, rows: dict[str, list[TrialRun]]) -> str:
    """The sweep, and the VLM its runs started from when they all started from one (and it is known)."""
    vlms = {run.vlm for runs in rows.values() for run in runs}
    return sweep + (f": VLM {next(iter(vlms))}" if len(vlms) == 1 and "" not in vlms else "")


def _curve_panels(groups: dict[str, list[TrialRun]], attr: str, ylabel: str, title: str, path: Path,
                  ylim: tuple[float, float] | None = None) -> Path:  # fmt: skip
    """One panel per sweep (side by side when the report holds another regime's reference rows), a strategy in
    the same colour in every panel, the y axis shared."""
    panels = by_sweep(groups)
    colours = _row_colours(groups)
    fig, axes = plt.subplots(1, len(panels), figsize=(6.4 * len(panels), 3.8), sharey=True, squeeze=False)
    for ax, (sweep, rows) in zip(axes[0], panels.items(), strict=True):
        _curves(rows, attr, ax, colours)
        ax.set_title(f"{title}\n{_panel_title(sweep, rows)}" if len(panels) > 1 else title, fontsize=10)
    axes[0][0].set_ylabel(ylabel)
    if ylim:
        axes[0][0].set_ylim(*ylim)
    return _save(fig, path)


def _curves(
    groups: dict[str, list[TrialRun]], attr: str, ax, colours: dict[str, tuple] | None = None
) -> None:
    """One line per strategy: the mean over its seeds at the steps they all logged, with a band of one std."""
    colours = colours or _colours(list(groups))
    for strategy, runs in groups.items():
        series = [dict(getattr(run, attr)) for run in runs if getattr(run, attr)]
        if not series:
            continue
        steps = sorted(set.intersection(*(set(s) for s in series)))
        mean = [statistics.fmean(s[k] for s in series) for k in steps]
        label = strategy if len(series) == 1 else f"{strategy} ({len(series)} seeds)"
        ax.plot(steps, mean, marker="o", ms=3, color=colours[strategy], label=label)
        if len(series) > 1:
            std = [statistics.stdev(s[k] for s in series) for k in steps]
            ax.fill_between(steps, [m - d for m, d in zip(mean, std, strict=True)],
                            [m + d for m, d in zip(mean, std, strict=True)], color=colours[strategy],
                            alpha=0.12, lw=0)  # fmt: skip
    ax.set_xlabel("training step")
    ax.legend(fontsize=7, ncol=2)


def learning_curves(groups: dict[str, list[TrialRun]], out: Path) -> Path:
    return _curve_panels(groups, "curve", "val/velocity_mse", "expected-chunk velocity error during training",
                         out / "learning_curves.png")  # fmt: skip


def success_curves(groups: dict[str, list[TrialRun]], out: Path) -> Path:
    """Training speed as the paper plots it: closed-loop success (the fixed curve seed set) against steps."""
    return _curve_panels(groups, "success_curve", "eval/success (curve seed set)",
                         "closed-loop success against training steps", out / "success_curves.png",
                         ylim=(-0.02, 1.02))  # fmt: skip


def _bars(ax, groups, keys_labels, ylabel):
    names = list(groups)
    width = 0.8 / len(keys_labels)
    for j, (key, label) in enumerate(keys_labels):
        stats = [_stats(groups[s], key) for s in names]
        xs = [i + (j - (len(keys_labels) - 1) / 2) * width for i in range(len(names))]
        ax.bar(xs, [0 if math.isnan(m) else m for m, _ in stats], width, yerr=[s for _, s in stats],
               capsize=3, label=label)  # fmt: skip
    ax.set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel(ylabel)


def retention_bars(groups: dict[str, list[TrialRun]], out: Path) -> Path:
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    _bars(ax, groups, [("eval/retention", "retention")], "probe accuracy / pretrained VLM's")
    ax.axhline(1.0, color="grey", lw=0.8, ls="--")
    ax.set_title("knowledge retention (mean ± std over seeds)")
    return _save(fig, out / "retention.png")


def success_bars(groups: dict[str, list[TrialRun]], out: Path) -> Path:
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    _bars(ax, groups, [("eval/success", "seen concepts"), ("eval/success_heldout", "held-out concepts")],
          "closed-loop success rate")  # fmt: skip
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8)
    ax.set_title("success: seen vs held-out targets (mean ± std over seeds)")
    return _save(fig, out / "success.png")


def speed_vs_retention(groups: dict[str, list[TrialRun]], out: Path) -> Path:
    """One point per row (strategy and swept setting): mean +- std over seeds of the steps until closed-loop
    success first reached trainer.success_target (a seed that never reached it counts at its budget: hollow
    marker, the speed is 'more than max_steps') against knowledge retention."""
    styles = _styles(groups)
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    for label, runs in groups.items():
        colour, marker = styles[label]
        x, sx = _steps_stats(runs)
        y, sy = _stats(runs, "eval/retention")
        reached = all("speed/steps_to_success" in r.metrics for r in runs)
        ax.errorbar([x], [y], xerr=[sx], yerr=[sy], fmt=marker, ms=7, capsize=3,
                    color=colour, mfc=colour if reached else "none", label=label)  # fmt: skip
    if not any("speed/steps_to_success" in r.metrics for runs in groups.values() for r in runs):
        ax.text(0.5, 0.5, "no trial reached the success target within its budget:\nsee success_vs_retention.png",
                transform=ax.transAxes, ha="center", va="center", fontsize=9, color="grey")  # fmt: skip
    ax.set_xlabel("steps to target success (hollow: some seed did not reach it within the budget)")
    ax.set_ylabel("knowledge retention")
    ax.set_title("training speed vs retention (mean ± std over seeds)")
    ax.legend(fontsize=7, ncol=2)
    return _save(fig, out / "speed_vs_retention.png")


def by_vlm(
    groups: dict[str, list[TrialRun]], errors: dict[str, float]
) -> dict[str, dict[str, list[TrialRun]]]:
    """{VLM: {row: runs}}: the regimes, whichever sweeps their runs came from. A row is the setting its runs were
    trained with (strategy and options), so `mid-naive` of one sweep and `naive (paper)` of another share the row
    `naive`; settings that two rows of one VLM share keep their own row names. VLMs in order of their K/V
    location error where it is measured (`errors`: the world VLM first), the others after, as they come."""
    cells: dict[tuple[str, str], dict[str, list[TrialRun]]] = {}  # (setting, VLM) -> {row label: runs}
    for label, runs in groups.items():
        for run in runs:
            cells.setdefault((run.setting or label, run.vlm), {}).setdefault(label, []).append(run)
    regimes: dict[str, dict[str, list[TrialRun]]] = {}
    for (name, vlm), rows in cells.items():
        for label, runs in rows.items():
            regimes.setdefault(vlm, {})[name if len(rows) == 1 else label] = runs
    order = sorted(regimes, key=lambda v: errors.get(v, math.inf))  # stable: unmeasured VLMs keep their order
    return {vlm: regimes[vlm] for vlm in order}


def gap_points(groups: dict[str, list[TrialRun]], errors: dict[str, float]) -> dict[str, list[tuple]]:
    """{setting: [(x, runs), ...] by x}: the regimes of `by_vlm` whose VLM has a measured K/V location error
    (x), for the settings measured at two or more of them."""
    by_setting: dict[str, list[tuple]] = {}
    for vlm, rows in by_vlm(groups, errors).items():
        if vlm in errors:
            for name, runs in rows.items():
                by_setting.setdefault(name, []).append((errors[vlm], runs))
    return {s: sorted(p, key=lambda t: t[0]) for s, p in by_setting.items() if len({x for x, _ in p}) > 1}


def _gap_bar(runs: list[TrialRun], key: str) -> tuple[float, float, float] | None:
    """(value, bar below, bar above) of one point of the gap figure: success pooled over the point's episodes
    with its Wilson interval; steps to target (a seed that never reached it counts at its budget) and retention
    as mean +- std over seeds. None if the point has no such number."""
    if key == "eval/success":
        pooled = pooled_success(runs)
        if pooled is None:
            return None
        p, lo, hi, _ = pooled
        return p, p - lo, hi - p
    mean, std = _steps_stats(runs) if key == "speed/steps_to_success" else _stats(runs, key)
    return None if math.isnan(mean) else (mean, std, std)


def domain_gap(groups: dict[str, list[TrialRun]], errors: dict[str, float], out: Path) -> Path | None:
    """Insulation against the domain gap: per setting (a strategy and its options), success at the budget (every
    episode of a point's seeds pooled, with its 95 % Wilson interval, as in the report's tables), steps to the
    success target and knowledge retention (mean +- std over seeds) against how imprecisely the frozen VLM's
    keys/values locate the instructed target on the robot's scenes (`kinsul bench domain_gap`). None when fewer
    than two VLMs share a setting."""
    points = gap_points(groups, errors)
    if not points:
        return None
    colours = _colours(sorted(points))
    fig, axes = plt.subplots(1, 3, figsize=(12.8, 3.8))
    panels = [("eval/success", "success at the budget (95 % interval)"),
              ("speed/steps_to_success", "steps to target success (budget if never)"),
              ("eval/retention", "knowledge retention")]  # fmt: skip
    for ax, (key, title) in zip(axes, panels, strict=True):
        for setting, rows in sorted(points.items()):
            drawn = [(x, bar) for x, runs in rows if (bar := _gap_bar(runs, key)) is not None]
            xs = [x for x, _ in drawn]
            ms, lows, highs = ([bar[i] for _, bar in drawn] for i in range(3))
            seeds = sorted({len(runs) for _, runs in rows})
            span = f"{seeds[0]}" if len(seeds) == 1 else f"{seeds[0]}-{seeds[-1]}"
            ax.errorbar(xs, ms, yerr=[lows, highs], marker="o", ms=5, capsize=3, color=colours[setting],
                        label=f"{setting} ({span} seeds a point)")  # fmt: skip
        ax.set_xlabel("K/V location error of the frozen VLM (table units)")
        ax.set_title(title, fontsize=10)
    axes[0].set_ylim(-0.02, 1.02)
    axes[2].set_ylim(-0.02, 1.1)
    axes[0].legend(fontsize=7)
    fig.suptitle("insulation against the domain gap (left: the world VLM; right: VLMs that know less of the robot's "
                 "scenes)", fontsize=9)  # fmt: skip
    return _save(fig, out / "domain_gap.png")


def success_vs_retention(groups: dict[str, list[TrialRun]], out: Path) -> Path:
    """The trade-off the method is about, at the budget: closed-loop success (every headline episode of a row
    pooled, with its 95 % Wilson interval) against knowledge retention (mean +- std over seeds). Drawn whether
    or not any row reached the success target, so a short sweep still shows what it measured."""
    styles = _styles(groups)
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    for label, runs in groups.items():
        pooled = pooled_success(runs)
        y, sy = _stats(runs, "eval/retention")
        if pooled is None or math.isnan(y):
            continue
        p, lo, hi, n = pooled
        colour, marker = styles[label]
        ax.errorbar([p], [y], xerr=[[p - lo], [hi - p]], yerr=[sy], fmt=marker, ms=7, capsize=3, color=colour,
                    label=f"{label} (n={n})")  # fmt: skip
    ax.set_xlim(-0.02, 1.02)
    ax.set_ylim(-0.02, 1.1)
    ax.set_xlabel("closed-loop success at the budget (95 % interval over its episodes)")
    ax.set_ylabel("knowledge retention")
    ax.set_title("control against retained VLM knowledge")
    ax.legend(fontsize=7, ncol=2)
    return _save(fig, out / "success_vs_retention.png")


def all_plots(groups: dict[str, list[TrialRun]], out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    plots = (
        learning_curves,
        success_curves,
        retention_bars,
        success_bars,
        speed_vs_retention,
        success_vs_retention,
    )
    return [f(groups, out) for f in plots]
