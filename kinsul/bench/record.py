"""Benchmark results live in docs/benchmarks.json; docs/benchmarks.md is rendered from it."""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
from pathlib import Path
from typing import Any

from kinsul.tracking import git_commit


def machine() -> str:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return (
        f"{platform.machine()} {cores} cores, {platform.python_implementation()} {platform.python_version()}"
    )


def record(name: str, result: dict[str, Any], docs: str | Path = "docs") -> dict[str, Any]:
    """Merge one benchmark's result into the JSON (keyed by name) and re-render the markdown page."""
    docs = Path(docs)
    path = docs / "benchmarks.json"
    data = json.loads(path.read_text()) if path.exists() else {}
    result = {
        **result,
        "commit": git_commit(),
        "machine": machine(),
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }
    data[name] = result
    docs.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    (docs / "benchmarks.md").write_text(render(data))
    return result


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:,.3g}" if abs(v) < 100 else f"{v:,.0f}"
    return str(v)


def render(data: dict[str, dict[str, Any]]) -> str:
    lines = [
        "# Benchmarks",
        "",
        "Generated from `benchmarks.json` by `kinsul bench`; do not edit by hand. Each row names the command",
        "that reproduces it. Goals come from the issues; `ok` says whether the measured value meets it.",
        "",
        "| benchmark | value | goal | ok | command | machine | commit | date |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, r in sorted(data.items()):
        value = f"{_fmt(r['value'])} {r.get('unit', '')}".strip()
        ok = {True: "yes", False: "**no**", None: ""}[r.get("ok")]
        lines.append(
            f"| {name} | {value} | {r.get('goal', '')} | {ok} | `{r['command']}` | {r['machine']} "
            f"| {r['commit']} | {r['date']} |"
        )
    details = [(n, r["details"]) for n, r in sorted(data.items()) if r.get("details")]
    if details:
        lines += ["", "## Details", ""]
        for name, d in details:
            lines.append(f"- **{name}**: " + ", ".join(f"{k} = {_fmt(v)}" for k, v in d.items()))
    for name, r in sorted(data.items()):
        rows = r.get("table")
        if rows:
            keys = list(rows[0])
            lines += ["", f"### {name}", "", "| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
            lines += ["| " + " | ".join(_fmt(row[k]) for k in keys) + " |" for row in rows]
    return "\n".join(lines) + "\n"
