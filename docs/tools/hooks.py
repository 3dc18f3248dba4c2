"""mkdocs hook: write the generated reference pages into docs/reference/ before mkdocs collects the files."""

import importlib.util
from pathlib import Path

_spec = importlib.util.spec_from_file_location("reference", Path(__file__).with_name("reference.py"))
reference = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(reference)


def on_pre_build(config, **kwargs) -> None:
    reference.write(Path(config["docs_dir"]) / "reference")
