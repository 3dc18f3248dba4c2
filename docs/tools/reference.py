"""Reference pages generated from the code, so they cannot drift: the configuration (every field of the config
dataclasses, its default and the comment beside it in the source) and the CLI (each verb's --help).
Used by the mkdocs hook (docs/tools/hooks.py); `python docs/tools/reference.py docs/reference` writes them by hand.
The pages are committed, so they read in a checkout too; a test keeps them equal to this output."""

from __future__ import annotations

import dataclasses
import inspect
import re
import sys
from pathlib import Path

FIELD = re.compile(r"^\s+(\w+)\s*:[^#]*?(?:#\s*(.*))?$")


def _comments(cls: type) -> dict[str, str]:
    """Field name -> its comment in the class body: comment lines just above the field, then the one on its line."""
    out: dict[str, str] = {}
    names = {f.name for f in dataclasses.fields(cls)}
    above: list[str] = []
    for line in inspect.getsource(cls).splitlines():
        m = FIELD.match(line)
        if m and m.group(1) in names:
            out[m.group(1)] = " ".join([*above, (m.group(2) or "").strip()]).strip()
            above = []
        elif line.strip().startswith("#"):
            above.append(line.strip().lstrip("#").strip())
        else:
            above = []
    return out


def _fmt(value) -> str:
    text = repr(value) if not isinstance(value, str) else f'"{value}"'
    return f"`{text}`".replace("|", "\\|")


def _rows(prefix: str, section) -> list[str]:
    """A section's keys; a nested section (data.lerobot) is a row of its own followed by its keys."""
    notes, rows = _comments(type(section)), []
    for sub in dataclasses.fields(section):
        value, key = getattr(section, sub.name), f"{prefix}.{sub.name}"
        meaning = notes.get(sub.name, "").replace("|", "\\|")
        if dataclasses.is_dataclass(value):
            doc = " ".join((inspect.getdoc(type(value)) or "").split("\n\n")[0].split())
            rows.append(f"| `{key}` | | {' '.join(x for x in (meaning, doc) if x)} |")
            rows += _rows(key, value)
        else:
            rows.append(f"| `{key}` | {_fmt(value)} | {meaning} |")
    return rows


def config_reference() -> str:
    from kinsul.config.schema import KinsulConfig

    root = KinsulConfig()
    lines = ["# Configuration reference", "",
             "Generated from the config dataclasses (`kinsul/config/schema.py`, `kinsul/config/sections.py` and each component's `config.py`): "
             "every key, its default and what it means. Set any of them as `kinsul VERB [PRESET] key=value`, or in "
             "a preset YAML (`ablations/`); `kinsul config [PRESET] [key=value ...]` prints the resolved result. "
             "Values are validated when the config loads: a wrong key, type or range names the key.", ""]  # fmt: skip
    top = _comments(KinsulConfig)
    scalars = [f for f in dataclasses.fields(root) if not dataclasses.is_dataclass(getattr(root, f.name))]
    for f in dataclasses.fields(root):
        section = getattr(root, f.name)
        if not dataclasses.is_dataclass(section):
            continue
        cls = type(section)
        lines += [f"## `{f.name}`", "", (inspect.getdoc(cls) or "").split("\n\n")[0], "",
                  "| key | default | meaning |", "|---|---|---|"]  # fmt: skip
        lines += _rows(f.name, section)
        lines.append("")
    lines += ["## Top level", "", "| key | default | meaning |", "|---|---|---|"]
    lines += [f"| `{f.name}` | {_fmt(getattr(root, f.name))} | {top.get(f.name, '')} |" for f in scalars]
    return "\n".join(lines) + "\n"


def cli_reference() -> str:
    """Each verb's --help at a fixed width (argparse wraps at the terminal's, from COLUMNS), so the committed
    page is the same whoever generates it."""
    import os

    from kinsul.cli import build_parser

    columns = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = "100"
    try:
        return _cli_reference(build_parser())
    finally:
        if columns is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = columns


def _cli_reference(parser) -> str:
    lines = ["# CLI reference", "", "Generated from `kinsul --help` and each verb's `--help`.", "",
             "```text", parser.format_help().rstrip(), "```", ""]  # fmt: skip
    sub = next(a for a in parser._actions if isinstance(a, type(parser._subparsers._group_actions[0])))
    for name, p in sub.choices.items():
        lines += [f"## `kinsul {name}`", "", "```text", p.format_help().rstrip(), "```", ""]
    return "\n".join(lines)


def write(out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "config.md").write_text(config_reference())
    (out_dir / "cli.md").write_text(cli_reference())


if __name__ == "__main__":
    write(Path(sys.argv[1]))
