"""Evaluation artifacts: rollout GIFs and a success-by-concept plot, written to the run folder."""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image

from kinsul.evaluation.rollouts import EpisodeResult


def write_gifs(results: list[EpisodeResult], out: Path, scale: int = 4) -> list[Path]:
    paths = []
    for k, r in enumerate(x for x in results if x.frames):
        frames = [
            Image.fromarray(f).resize((f.shape[1] * scale, f.shape[0] * scale), Image.NEAREST)
            for f in r.frames
        ]
        path = out / f"rollout_{k}_{r.spec.task}_{'success' if r.success else 'fail'}.gif"
        frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, loop=0)
        paths.append(path)
    return paths


def success_plot(rates: dict[str, dict], tasks: list[str], out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.2))
    width = 0.38
    for j, (prefix, label) in enumerate(
        (("eval/success", "seen concepts"), ("eval/success_heldout", "held-out"))
    ):
        vals = [rates.get(f"{prefix}_{t}", {"value": 0.0, "ci95": (0.0, 0.0)}) for t in tasks]
        xs = [i + (j - 0.5) * width for i in range(len(tasks))]
        err = [[v["value"] - v["ci95"][0] for v in vals], [v["ci95"][1] - v["value"] for v in vals]]
        ax.bar(xs, [v["value"] for v in vals], width, yerr=err, capsize=3, label=label)
    ax.set_xticks(range(len(tasks)), tasks)
    ax.set_ylim(0, 1)
    ax.set_ylabel("success rate (95% CI)")
    lf = rates.get("eval/language_following")
    title = f"language following {lf['value']:.2f} (n={lf['n']})" if lf else ""
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    path = out / "success_by_concept.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def write_metrics(metrics: dict[str, float], out: Path) -> Path:
    path = out / "metrics.json"
    path.write_text(json.dumps(metrics, indent=2, sort_keys=True))
    return path
