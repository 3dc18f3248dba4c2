"""The package picture of docs/architecture.md, enforced: every import between kinsul's packages follows an
allowed arrow, the allowed arrows have no cycle, and the known debt (arrows against the picture) only shrinks."""

import ast
from collections import defaultdict
from pathlib import Path

import kinsul

ROOT = Path(kinsul.__file__).parent
# fmt: off
ALLOWED = {
    "__main__": {"cli"},  # `python -m kinsul`
    "cli": {"backbones", "bench", "config", "data", "evaluation", "fields", "models", "pretraining", "runs", "strategies",
            "sweeps", "tracking", "training", "world", "tokenizers"},
    "bench": {"backbones", "config", "data", "evaluation", "fields", "models", "runs", "strategies", "tokenizers", "tracking",
              "training", "world"},
    "sweeps": {"config", "evaluation", "fields", "runs", "stores", "strategies", "tracking", "training"},
    "training": {"config", "data", "evaluation", "fields", "models", "runs", "strategies", "tokenizers",
                 "tracking", "world"},
    "pretraining": {"config", "data", "evaluation", "fields", "models", "runs", "tokenizers", "world"},
    "evaluation": {"config", "data", "envs", "fields", "models", "runs", "strategies", "tokenizers", "tracking",
                   "world"},
    "runs": {"config", "data", "fields", "models", "strategies", "tokenizers", "world"},
    "tracking": {"config", "fields", "stores"},
    "stores": {"fields"},
    # the root schema composes the components' own sections; no component imports it back
    "config": {"data", "envs", "fields", "models", "strategies", "world"},
    "strategies": {"data", "fields", "models"},
    "models": {"backbones", "data", "fields", "tokenizers"},
    # one adapter per VLM family and the codecs that feed them; the world tokenizer is one codec
    "backbones": {"fields", "tokenizers"},
    "data": {"envs", "fields", "tokenizers", "world"},
    # third-party simulators (Meta-World) behind KinsulWorld's gymnasium contract
    "envs": {"fields", "world"},
    "tokenizers": {"fields", "world"},
    "world": {"fields"},
    "fields": set(),
}
# fmt: on
# Arrows against the picture, to be removed (docs/architecture.md says how); delete each once it is gone.
KNOWN_DEBT: set[tuple[str, str]] = set()


def package_imports() -> dict[tuple[str, str], list[str]]:
    """(from package, to package) -> the modules that make that arrow."""
    arrows: dict[tuple[str, str], list[str]] = defaultdict(list)
    for path in ROOT.rglob("*.py"):
        rel = path.relative_to(ROOT)
        src = rel.parts[0] if len(rel.parts) > 1 else rel.stem
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module] if node.module != "kinsul" else [f"kinsul.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            for name in names:
                parts = name.split(".")
                if parts[0] == "kinsul" and len(parts) > 1 and parts[1] != src:
                    arrows[(src, parts[1])].append(str(rel))
    return arrows


def test_every_import_follows_an_allowed_arrow():
    arrows = package_imports()
    wrong = {
        a: sorted(set(m))
        for a, m in arrows.items()
        if a[1] not in ALLOWED.get(a[0], set()) and a not in KNOWN_DEBT
    }
    assert not wrong, f"imports against docs/architecture.md: {wrong}"


def test_the_known_debt_only_shrinks():
    gone = KNOWN_DEBT - set(package_imports())
    assert not gone, f"{sorted(gone)} no longer exist: delete them from KNOWN_DEBT and docs/architecture.md"


def test_the_allowed_arrows_have_no_cycle():
    graph = {a: set(b) for a, b in ALLOWED.items()}
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in graph.get(node, ()):
            assert state.get(nxt) != 1, f"cycle: {' -> '.join([*path, node, nxt])}"
            if nxt not in state:
                visit(nxt, [*path, node])
        state[node] = 2

    for node in graph:
        if node not in state:
            visit(node, [])


def test_every_package_is_placed_in_the_picture():
    packages = {p.name for p in ROOT.iterdir() if (p / "__init__.py").is_file()} | {"cli", "tracking"}
    assert packages - {"assets"} <= set(ALLOWED), sorted(packages - set(ALLOWED))
