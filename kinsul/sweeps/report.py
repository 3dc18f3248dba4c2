"""`kinsul report PRESET`: one table, rows = strategies, mean ± std over seeds, read back from MLflow."""

from __future__ import annotations

import csv
import math
import statistics
from pathlib import Path

from mlflow.tracking import MlflowClient

from kinsul.config.loader import load_config
from kinsul.sweeps.run import SWEEP_TAG, study_name

COLUMNS = [
    ("speed/steps_to_target", "steps to target"),
    ("val/action_mse", "action mse"),
    ("eval/success", "success"),
    ("eval/success_heldout", "success held-out"),
    ("eval/language_following", "language following"),
    ("eval/retention", "retention"),
    ("speed/chunk_ms_flow", "chunk ms flow"),
    ("speed/chunk_ms_fast", "chunk ms FAST"),
]


def _fmt(values: list[float]) -> str:
    values = [v for v in values if v is not None and not math.isnan(v)]
    if not values:
        return "–"
    mean = statistics.fmean(values)
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{mean:.3g} ± {std:.2g}"


def collect(preset: str, overrides: list[str] = ()) -> dict[str, list[dict[str, float]]]:
    """Finished child runs of the sweep, grouped by strategy: {strategy: [metrics of each seed]}."""
    cfg = load_config(preset, list(overrides))
    client = MlflowClient(tracking_uri=cfg.tracking.uri)
    exp = client.get_experiment_by_name(cfg.tracking.experiment)
    if exp is None:
        return {}
    runs = client.search_runs([exp.experiment_id],
                              f"tags.`{SWEEP_TAG}` = '{study_name(preset)}' and attributes.status = 'FINISHED'")  # fmt: skip
    rows: dict[str, list[dict[str, float]]] = {}
    for run in runs:
        if run.data.tags.get("kinsul.role") == "parent":
            continue
        rows.setdefault(run.data.tags.get("strategy", "?"), []).append(run.data.metrics)
    return rows


def report(preset: str, overrides: list[str] = (), out_dir: str | Path | None = None) -> str:
    rows = collect(preset, overrides)
    header = ["strategy", "seeds", *(label for _, label in COLUMNS)]
    table = [
        [s, str(len(ms)), *(_fmt([m.get(key) for m in ms]) for key, _ in COLUMNS)]
        for s, ms in sorted(rows.items())
    ]
    md = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    md += ["| " + " | ".join(r) + " |" for r in table]
    text = "\n".join(md)
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / "report.md").write_text(text + "\n")
        with open(out / "report.csv", "w", newline="") as f:
            csv.writer(f).writerows([header, *table])
    return text
