"""The SQLite result store: every measurement with full provenance, written atomically.

One row in ``results`` per measurement (status ``valid`` or ``invalid`` with the error), one row
per benchmark_model invocation in ``repeats``, per-layer rows in ``ops``. A result is written in
a single transaction after the measurement has finished, so an interrupted or failed run never
leaves a half-written or valid-looking row. ``config_key`` hashes everything that must match
for two results to be comparable (device fingerprint, model, binary, threads, mask, delegate,
runs); queries never mix keys.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

SCHEMA_VERSION = 2
# columns added after schema 1: (name, SQL type); a schema-1 store gains them when opened
ADDED_COLUMNS = (("peak_memory_mb", "REAL"), ("applied_delegate", "TEXT"),
                 ("delegated_nodes", "INTEGER"), ("total_nodes", "INTEGER"),
                 ("partitions", "INTEGER"))
SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS results (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    created TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('valid', 'invalid')),
    error TEXT,
    device TEXT NOT NULL,          -- profile name (pixel4, host, ...)
    serial TEXT NOT NULL,
    fingerprint TEXT NOT NULL,     -- JSON: build fingerprint, model, soc, ...
    model_name TEXT NOT NULL,
    model_sha256 TEXT NOT NULL,
    model_bytes INTEGER NOT NULL,
    runtime TEXT NOT NULL,         -- benchmark_model or litert-host
    binary_sha256 TEXT NOT NULL,   -- the benchmark binary's hash (or the runtime's version)
    mode TEXT NOT NULL,
    mask TEXT NOT NULL,
    threads INTEGER NOT NULL,
    delegate TEXT NOT NULL,
    warmup_runs INTEGER NOT NULL,
    num_runs INTEGER NOT NULL,
    repeats INTEGER NOT NULL,
    config_key TEXT NOT NULL,
    median_ms REAL, p90_ms REAL, std_ms REAL, mean_ms REAL, min_ms REAL, max_ms REAL,
    init_ms REAL,
    peak_memory_mb REAL,           -- benchmark_model's peak memory footprint (MB)
    applied_delegate TEXT,         -- the delegate that ran nodes (none: the CPU kernels)
    delegated_nodes INTEGER, total_nodes INTEGER, partitions INTEGER,
    thermal_before TEXT, thermal_after TEXT, flags TEXT,
    versions TEXT, label TEXT, meta TEXT
);
CREATE INDEX IF NOT EXISTS results_config ON results (config_key, status);
CREATE INDEX IF NOT EXISTS results_model ON results (model_sha256, device);
CREATE TABLE IF NOT EXISTS repeats (
    result_id INTEGER NOT NULL REFERENCES results (id) ON DELETE CASCADE,
    idx INTEGER NOT NULL, count INTEGER, median_us REAL, avg_us REAL, std_us REAL,
    min_us REAL, max_us REAL, p5_us REAL, p95_us REAL, raw TEXT
);
CREATE TABLE IF NOT EXISTS ops (
    result_id INTEGER NOT NULL REFERENCES results (id) ON DELETE CASCADE,
    idx INTEGER NOT NULL, node_type TEXT, name TEXT, avg_ms REAL, first_ms REAL, percent REAL
);
"""


STORE_ENV = "EVIT_STORE"  # the result store of every command, when set
# each command's own file when it is not; and the variables of older releases
DEFAULT_STORES = {"results": os.path.join("runs", "results.sqlite"),
                  "bench": os.path.join("runs", "bench.sqlite")}
DEPRECATED_STORE_ENV = {"bench": "EVIT_BENCH_STORE"}  # read for one more release


def default_store(kind: str = "results") -> str:
    """The store a command uses without --store: $EVIT_STORE, else (one more release) the
    command's deprecated variable, else its own file in runs/ (``DEFAULT_STORES``)."""
    old = DEPRECATED_STORE_ENV.get(kind)
    return (os.environ.get(STORE_ENV) or (os.environ.get(old) if old else None)
            or DEFAULT_STORES[kind])


def deprecated_store_env(kind: str) -> str | None:
    """The deprecated variable ``default_store(kind)`` read, if it read one."""
    old = DEPRECATED_STORE_ENV.get(kind)
    return old if old and not os.environ.get(STORE_ENV) and os.environ.get(old) else None


BUSY_TIMEOUT_S = 30.0  # how long a write waits for another process holding the store

class StoreError(RuntimeError):
    pass


