"""Human-readable summaries of generated datasets."""

from __future__ import annotations

from collections import Counter

from datasets import DatasetDict


def summarize(kind: str, ds: DatasetDict) -> str:
    lines = []
    if kind == "robot":  # episodes per task, whichever tasks the source has
        starts = {}
        for split, d in ds.items():
            cols = d.select_columns(["frame_index", "task", "heldout"]).to_dict()
            starts[split] = [
                (cols["task"][i], cols["heldout"][i]) for i, f in enumerate(cols["frame_index"]) if f == 0
            ]
        names = sorted({t for firsts in starts.values() for t, _ in firsts})
        lines.append(f"{'split':<11}{'frames':>8}{'episodes':>10}" + "".join(f"{t:>{len(t) + 2}}" for t in names)
                     + f"{'heldout':>9}")  # fmt: skip
        for split, d in ds.items():
            tasks = Counter(t for t, _ in starts[split])
            lines.append(f"{split:<11}{len(d):>8}{len(starts[split]):>10}"
                         + "".join(f"{tasks[t]:>{len(t) + 2}}" for t in names)
                         + f"{sum(h for _, h in starts[split]):>9}")  # fmt: skip
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
