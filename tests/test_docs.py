"""The docs site builds with mkdocs --strict (broken links, missing pages and nav errors fail it), and its
generated reference pages name every config key."""

import dataclasses
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.integration
def test_site_builds_strict(tmp_path):
    mkdocs = Path(sys.executable).parent / "mkdocs"
    assert mkdocs.exists() or shutil.which("mkdocs"), (
        "mkdocs-material is in the dev extra: pip install -e '.[dev]'"
    )
    out = subprocess.run([str(mkdocs if mkdocs.exists() else "mkdocs"), "build", "--strict", "--site-dir",
                          str(tmp_path / "site")], cwd=REPO, capture_output=True, text=True)  # fmt: skip
    assert out.returncode == 0, out.stderr[-4000:]
    assert (tmp_path / "site" / "strategies" / "index.html").is_file()
    config_page = (REPO / "docs" / "reference" / "config.md").read_text()
    from kinsul.config.schema import KinsulConfig

    root = KinsulConfig()
    for section in dataclasses.fields(root):
        value = getattr(root, section.name)
        if dataclasses.is_dataclass(value):
            for f in dataclasses.fields(value):
                assert f"`{section.name}.{f.name}`" in config_page