def config_key(**fields) -> str:
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:16]


@dataclass
class Result:
    device: str
    serial: str
    fingerprint: dict
    model_name: str
    model_sha256: str
    model_bytes: int
    runtime: str
    binary_sha256: str
    mode: str
    mask: str
    threads: int
    delegate: str
    warmup_runs: int
    num_runs: int
    repeats: int
    status: str = "valid"
    error: str | None = None
    median_ms: float | None = None
    p90_ms: float | None = None
    std_ms: float | None = None
    mean_ms: float | None = None
    min_ms: float | None = None
    max_ms: float | None = None
    init_ms: float | None = None
    peak_memory_mb: float | None = None
    applied_delegate: str | None = None
    delegated_nodes: int | None = None
    total_nodes: int | None = None
    partitions: int | None = None
    thermal_before: dict = field(default_factory=dict)
    thermal_after: dict = field(default_factory=dict)
    flags: list = field(default_factory=list)
    versions: dict = field(default_factory=dict)
    label: str = ""
    meta: dict = field(default_factory=dict)
    repeat_rows: list = field(default_factory=list)  # dicts
    op_rows: list = field(default_factory=list)  # dicts
    id: int | None = None
    created: str = ""

    @property
    def best_ms(self) -> float | None:
        """The fastest run of all invocations (None if the output had no min=).

        Interference on a shared machine only ever slows a run down, and it differs between
        processes (seen here: per-invocation minima of one model from 20.9 to 27.2 ms, the
        lowest of every 3 within 3.5%), so the lowest figure is the repeatable one."""
        mins = [r.get("min_us") for r in self.repeat_rows]
        if not mins or any(m is None for m in mins):
            return None
        return float(min(mins)) / 1000

    def latency_ms(self, statistic: str = "median") -> float | None:
        """The figure a device profile's ``statistic`` names: ``median`` or ``best``."""
        if statistic == "best":
            best = self.best_ms
            return best if best is not None else self.median_ms
        return self.median_ms

    @property
    def config_key(self) -> str:
        return config_key(
            device=self.device, fingerprint=self.fingerprint, model=self.model_sha256,
            runtime=self.runtime, binary=self.binary_sha256, mask=self.mask,
            threads=self.threads, delegate=self.delegate, warmup=self.warmup_runs,
            runs=self.num_runs,
        )


JSON_FIELDS = ("fingerprint", "thermal_before", "thermal_after", "flags", "versions", "meta")


