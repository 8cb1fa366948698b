"""``evit-bench compare BASE HEAD``: noise-aware regression detection between two bench runs.

Results are matched by (suite model name, device profile, serial, mode). A pair is only
compared when it was measured with the same runtime/binary, threads and mask; otherwise it is
reported as not comparable. The threshold comes from the measurements' own repeat variance:

    regression  if  head - base > max(min_rel * base, k * sqrt(std_base² + std_head²))

(std = spread of the benchmark_model invocations' figures), so a noisy device needs a larger
change before it is flagged, and a quiet one catches small slowdowns. The figure is the device
profile's ``statistic``: the median of the invocations' medians on phones, the fastest run on
the host (whose shared-VM neighbours make medians swing), with the standard error of the
invocations' fastest runs as its noise. Outputs: Markdown,
JUnit XML, and github-action-benchmark JSON (``customSmallerIsBetter``).
"""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

from toolkit.devices.store import ResultStore
from toolkit.fileio import atomic_write_json

MIN_REL = 0.05
K_SIGMA = 3.0
MEM_REL, MEM_MIN_MB = 0.10, 1.0  # peak memory: +10% and at least 1 MB is a regression


@dataclass
class Entry:
    name: str  # model
    device: str
    serial: str
    mode: str
    median_ms: float
    std_ms: float
    repeats: int
    runtime: str
    binary: str
    threads: int
    mask: str
    statistic: str = "median"
    peak_mb: float | None = None  # peak memory footprint (None: not reported)
    delegated: str | None = None  # e.g. "xnnpack 716/716" (None: not reported)

    @property
    def key(self) -> tuple:
        return (self.name, self.device, self.serial, self.mode)

    @property
    def comparable_key(self) -> tuple:
        return (self.runtime, self.binary, self.threads, self.mask, self.statistic)

    def to_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class Row:
    base: Entry | None
    head: Entry | None
    status: str  # regression | improvement | unchanged | new | missing | not comparable
    delta_rel: float = float("nan")
    threshold_rel: float = float("nan")
    notes: tuple[str, ...] = ()  # memory / delegation findings

    @property
    def name(self) -> str:
        e = self.head or self.base
        return f"{e.name} [{e.device} {e.mode}]"

    def to_dict(self) -> dict:
        """JSON-ready (``evit-bench compare --json``): undefined ratios are null."""
        def num(x: float) -> float | None:
            return None if x != x else x  # NaN

        return {"name": self.name, "status": self.status, "delta_rel": num(self.delta_rel),
                "threshold_rel": num(self.threshold_rel), "notes": list(self.notes),
                "base": self.base.to_dict() if self.base else None,
                "head": self.head.to_dict() if self.head else None}


def _statistic(device: str) -> str:
    from device_profiles import ProfileError, get_profile

    try:
        return get_profile(device).statistic
    except ProfileError:
        return "median"


def entries_from_store(store: ResultStore, run_id: str) -> list[Entry]:
    out = []
    for r in store.results(status="valid"):
        if r.meta.get("bench_run") != run_id:
            continue
        stat = _statistic(r.device)
        value, std = r.median_ms, r.std_ms or 0.0
        if stat == "best" and r.best_ms is not None:
            mins = [row["min_us"] / 1000 for row in r.repeat_rows]
            value = r.best_ms
            # the lowest of n minima varies less than one minimum: its standard error
            std = statistics.stdev(mins) / len(mins) ** 0.5 if len(mins) > 1 else 0.0
        elif stat == "best":
            stat = "median"  # the output had no min=: the median is all there is
        deleg = None
        if r.applied_delegate is not None:
            deleg = r.applied_delegate + (f" {r.delegated_nodes}/{r.total_nodes}"
                                          if r.total_nodes is not None else "")
        out.append(Entry(r.meta.get("model", r.model_name), r.device, r.serial,
                         r.meta.get("mode", r.mode), value, std, r.repeats,
                         r.runtime, r.binary_sha256, r.threads, r.mask, stat,
                         r.peak_memory_mb, deleg))
    return out


def bench_runs(store: ResultStore) -> list[tuple[str, str, int]]:
    """(run id, first created, results) for every bench run in the store, oldest first."""
    runs: dict[str, list] = {}
    for r in store.results(status=None):
        rid = r.meta.get("bench_run")
        if rid:
            runs.setdefault(rid, [r.created, 0])[1] += 1
    return sorted(((k, v[0], v[1]) for k, v in runs.items()), key=lambda t: t[1])


