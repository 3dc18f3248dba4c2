"""Human-readable summaries of generated datasets."""

from __future__ import annotations

from collections import Counter

from datasets import DatasetDict


def summarize(kind: str, ds: DatasetDict) -> str:
    lines = []
    if kind == "robot":
        lines.append(
            f"{'split':<11}{'frames':>8}{'episodes':>10}{'reach':>7}{'push':>6}{'pick_place':>12}{'heldout':>9}"
        )
        for split, d in ds.items():
            cols = d.select_columns(["episode_index", "frame_index", "task", "heldout"]).to_dict()
            starts = [i for i, f in enumerate(cols["frame_index"]) if f == 0]
            tasks = Counter(cols["task"][i] for i in starts)
            heldout = sum(cols["heldout"][i] for i in starts)
            lines.append(
                f"{split:<11}{len(d):>8}{len(starts):>10}{tasks['reach']:>7}{tasks['push']:>6}"
                f"{tasks['pick_place']:>12}{heldout:>9}"
            )
    else:
        qtypes = sorted(set(ds["train"]["qtype"])) if len(ds["train"]) else []
        lines.append(f"{'split':<11}{'samples':>8}" + "".join(f"{q:>10}" for q in qtypes) + f"{'heldout':>9}")
        for split, d in ds.items():
            cols = d.select_columns(["qtype", "heldout"]).to_dict()
            counts = Counter(cols["qtype"])
            lines.append(
                f"{split:<11}{len(d):>8}"
                + "".join(f"{counts[q]:>10}" for q in qtypes)
                + f"{sum(cols['heldout']):>9}"
            )
    return "\n".join(lines)