class ResultStore:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + BUSY_TIMEOUT_S
        self.db = None
        while True:
            try:
                row = self._open()
                break
            except sqlite3.OperationalError as e:
                # two connections setting up a new file at once: switching it to WAL can fail
                # at once with "locked" (SQLite's deadlock escape skips the busy wait), so the
                # later one retries; a file that stays locked is reported below
                self._close()
                if "locked" not in str(e) or time.monotonic() > deadline:
                    raise StoreError(f"{self.path} is not a usable evit result store ({e}); "
                                     "point --store at a new file or restore this one from a "
                                     "backup") from e
                time.sleep(0.05)
            except sqlite3.DatabaseError as e:
                self._close()
                raise StoreError(
                    f"{self.path} is not a usable evit result store ({e}); point --store at a "
                    "new file or restore this one from a backup"
                ) from e
        if row is None:
            self.db.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)",
                            (str(SCHEMA_VERSION),))
        elif int(row[0]) > SCHEMA_VERSION:
            raise StoreError(f"{self.path} was written by a newer evit (schema {row[0]}); "
                             "upgrade evit to read it")
        elif int(row[0]) < SCHEMA_VERSION:
            self._upgrade()

    def _upgrade(self) -> None:
        """Add the columns of later schemas to an older store, in one transaction (its rows
        keep their values; the new figures are unknown for them)."""
        cur = self.db.cursor()
        cur.execute("BEGIN IMMEDIATE")  # another process may be upgrading it too: read inside
        try:
            have = {r[1] for r in cur.execute("PRAGMA table_info(results)")}
            for name, typ in ADDED_COLUMNS:
                if name not in have:
                    cur.execute(f"ALTER TABLE results ADD COLUMN {name} {typ}")
            cur.execute("UPDATE meta SET value=? WHERE key='schema_version'",
                        (str(SCHEMA_VERSION),))
            cur.execute("COMMIT")
        except BaseException:
            if self.db.in_transaction:
                cur.execute("ROLLBACK")
            raise

    def _open(self):
        """Connect, set up the schema if new; the schema_version row (None if new)."""
        self.db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None,
                                  check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")  # concurrent readers, one writer
        self.db.execute("PRAGMA foreign_keys=ON")
        self.db.executescript(SCHEMA)
        return self.db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()

    def _close(self) -> None:
        if self.db is not None:
            self.db.close()
            self.db = None

    def close(self) -> None:
        self.db.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def add(self, r: Result) -> int:
        """Insert one result with its repeats and ops in a single transaction."""
        if r.status not in ("valid", "invalid"):
            raise StoreError(f"status = {r.status!r}; must be 'valid' or 'invalid'")
        rec = asdict(r)
        rec.pop("repeat_rows")
        rec.pop("op_rows")
        rec.pop("id")
        rec["created"] = r.created or time.strftime("%Y-%m-%dT%H:%M:%S%z")
        for k in JSON_FIELDS:
            rec[k] = json.dumps(rec[k], sort_keys=True)
        rec["config_key"] = r.config_key
        cols = ", ".join(rec)
        marks = ", ".join(f":{k}" for k in rec)
        cur = self.db.cursor()
        try:
            cur.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as e:  # another process holds the store
            raise StoreError(f"{self.path}: cannot write the result ({e}); another process "
                             f"held the store for {BUSY_TIMEOUT_S:g} s. Nothing was written; "
                             "run again when it is free") from e
        try:
            cur.execute(f"INSERT INTO results ({cols}) VALUES ({marks})", rec)
            rid = cur.lastrowid
            for i, rep in enumerate(r.repeat_rows):
                cur.execute(
                    "INSERT INTO repeats VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (rid, i, rep.get("count"), rep.get("median_us"), rep.get("avg_us"),
                     rep.get("std_us"), rep.get("min_us"), rep.get("max_us"), rep.get("p5_us"),
                     rep.get("p95_us"), rep.get("raw")),
                )
            for i, op in enumerate(r.op_rows):
                cur.execute(
                    "INSERT INTO ops VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (rid, i, op["node_type"], op["name"], op["avg_ms"], op.get("first_ms"),
                     op.get("percent")),
                )
            cur.execute("COMMIT")
        except (KeyError, TypeError) as e:
            if self.db.in_transaction:
                cur.execute("ROLLBACK")
            raise StoreError(f"malformed result ({e!r} missing or of the wrong type); nothing "
                             "was written") from e
        except BaseException:
            if self.db.in_transaction:  # a failed COMMIT may have ended it already
                cur.execute("ROLLBACK")
            raise
        r.id, r.created = rid, rec["created"]
        return rid

    def _row(self, row: sqlite3.Row) -> Result:
        d = dict(row)
        d.pop("config_key")
        for k in JSON_FIELDS:
            d[k] = json.loads(d[k]) if d[k] else ({} if k != "flags" else [])
        r = Result(**d)
        r.repeat_rows = [dict(x) for x in self._q(
            "SELECT * FROM repeats WHERE result_id=? ORDER BY idx", (r.id,))]
        r.op_rows = [dict(x) for x in self._q(
            "SELECT * FROM ops WHERE result_id=? ORDER BY idx", (r.id,))]
        return r

    def _q(self, sql: str, args=()):
        self.db.row_factory = sqlite3.Row
        return self.db.execute(sql, args).fetchall()

    def get(self, rid: int) -> Result:
        rows = self._q("SELECT * FROM results WHERE id=?", (rid,))
        if not rows:
            raise StoreError(f"no result with id {rid} in {self.path}")
        return self._row(rows[0])

    def results(self, device: str | None = None, model_sha256: str | None = None,
                status: str | None = "valid", config: str | None = None,
                label: str | None = None) -> list[Result]:
        sql, args = "SELECT * FROM results WHERE 1=1", []
        for col, val in (("device", device), ("model_sha256", model_sha256), ("status", status),
                         ("config_key", config), ("label", label)):
            if val is not None:
                sql += f" AND {col}=?"
                args.append(val)
        return [self._row(r) for r in self._q(sql + " ORDER BY id", args)]

    def count(self, status: str | None = None) -> int:
        if status is None:
            return self._q("SELECT COUNT(*) AS n FROM results")[0]["n"]
        return self._q("SELECT COUNT(*) AS n FROM results WHERE status=?", (status,))[0]["n"]
