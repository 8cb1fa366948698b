"""Finding TFLite's ``benchmark_model`` for android_aarch64: a user path, or a verified download.

evit never runs a phone benchmark without a binary it has identified: the file must be an
aarch64 ELF executable, and its sha256 is recorded with every result (different
benchmark_model versions give different latencies for the same model on the same phone).
Downloads land in a cache keyed by hash and, when ``sha256`` is given, must match it (and a
pinned binary already in the cache is not downloaded again). An unpinned download is warned
about on stderr with its hash: the nightly "latest" URL serves a different build over time.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from toolkit import fileio
from toolkit.fileio import sha256_file

from .base import BinaryError

OFFICIAL_URL = (
    "https://storage.googleapis.com/tensorflow-nightly-public/prod/tensorflow/release/lite/"
    "tools/nightly/latest/android_aarch64_benchmark_model"
)
ENV = "EVIT_BENCHMARK_MODEL"
ELF_AARCH64 = 183


def cache_dir() -> Path:
    return fileio.cache_dir("benchmark_model")


@dataclass(frozen=True)
class BenchmarkBinary:
    path: Path
    sha256: str


def check_binary(path: str | Path, sha256: str | None = None) -> BenchmarkBinary:
    path = Path(path)
    if not path.is_file():
        raise BinaryError(f"benchmark_model binary {path} does not exist")
    with open(path, "rb") as f:
        head = f.read(20)
    if head[:4] != b"\x7fELF":
        raise BinaryError(
            f"{path} is not an ELF executable; give TFLite's benchmark_model for android_aarch64"
        )
    machine = int.from_bytes(head[18:20], "little")
    if machine != ELF_AARCH64:
        raise BinaryError(
            f"{path} is built for ELF machine {machine}, not aarch64 ({ELF_AARCH64}); phones need "
            "the android_aarch64 build of benchmark_model"
        )
    digest = sha256_file(path)
    if sha256 and digest != sha256.lower():
        raise BinaryError(f"{path} has sha256 {digest}, expected {sha256}; refusing to run it")
    return BenchmarkBinary(path, digest)


def unpinned_warning(url: str, digest: str) -> str:
    return (f"warning: benchmark_model from {url} is unpinned (a nightly \"latest\" build "
            f"changes under you, and with it the latencies): this download has sha256 "
            f"{digest}; pin it with --binary-sha256 {digest}")


def download_binary(url: str = OFFICIAL_URL, sha256: str | None = None,
                    timeout: float = 60.0) -> BenchmarkBinary:
    """Download (or reuse from the cache) and verify; a partial download is never kept."""
    folder = cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    if sha256:
        cached = folder / sha256.lower()
        if cached.is_file():
            return check_binary(cached, sha256)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".download-")
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as resp:
            shutil.copyfileobj(resp, out)
        binary = check_binary(tmp, sha256)
        final = folder / binary.sha256
        os.replace(tmp, final)
        os.chmod(final, 0o755)
        if not sha256:
            print(unpinned_warning(url, binary.sha256), file=sys.stderr)
        return BenchmarkBinary(final, binary.sha256)
    except OSError as e:
        raise BinaryError(
            f"could not download benchmark_model from {url} ({e}); download it on a connected "
            f"machine and pass --benchmark-binary PATH (or set {ENV})"
        ) from e
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def resolve_binary(path: str | None = None, download: bool = False, url: str = OFFICIAL_URL,
                   sha256: str | None = None) -> BenchmarkBinary:
    path = path or os.environ.get(ENV)
    if path:
        return check_binary(path, sha256)
    if download:
        return download_binary(url, sha256)
    raise BinaryError(
        "phones need TFLite's benchmark_model (android_aarch64). Pass --benchmark-binary PATH, "
        f"set {ENV}=PATH, or add --download-binary to fetch the official nightly build "
        f"({OFFICIAL_URL}); pin it with --binary-sha256"
    )
