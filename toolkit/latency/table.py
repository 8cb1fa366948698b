"""Kernel latency tables: rows of (device, kernel, latency, provenance), ours or imported.

Our format is JSON: ``{"format": "evit-latency-table", "version": 1, "device", "convention",
"source", "rows": [{"key", "latency_ms", "std_ms", "n"}]}``. ``import_lut`` reads the phone
tables of data/elasticvit_block_lut (``{key: ms}``, ``table`` grid convention).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from toolkit.fileio import atomic_write

from .kernels import CONVENTIONS, Kernel, parse_key

FORMAT, VERSION = "evit-latency-table", 1


class TableError(ValueError):
    pass


@dataclass
class LatencyTable:
    device: str
    convention: str = "table"
    source: str = ""
    rows: dict[str, dict] = field(default_factory=dict)  # key -> {"latency_ms", "std_ms", "n"}

    def __len__(self) -> int:
        return len(self.rows)

    def add(self, kernel: Kernel, latency_ms: float, std_ms: float | None = None,
            n: int = 1) -> None:
        self.rows[kernel.key] = {"latency_ms": float(latency_ms), "std_ms": std_ms, "n": n}

    def kernels(self) -> list[Kernel]:
        return [parse_key(k) for k in self.rows]

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """(kernel codes, latencies in ms)."""
        codes = np.array([parse_key(k).code for k in self.rows], dtype=np.int64)
        ms = np.array([r["latency_ms"] for r in self.rows.values()], dtype=np.float64)
        return codes, ms

    def lookup_sum(self, kernels: list[Kernel]) -> float:
        missing = [k.key for k in kernels if k.key not in self.rows]
        if missing:
            raise TableError(f"{len(missing)} kernel(s) not in the {self.device} table, e.g. "
                             f"{missing[0]}")
        return sum(self.rows[k.key]["latency_ms"] for k in kernels)

    def save(self, path: str | Path) -> None:
        atomic_write(path, json.dumps({
            "format": FORMAT, "version": VERSION, "device": self.device,
            "convention": self.convention, "source": self.source, "rows": [
                {"key": k, **v} for k, v in sorted(self.rows.items())]}, indent=0))

    @classmethod
    def load(cls, path: str | Path) -> LatencyTable:
        try:
            d = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise TableError(f"cannot read latency table {path}: {e}") from e
        if not isinstance(d, dict) or d.get("format") != FORMAT:
            got = d.get("format") if isinstance(d, dict) else type(d).__name__
            raise TableError(f"{path} is not an evit latency table (format {got!r})")
        t = cls(d["device"], d.get("convention", "table"), d.get("source", ""))
        for r in d["rows"]:
            t.rows[r["key"]] = {k: r.get(k) for k in ("latency_ms", "std_ms", "n")}
        return t


def import_lut(path: str | Path, device: str | None = None) -> LatencyTable:
    """Read a phone table (``{key: latency_ms}``) into our format; keys are validated."""
    path = Path(path)
    try:
        raw = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise TableError(f"cannot read phone table {path}: {e}") from e
    if not isinstance(raw, dict) or not raw:
        raise TableError(f"{path}: expected a JSON object {{key: latency_ms}}")
    t = LatencyTable(device or path.stem, "table", f"imported from {path.name}")
    for key, ms in raw.items():
        try:
            k = parse_key(key)
            value = float(ms)
        except (ValueError, TypeError) as e:
            raise TableError(f"{path}: row {key!r}: {e}") from e
        if not value > 0:
            raise TableError(f"{path}: row {key!r} has latency {ms!r}; must be > 0")
        t.add(k, value)
    assert t.convention in CONVENTIONS
    return t
