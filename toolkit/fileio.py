"""Atomic file writes: a reader sees the old file or the new one, never half of either.

Every file a later step or a resume reads goes through here: a temporary file in the same
folder (same file system, so the rename is atomic), flushed and fsync'ed, then renamed over
the target. Temporary names are unique (two writers never share one) and carry the writer's
pid, so ``sweep_temps`` can remove what a killed writer left behind without touching a live
writer's file.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from pathlib import Path
from typing import Any

from converters.fileio import (
    TEMP_PATTERN,
    TEMP_SUFFIX,
    atomic_copy,
    atomic_open,
    atomic_write,
    sha256_file,
)

__all__ = ["atomic_open", "atomic_write", "atomic_write_json", "atomic_copy", "sweep_temps",
           "sha256_file", "cache_dir", "TEMP_SUFFIX"]

STALE_UNKNOWN_S = 3600.0  # a temp file naming no pid (older evit) is stale after an hour


def cache_dir(*parts: str) -> Path:
    """evit's cache folder (``$EVIT_CACHE``, default ``~/.cache/evit``), or a part of it."""
    return Path(os.environ.get("EVIT_CACHE") or Path.home() / ".cache" / "evit", *parts)


def atomic_write_json(path: str | Path, obj: Any, **kw: Any) -> None:
    atomic_write(path, json.dumps(obj, **kw) + ("\n" if kw.get("indent") is not None else ""))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def sweep_temps(folder: str | Path, names: set[str] | None = None) -> list[Path]:
    """Remove temporary files a killed writer left in ``folder`` (only those of ``names``,
    when given): those whose writer's pid is gone, and pid-less ones (older evit, or
    ``torch.save`` temps) older than an hour. Returns what was removed."""
    folder = Path(folder)
    removed = []
    if not folder.is_dir():
        return removed
    now = time.time()
    for p in folder.iterdir():
        m = TEMP_PATTERN.match(p.name)
        if m is None or (names is not None and m["name"] not in names) or not p.is_file():
            continue
        pid = m["pid"]
        try:
            stale = (not _alive(int(pid))) if pid else now - p.stat().st_mtime > STALE_UNKNOWN_S
        except OSError:
            continue
        if stale and pid and int(pid) == os.getpid():
            stale = False  # ours, being written right now
        if stale:
            with contextlib.suppress(OSError):
                p.unlink()
                removed.append(p)
    return removed
