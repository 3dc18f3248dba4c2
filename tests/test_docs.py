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


def test_committed_reference_pages_match_the_code():
    """docs/reference/ is committed so the pages read in a checkout; they must equal what the code generates
    (regenerate with `python docs/tools/reference.py docs/reference`)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("reference", REPO / "docs" / "tools" / "reference.py")
    reference = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(reference)
    pages = {"config.md": reference.config_reference(), "cli.md": reference.cli_reference()}
    for name, text in pages.items():
        assert (REPO / "docs" / "reference" / name).read_text() == text, (
            f"docs/reference/{name} is stale: python docs/tools/reference.py docs/reference"
        )


def test_every_page_a_doc_links_exists_in_the_checkout():
    """Links between docs pages resolve to files in the checkout, not only in the built site."""
    import re

    for page in (REPO / "docs").rglob("*.md"):
        for target in re.findall(r"\]\(([^)#:]+\.md)(?:#[^)]*)?\)", page.read_text()):
            assert (page.parent / target).is_file(), f"{page.relative_to(REPO)} links {target}"
