"""Folders written whole or not at all: the generated datasets, the fitted FAST tokenizer, the pretrained VLM.

A writer fills a hidden temporary folder beside the destination, named by its process id, and one rename puts
it in place. A crash leaves no half-written destination; an exception removes the temporary folder; a killed
writer's leftovers are recognised by their dead process id and removed by the next writer."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def _temp_prefix(dest: Path) -> str:
    return f".tmp-{dest.name}-"


def clean_stale(dest: Path) -> None:
    """Remove the temporary folders of writers of ``dest`` that are no longer alive."""
    for tmp in dest.parent.glob(_temp_prefix(dest) + "*"):
        try:
            os.kill(int(tmp.name.rsplit("-", 1)[1]), 0)  # still being written by a live process: leave it
        except ProcessLookupError:
            shutil.rmtree(tmp, ignore_errors=True)
        except (ValueError, PermissionError):
            pass  # not one of ours, or another user's live process


@contextmanager
def atomic_folder(dest: str | Path, *, overwrite: bool) -> Iterator[Path]:
    """Yield an empty temporary folder that becomes ``dest`` when the block ends without an exception.

    ``overwrite``: an existing ``dest`` is replaced. Otherwise a ``dest`` that appeared meanwhile (a parallel
    sweep worker wrote the same cache first) is kept and this writer's copy dropped."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    clean_stale(dest)
    tmp = dest.parent / f"{_temp_prefix(dest)}{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if overwrite and dest.exists():
        shutil.rmtree(dest)
    try:
        os.replace(tmp, dest)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        if not dest.exists():
            raise
