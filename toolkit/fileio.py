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
import re
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

__all__ = ["atomic_open", "atomic_write", "atomic_write_json", "atomic_copy", "sweep_temps",
           "TEMP_SUFFIX"]

TEMP_SUFFIX = ".tmp"
_TEMP = re.compile(r"^\.(?P<name>.+?)\.(?:(?P<pid>\d+)-)?[A-Za-z0-9_]+\.tmp$")
STALE_UNKNOWN_S = 3600.0  # a temp file naming no pid (older evit) is stale after an hour


def _temp(path: Path) -> tuple[int, str]:
    return tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}-", suffix=TEMP_SUFFIX,
                            dir=path.parent)


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "w", encoding: str | None = "utf-8",
                ) -> Iterator[IO[Any]]:
    """``with atomic_open(p, "wb") as f: ...``: ``p`` appears complete when the block ends,
    and is left as it was when the block raises (or the process dies)."""
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open mode = {mode!r}; use 'w' or 'wb'")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _temp(path)
    try:
        with os.fdopen(fd, mode, encoding=None if "b" in mode else encoding) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def _fsync_dir(folder: Path) -> None:
    # the rename itself survives a power cut only once the folder is synced (POSIX)
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_write(path: str | Path, data: str | bytes) -> None:
    with atomic_open(path, "wb" if isinstance(data, bytes) else "w") as f:
        f.write(data)


def atomic_write_json(path: str | Path, obj: Any, **kw: Any) -> None:
    atomic_write(path, json.dumps(obj, **kw) + ("\n" if kw.get("indent") is not None else ""))


def atomic_copy(src: str | Path, dst: str | Path) -> None:
    import shutil

    with open(src, "rb") as fin, atomic_open(dst, "wb") as fout:
        shutil.copyfileobj(fin, fout, 1 << 20)


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
        m = _TEMP.match(p.name)
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
