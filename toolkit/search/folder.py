"""A search folder (``evit-search --out``): its file names, its manifest, claiming it.

A folder holds one search: ``search.json`` (the manifest: what makes its run this run; a
resume needs all of it to match), ``job.json`` (the resolved job), ``state_<cost>_<budget>.json``
(the resumable state per budget), ``best_<cost>_<budget>.json`` (each budget's best) and its
exports ``best_<cost>_<budget>.<fmt>`` (+ ``.json`` sidecar), ``front.csv``, ``front.png``,
``summary.json`` and ``accuracy_predictor.json``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from toolkit.search.evolution import SearchError

__all__ = ["SEARCH_FILES", "SEARCH_GLOBS", "MANIFEST", "state_path", "best_path",
           "artifact_path", "claim_folder", "already_exported"]

MANIFEST = "search.json"
SEARCH_FILES = (MANIFEST, "job.json", "summary.json", "front.csv", "front.png")
SEARCH_GLOBS = ("state_*.json", "best_*.json", "best_*.tflite", "best_*.tflite.json",
                "best_*.onnx", "best_*.onnx.json")


def state_path(out: str | Path, cost: str, budget: float) -> Path:
    """The resumable state of one budget's search (``cost``: latency or mflops)."""
    return Path(out) / f"state_{cost}_{budget:g}.json"


def best_path(out: str | Path, cost: str, budget: float, rank: int = 0) -> Path:
    """One budget's best subnet; torchrun's other ranks write their own copy."""
    rank_part = f".rank{rank}" if rank else ""
    return Path(out) / f"best_{cost}_{budget:g}{rank_part}.json"


def artifact_path(out: str | Path, cost: str, budget: float, fmt: str) -> Path:
    """One budget's best, exported (``fmt``: tflite or onnx)."""
    return Path(out) / f"best_{cost}_{budget:g}.{fmt}"


def _old_files(out: Path) -> list[Path]:
    if not out.is_dir():
        return []
    return [out / f for f in SEARCH_FILES if (out / f).exists()] + sorted(
        p for g in SEARCH_GLOBS for p in out.glob(g))


def claim_folder(out: str | Path, manifest: dict[str, Any], overwrite: bool) -> dict[str, Any]:
    """Refuse a folder holding another search (before any work); ``overwrite`` deletes it."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise SearchError(f"--out {out} is a file; give a folder")
    old_files = _old_files(out)
    if overwrite:
        for p in old_files:
            p.unlink(missing_ok=True)
        return manifest
    mpath = out / MANIFEST
    if mpath.is_file():
        try:
            old = json.loads(mpath.read_text())
        except ValueError:
            old = None
        if not isinstance(old, dict):
            raise SearchError(f"{mpath} is damaged; start over with --overwrite or choose "
                              "another --out")
        diff = sorted(k for k in set(old) | set(manifest) if old.get(k) != manifest.get(k))
        if diff:
            raise SearchError(
                f"{out} holds another search (it differs in {', '.join(diff)}); resume it with "
                "the same settings, start over with --overwrite (deletes it), or choose "
                "another --out")
    elif any(p.name.startswith(("state_", "best_")) for p in old_files) and not any(
            p.name.startswith("state_") for p in old_files):
        raise SearchError(f"{out} holds results of another search ({old_files[0].name}, ...) "
                          "and no state to resume; start over with --overwrite or choose "
                          "another --out")
    return manifest


def already_exported(art: str | Path, arch: dict, ckpt: str | Path,
                     data: str | None = None) -> bool:
    """True when ``art`` and its sidecar hold exactly this subnet from this checkpoint,
    calibrated on the same data (a resumed search does not convert again); anything missing
    or different: export again."""
    from toolkit.fileio import sha256_file

    art = Path(art)
    side = art.with_name(art.name + ".json")
    if not (art.is_file() and side.is_file()):
        return False
    try:
        meta = json.loads(side.read_text())
    except ValueError:
        return False
    src = meta.get("source", {})
    return (meta.get("arch") == arch and meta.get("precision") == "fp32"
            and src.get("supernet_sha256") == sha256_file(ckpt)
            and src.get("data") == (str(data) if data else None)
            and meta.get("sha256") == sha256_file(art))
