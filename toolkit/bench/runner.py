"""``evit-bench run``: a suite on every selected device at once, one worker per device.

Each measurement goes through the device layer (hygiene, timeouts) into the SQLite result
store, tagged with the bench run id, the suite, the model's suite name, the mode, the git commit
and whether the tree was dirty. A device that fails (disconnects, times out) loses its
remaining jobs, which are reported; the other devices carry on.
"""

from __future__ import annotations

import contextlib
import hashlib
import sqlite3
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from toolkit.devices import measure as measuring
from toolkit.devices.base import (
    DeviceError,
    DeviceGone,
    DeviceTimeout,
    RunSpec,
    resolve_delegate,
)
from toolkit.devices.measure import MeasurementError, delegation_text
from toolkit.devices.store import ResultStore, StoreError
from toolkit.fileio import cache_dir

from .suite import ModelSpec, Suite, SuiteError


def git_state(cwd: str | Path = ".") -> tuple[str, bool]:
    """(commit, dirty) of the git checkout at cwd; ("", False) outside git."""
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True,
                             text=True, timeout=10)
        if sha.returncode != 0:
            return "", False
        st = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd,
                            capture_output=True, text=True, timeout=10)
        return sha.stdout.strip(), bool(st.stdout.strip())
    except (OSError, subprocess.TimeoutExpired):
        return "", False


def model_file(m: ModelSpec) -> str:
    """The .tflite for a suite model; named models are exported once into the cache."""
    if m.path:
        return m.path
    import torch

    from toolkit.export import export_subnet, optimize_for_export  # noqa: F401
    from toolkit.zoo import create_model, get_arch

    cache = cache_dir("bench")
    tag = hashlib.sha256(f"{m.named}|{m.precision}|{m.num_classes}|{m.supernet}".encode())
    path = cache / f"{m.named}-{m.precision}-{tag.hexdigest()[:10]}.tflite"
    if not path.is_file():
        cache.mkdir(parents=True, exist_ok=True)
        torch.manual_seed(0)
        net = create_model(m.named, num_classes=m.num_classes,
                           supernet=m.supernet or None).eval()
        r = get_arch(m.named).resolution
        calib = [torch.randn(1, 3, r, r) for _ in range(8)] if m.precision == "int8" else None
        export_subnet(net, path, "tflite", m.precision, parity_inputs=torch.randn(2, 3, r, r),
                      calibration=calib)
    return str(path)


@dataclass
class Job:
    device: object
    model: ModelSpec
    mode: object  # ModeSpec


@dataclass
class RunSummary:
    run_id: str
    suite: str
    git: str
    dirty: bool
    results: list = field(default_factory=list)  # stored result ids
    failures: list = field(default_factory=list)  # (device, model, mode, error)
    devices: list = field(default_factory=list)
    expected: int = 0  # jobs: models x modes x devices; each ends as a result or a failure

    @property
    def ok(self) -> bool:
        """Every job measured, none failed (what a CI gate checks)."""
        return not self.failures and len(self.results) == self.expected > 0


def run_bench(suite_path: str | Path, store_path: str | Path, devices: list[str] | None = None,
              benchmark_binary: str | None = None, adb_port: int | None = None,
              fallback_host: bool = False, run_id: str | None = None,
              log: Callable[[str], None] = print) -> RunSummary:
    """``evit-bench run``: load the suite, open its devices (or ``devices``, names as in a
    suite), run it into the store."""
    from toolkit.devices.resolve import resolve_devices

    from .suite import load_suite

    suite = load_suite(suite_path)
    binary = None
    if benchmark_binary:
        from toolkit.devices.binary import resolve_binary

        binary = resolve_binary(benchmark_binary)
    devs = resolve_devices(devices or suite.devices, adb_port, binary, fallback_host, log=log)
    return run_suite(suite, devs, store_path, run_id=run_id, log=log)


def run_suite(suite: Suite, devices: list, store_path: str | Path,
              log: Callable[[str], None] = print, run_id: str | None = None) -> RunSummary:
    git, dirty = git_state()
    run_id = run_id or time.strftime("%Y%m%d-%H%M%S") + (f"-{git[:8]}" if git else "")
    summary = RunSummary(run_id, suite.name, git, dirty,
                         devices=[f"{d.profile.name}:{d.serial}" for d in devices])
    try:  # every device must have the suite's accelerator: checked before any work
        delegates = {d.serial: resolve_delegate(suite.accelerator, None, d.profile)
                     for d in devices}
    except ValueError as e:
        raise SuiteError(f"{suite.source}: accelerator {suite.accelerator}: {e}") from None
    if not devices:
        raise SuiteError(f"{suite.source}: no device to run on (devices: {suite.devices})")
    for d in devices:  # every named mode must exist on every device: checked before any work
        for i, mode in enumerate(suite.modes):
            if mode.name not in ("default", "custom") and mode.name not in d.profile.modes:
                raise SuiteError(
                    f"{suite.source}: modes[{i}] = {mode.name!r} is not a mode of "
                    f"{d.profile.name} ({d.serial}); choose default, one of "
                    f"{', '.join(d.profile.modes)}, or {{mask: '70', threads: 1}}")
    with ResultStore(store_path) as st:  # a new store is set up once, before the workers
        from .compare import bench_runs

        if any(rid == run_id for rid, _, _ in bench_runs(st)):
            raise SuiteError(f"--run-id {run_id!r} already names a bench run in {store_path}; "
                             "choose a new id (a reused id would merge two runs)")
    files = {m.name: model_file(m) for m in suite.models}  # export before the workers start
    jobs = [(m, mode) for m in suite.models for mode in suite.modes]
    bench = _Bench(suite, store_path, run_id, git, dirty, delegates, files, jobs, summary, log)
    worker = bench.worker
    threads = [threading.Thread(target=worker, args=(d,), daemon=True) for d in devices]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for dev in devices:  # whatever a worker did not reach still ends as a failure
        for m, mode in jobs[bench.finished.get(dev.serial, 0):]:
            bench.fail(dev, m, mode, "not run: the device's worker stopped early")
    summary.expected = len(jobs) * len(devices)
    return summary


