"""Atomic file writes and file hashes, shared by ``converters`` and ``toolkit``.

A reader sees the old file or the new one, never half of either: a temporary file in the
same folder (same file system, so the rename is atomic), flushed and fsync'ed, then renamed
over the target. Temporary names are unique and carry the writer's pid, so
``toolkit.fileio.sweep_temps`` can remove what a killed writer left behind.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

__all__ = ["atomic_open", "atomic_write", "atomic_copy", "replace_into", "sha256_file",
           "TEMP_SUFFIX", "TEMP_PATTERN"]

TEMP_SUFFIX = ".tmp"
TEMP_PATTERN = re.compile(r"^\.(?P<name>.+?)\.(?:(?P<pid>\d+)-)?[A-Za-z0-9_]+\.tmp$")


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


def atomic_copy(src: str | Path, dst: str | Path) -> None:
    import shutil

    with open(src, "rb") as fin, atomic_open(dst, "wb") as fout:
        shutil.copyfileobj(fin, fout, 1 << 20)


def replace_into(tmp: str | Path, path: str | Path) -> Path:
    """Commit a finished temporary file (written by someone else, e.g. a converter, in
    ``path``'s folder) as ``path``: fsync it, rename it over ``path``, fsync the folder."""
    fd = os.open(tmp, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    _fsync_dir(Path(path).parent)
    return Path(path)


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()