def load_entries(spec: str, store: ResultStore | None) -> list[Entry]:
    """BASE/HEAD: a bench run id, ``latest``/``previous``, or a baseline JSON file."""
    p = Path(spec)
    if p.suffix == ".json" and p.is_file():
        return load_baseline(p)
    if store is None:
        raise ValueError(f"{spec!r} is not a baseline file and no --store was given")
    runs = bench_runs(store)
    ids = [r[0] for r in runs]
    if spec in ("latest", "previous"):
        need = 1 if spec == "latest" else 2
        if len(ids) < need:
            raise ValueError(f"the store has {len(ids)} bench run(s); {spec!r} needs {need}")
        spec = ids[-need]
    if spec not in ids:
        raise ValueError(f"no bench run {spec!r} in the store; known: {', '.join(ids[-10:])}")
    return entries_from_store(store, spec)


_ENTRY_TYPES = {"name": "str", "device": "str", "serial": "str", "mode": "str",
                "median_ms": "ms", "std_ms": "num", "repeats": "int", "runtime": "str",
                "binary": "str", "threads": "int", "mask": "str", "statistic": "str",
                "peak_mb": "num?", "delegated": "str?"}
_OPTIONAL = {"statistic", "peak_mb", "delegated"}
_EXPECTED = {"str": "a string", "str?": "a string or null", "int": "a non-negative integer",
             "num": "a non-negative number", "num?": "a non-negative number or null",
             "ms": "a positive number"}


def _valid(kind: str, v) -> bool:
    if kind.endswith("?") and v is None:
        return True
    kind = kind.rstrip("?")
    if kind == "str":
        return isinstance(v, str)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        return False
    if kind == "int":
        return isinstance(v, int) and v >= 0
    return v > 0 if kind == "ms" else v >= 0