# what measuring one job may raise that is the job's failure, not the bench's: the device
# (gone, timed out, refused), the store (locked by another process, full disk), a
# mode or mask the profile refuses (ValueError)
JOB_ERRORS = (MeasurementError, DeviceError, StoreError, sqlite3.Error, OSError, ValueError)


@dataclass
class _Bench:
    """One bench run's shared state; ``worker(device)`` runs every job on one device."""
    suite: Suite
    store_path: str | Path
    run_id: str
    git: str
    dirty: bool
    delegates: dict
    files: dict
    jobs: list
    summary: RunSummary
    log: Callable[[str], None]
    finished: dict = field(default_factory=dict)  # serial -> jobs that ended
    lock: threading.Lock = field(default_factory=threading.Lock)

    def fail(self, dev, m, mode, error: str) -> None:
        with self.lock:
            self.summary.failures.append((dev.profile.name, dev.serial, m.name, mode.label,
                                          error))
        self.log(f"{dev.profile.name} ({dev.serial}) {m.name} [{mode.label}]: FAILED {error}")

    def spec(self, dev, m, mode) -> RunSpec:
        s = self.suite
        return RunSpec(mode="" if mode.name in ("default", "custom") else mode.name,
                       mask=mode.mask, threads=mode.threads, warmup_runs=s.warmup,
                       num_runs=s.runs, repeats=s.repeats, min_secs=s.min_secs,
                       op_profiling=s.per_layer if m.per_layer is None else m.per_layer,
                       delegate=self.delegates[dev.serial], timeout_s=s.timeout)

    def measured(self, dev, m, mode, r) -> None:
        with self.lock:
            self.summary.results.append(r.id)
        stat = dev.profile.statistic  # what compare and the predictors use
        first = (f"{stat} {r.latency_ms(stat):.4g} ms, median {r.median_ms:.4g}"
                 if stat != "median" else f"median {r.median_ms:.4g} ms")
        mem = f", peak {r.peak_memory_mb:.1f} MB" if r.peak_memory_mb is not None else ""
        self.log(f"{dev.profile.name} ({dev.serial}) {m.name} [{mode.label}]: {first}, "
                 f"p90 {r.p90_ms:.4g}, std {r.std_ms:.2g}{mem}, {delegation_text(r)}")

    def worker(self, dev) -> None:
        """Every job on ``dev``; a lost device fails its remaining jobs."""
        try:
            store = ResultStore(self.store_path)  # one connection per worker (WAL allows it)
        except (StoreError, sqlite3.Error, OSError) as e:  # every job still ends as a failure
            for m, mode in self.jobs:
                self.fail(dev, m, mode, f"cannot open the result store: {type(e).__name__}: {e}")
            self.finished[dev.serial] = len(self.jobs)
            return
        done = 0
        try:
            for m, mode in self.jobs:
                meta = {"bench_run": self.run_id, "suite": self.suite.name, "model": m.name,
                        "mode": mode.label, "git": self.git, "dirty": self.dirty}
                try:
                    r = measuring.measure(dev, self.files[m.name], self.spec(dev, m, mode),
                                          store=store, label=self.suite.name, meta=meta)
                except JOB_ERRORS as e:
                    done += 1
                    known = isinstance(e, (MeasurementError, DeviceError))
                    self.fail(dev, m, mode, str(e) if known else f"{type(e).__name__}: {e}")
                    if isinstance(e.__cause__ if isinstance(e, MeasurementError) else e,
                                  (DeviceGone, DeviceTimeout)):
                        self.log(f"{dev.serial}: device lost; its remaining jobs fail")
                        for m2, mode2 in self.jobs[done:]:
                            self.fail(dev, m2, mode2, f"not run: {dev.serial} was lost earlier")
                        done = len(self.jobs)
                        return
                    continue
                done += 1
                self.measured(dev, m, mode, r)
        finally:
            self.finished[dev.serial] = done
            with contextlib.suppress(sqlite3.Error):
                store.close()
