"""Local SQLite stores (MLflow's tracking store, Optuna's study storage) checked before anything writes into
them: a damaged file, another program's database, a file that cannot be written or a folder that is a file is
one line naming the file and what to do, never a SQLAlchemy traceback and never a silent write."""

from __future__ import annotations

import contextlib
import shutil
import sqlite3
from pathlib import Path

from kinsul.fields import ConfigError

MIN_FREE = 1 << 20  # a store's writes (and sqlite's journal) need room; less than this is a full disk
# tables that identify each program's store (a subset of what it creates)
MARKERS = {"MLflow tracking": {"experiments", "runs", "alembic_version"}, "Optuna": {"studies", "trials"}}


def sqlite_file(uri: str) -> Path | None:
    """The file of a sqlite:/// URI (relative to the working folder), None for any other URI."""
    return Path(uri[len("sqlite:///") :]) if uri.startswith("sqlite:///") else None


def check_sqlite_store(uri: str, key: str, program: str) -> None:
    path = sqlite_file(uri)
    if path is None or str(path) in ("", ":memory:"):
        return
    folder = next(f for f in (path.parent, *path.parent.parents) if f.exists())  # the one the store lands in
    if not folder.is_dir():
        raise ConfigError(key, f"'{folder}' is a file, not a folder: the {program} store '{path}' cannot "
                          "be created under it; point the URI at a file in a folder")  # fmt: skip
    free = shutil.disk_usage(folder).free
    if free < MIN_FREE:
        raise ConfigError(key, f"the {program} store '{path}' is on a full disk ({free // 1024} KiB free in "
                          f"'{folder}'): free space there or point the URI at another disk")  # fmt: skip
    if not path.exists() or (path.is_file() and path.stat().st_size == 0):
        return  # a new store: the program creates it
    if not path.is_file():
        raise ConfigError(key, f"'{path}' is not a file: expected the {program} store's SQLite file")
    try:
        with contextlib.closing(sqlite3.connect(f"file:{path.resolve()}?mode=ro", uri=True)) as db:
            tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    except sqlite3.DatabaseError as e:
        raise ConfigError(key, f"'{path}' is not a readable SQLite database ({e}): a damaged file or another kind "
                          f"of file; move it away (a new {program} store is then created there) or point the URI "
                          "at another file") from None  # fmt: skip
    if tables and not MARKERS[program] <= tables:
        shown = ", ".join(sorted(tables)[:6]) + (" ..." if len(tables) > 6 else "")
        raise ConfigError(key, f"'{path}' is an SQLite database of another program (tables: {shown}), not a "
                          f"{program} store: kinsul does not write into it; point the URI at another file")  # fmt: skip
    try:
        with open(path, "r+b"):
            pass
    except OSError as e:
        raise ConfigError(key, f"the {program} store '{path}' cannot be written ({e.strerror}): make it writable "
                          "(an immutable file: chattr -i) or point the URI at another file") from None  # fmt: skip