def load_baseline(path: str | Path) -> list[Entry]:
    """A baseline JSON (``evit-bench baseline``), validated entry by entry: the file may have
    been edited or come from elsewhere; an error names the file, the entry and the field."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"baseline {path} cannot be read ({e}); write it again with "
                         "`evit-bench baseline RUN -o FILE`") from None
    if not isinstance(data, dict) or data.get("format") != "evit-bench-baseline" or \
            not isinstance(data.get("entries"), list):
        raise ValueError(f"{path} is not an evit-bench baseline (format evit-bench-baseline, "
                         "entries: [...]); write one with `evit-bench baseline RUN -o FILE`")
    out = []
    for i, e in enumerate(data["entries"]):
        if not isinstance(e, dict):
            raise ValueError(f"{path}: entries[{i}] = {e!r} is not an object")
        unknown = set(e) - set(_ENTRY_TYPES)
        missing = set(_ENTRY_TYPES) - _OPTIONAL - set(e)
        if unknown or missing:
            raise ValueError(f"{path}: entries[{i}] has unknown fields {sorted(unknown)} or "
                             f"lacks {sorted(missing)}")
        for k, v in e.items():
            if not _valid(_ENTRY_TYPES[k], v):
                raise ValueError(f"{path}: entries[{i}].{k} = {v!r} is not valid; expected "
                                 f"{_EXPECTED[_ENTRY_TYPES[k]]}")
        out.append(Entry(**{k: (float(v) if _ENTRY_TYPES[k] in ("ms", "num", "num?")
                                and v is not None else v) for k, v in e.items()}))
    return out


def save_baseline(entries: list[Entry], path: str | Path, run_id: str) -> None:
    atomic_write_json(path, {"format": "evit-bench-baseline", "run": run_id,
                             "entries": [e.to_dict() for e in entries]}, indent=1)


def compare(base: list[Entry], head: list[Entry], min_rel: float = MIN_REL,
            k: float = K_SIGMA) -> list[Row]:
    b = {e.key: e for e in base}
    h = {e.key: e for e in head}
    rows = []
    for key in sorted(set(b) | set(h)):
        eb, eh = b.get(key), h.get(key)
        if eb is None:
            rows.append(Row(None, eh, "new"))
            continue
        if eh is None:
            rows.append(Row(eb, None, "missing"))
            continue
        if eb.comparable_key != eh.comparable_key:
            rows.append(Row(eb, eh, "not comparable"))
            continue
        noise = k * math.sqrt(eb.std_ms ** 2 + eh.std_ms ** 2)
        thr = max(min_rel * eb.median_ms, noise)
        delta = eh.median_ms - eb.median_ms
        status = ("regression" if delta > thr else "improvement" if delta < -thr
                  else "unchanged")
        notes = _memory_and_delegation(eb, eh)
        if notes and status != "regression":
            status = "regression"
        rows.append(Row(eb, eh, status, delta / eb.median_ms, thr / eb.median_ms, notes))
    return rows


def _fraction(d: str | None) -> float | None:
    try:
        n, m = d.rsplit(" ", 1)[1].split("/")
        return int(n) / int(m) if int(m) else None
    except (AttributeError, IndexError, ValueError):
        return None


def _memory_and_delegation(eb: Entry, eh: Entry) -> tuple[str, ...]:
    """Regressions besides latency: peak memory up by more than MEM_REL (and MEM_MIN_MB),
    fewer nodes on the delegate, or another delegate."""
    notes = []
    if eb.peak_mb is not None and eh.peak_mb is not None:
        grow = eh.peak_mb - eb.peak_mb
        if grow > max(MEM_REL * eb.peak_mb, MEM_MIN_MB):
            notes.append(f"peak memory {eb.peak_mb:.1f} -> {eh.peak_mb:.1f} MB "
                         f"({100 * grow / max(eb.peak_mb, 1e-9):+.0f}%)")
    if eb.delegated and eh.delegated:
        fb, fh = _fraction(eb.delegated), _fraction(eh.delegated)
        if eb.delegated.split()[0] != eh.delegated.split()[0] or (
                fb is not None and fh is not None and fh < fb):
            notes.append(f"delegation {eb.delegated} -> {eh.delegated}")
    return tuple(notes)


def markdown(rows: list[Row], base_name: str, head_name: str) -> str:
    icon = {"regression": "🔴 regression", "improvement": "🟢 faster", "unchanged": "unchanged",
            "new": "new", "missing": "missing", "not comparable": "⚠️ not comparable"}
    out = [f"### evit-bench: {head_name} vs {base_name}", "",
           "| model | device | mode | figure | base (ms) | head (ms) | change | noise threshold "
           "| peak memory (MB) | delegation | status |",
           "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        e = r.head or r.base
        bm = f"{r.base.median_ms:.4g}" if r.base else "–"
        hm = f"{r.head.median_ms:.4g}" if r.head else "–"
        ch = f"{100 * r.delta_rel:+.1f}%" if not math.isnan(r.delta_rel) else "–"
        th = f"±{100 * r.threshold_rel:.1f}%" if not math.isnan(r.threshold_rel) else "–"
        mem = " -> ".join(f"{x.peak_mb:.1f}" if x and x.peak_mb is not None else "–"
                          for x in (r.base, r.head))
        dl = (r.head or r.base).delegated or "–"
        st = icon[r.status] + ("".join(f"; {n}" for n in r.notes))
        out.append(f"| {e.name} | {e.device} ({e.serial}) | {e.mode} | {e.statistic} | {bm} | "
                   f"{hm} | {ch} | {th} | {mem} | {dl} | {st} |")
    n = sum(r.status == "regression" for r in rows)
    out += ["", f"{n} regression(s) among {len(rows)} comparisons."]
    return "\n".join(out)


def junit(rows: list[Row]) -> str:
    cases = []
    for r in rows:
        name = quoteattr(r.name)
        if r.status == "regression":
            msg = (f"{r.base.median_ms:.4g} ms -> {r.head.median_ms:.4g} ms "
                   f"({100 * r.delta_rel:+.1f}%, threshold {100 * r.threshold_rel:.1f}%)"
                   + "".join(f"; {n}" for n in r.notes))
            cases.append(f'  <testcase classname="evit-bench" name={name}>'
                         f'<failure message={quoteattr(msg)}>{escape(msg)}</failure></testcase>')
        elif r.status in ("missing", "not comparable"):
            cases.append(f'  <testcase classname="evit-bench" name={name}><skipped message='
                         f'{quoteattr(r.status)}/></testcase>')
        else:
            cases.append(f'  <testcase classname="evit-bench" name={name}/>')
    fails = sum(r.status == "regression" for r in rows)
    skips = sum(r.status in ("missing", "not comparable") for r in rows)
    return ('<?xml version="1.0" encoding="UTF-8"?>\n'
            f'<testsuite name="evit-bench" tests="{len(rows)}" failures="{fails}" '
            f'skipped="{skips}">\n' + "\n".join(cases) + "\n</testsuite>\n")


def github_benchmark(entries: list[Entry]) -> str:
    """github-action-benchmark's customSmallerIsBetter format."""
    return json.dumps([
        {"name": f"{e.name} [{e.device} {e.mode}]", "unit": "ms", "value": round(e.median_ms, 6),
         "range": f"± {e.std_ms:.4g}", "extra": f"serial {e.serial}; {e.repeats} invocations; "
         f"threads {e.threads}; mask {e.mask}; runtime {e.runtime} {e.binary[:16]}"}
        for e in entries], indent=1)
