"""``evit-bench run``: a suite on every selected device at once, one worker per device.

Each measurement goes through the device layer (hygiene, timeouts) into the SQLite result
store, tagged with the bench run id, the suite, the model's suite name, the mode, the git commit
and whether the tree was dirty. A device that fails (disconnects, times out) loses its
remaining jobs, which are reported; the other devices carry on.
"""

from __future__ import annotations

import contextlib
import hashlib
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from toolkit.devices.base import (
    DeviceError,
    DeviceGone,
    DeviceTimeout,
    RunSpec,
    resolve_delegate,
)
from toolkit.devices.measure import delegation_text
from toolkit.devices.store import ResultStore
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


def resolve_devices(names: list[str], client_factory=None, binary=None,
                    fallback_host: bool = False, log: Callable[[str], None] = print) -> list:
    from device_profiles import ProfileError, get_profile
    from toolkit.devices.host import HostDevice

    devices, phones_wanted = [], []
    for n in names:
        if n.lower() in ("host", "cpu", "local", "this-machine"):
            devices.append(HostDevice())
        else:
            phones_wanted.append(n)
    if phones_wanted:
        from toolkit.devices.adb import AdbDevice, client, list_attached

        try:
            c = client_factory() if client_factory else client()
            attached = [d for d in list_attached(c) if d.state == "device" and d.profile]
        except (DeviceError, OSError) as e:
            attached, c = [], None
            log(f"no adb server: {e}")
        chosen = {}
        for n in phones_wanted:
            if n == "all":
                hits = attached
            else:
                try:
                    prof = get_profile(n).name
                    hits = [d for d in attached if d.profile.name == prof]
                except ProfileError:
                    hits = [d for d in attached if d.serial == n]
            for d in hits:
                chosen[d.serial] = d
        if phones_wanted and not chosen:
            if not fallback_host:
                raise SuiteError(f"no attached phone matches {phones_wanted}; attach one, or run "
                                 "with --fallback-host to use this machine")
            log(f"no attached phone matches {phones_wanted}: falling back to the host")
            if not any(isinstance(d, HostDevice) for d in devices):
                devices.append(HostDevice())
        if chosen and binary is None:
            raise SuiteError("phones need TFLite's benchmark_model: pass --benchmark-binary PATH")
        for d in chosen.values():
            devices.append(AdbDevice(c, d.serial, profile=d.profile, binary=binary))
    return devices


def run_suite(suite: Suite, devices: list, store_path: str | Path,
              log: Callable[[str], None] = print, run_id: str | None = None) -> RunSummary:
    from toolkit.devices.measure import MeasurementError, measure

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
    lock = threading.Lock()

    jobs = [(m, mode) for m in suite.models for mode in suite.modes]
    finished: dict[str, int] = {}  # device serial -> jobs that ended (result or failure)

    def fail(dev, m, mode, error: str) -> None:
        with lock:
            summary.failures.append((dev.profile.name, dev.serial, m.name, mode.label, error))
        log(f"{dev.profile.name} ({dev.serial}) {m.name} [{mode.label}]: FAILED {error}")

    def worker(dev) -> None:
        done = 0
        try:
            store = ResultStore(store_path)  # one connection per worker (WAL allows it)
        except Exception as e:  # noqa: BLE001 - every job still ends as a recorded failure
            for m, mode in jobs:
                fail(dev, m, mode, f"cannot open the result store: {type(e).__name__}: {e}")
            finished[dev.serial] = len(jobs)
            return
        try:
            for m, mode in jobs:
                done += 1
                try:
                    spec = RunSpec(mode="" if mode.name in ("default", "custom") else mode.name,
                                   mask=mode.mask, threads=mode.threads,
                                   warmup_runs=suite.warmup, num_runs=suite.runs,
                                   repeats=suite.repeats, min_secs=suite.min_secs,
                                   op_profiling=(suite.per_layer if m.per_layer is None
                                                 else m.per_layer),
                                   delegate=delegates[dev.serial], timeout_s=suite.timeout)
                    meta = {"bench_run": run_id, "suite": suite.name, "model": m.name,
                            "mode": mode.label, "git": git, "dirty": dirty}
                    r = measure(dev, files[m.name], spec, store=store, label=suite.name,
                                meta=meta)
                except (MeasurementError, DeviceError) as e:
                    fail(dev, m, mode, str(e))
                    cause = e.__cause__ if isinstance(e, MeasurementError) else e
                    if isinstance(cause, (DeviceGone, DeviceTimeout)):
                        log(f"{dev.serial}: device lost; its remaining jobs fail")
                        for m2, mode2 in jobs[done:]:
                            fail(dev, m2, mode2, f"not run: {dev.serial} was lost earlier")
                        done = len(jobs)
                        return
                    continue
                except Exception as e:  # noqa: BLE001 - a bug or a locked store: recorded
                    fail(dev, m, mode, f"{type(e).__name__}: {e}")
                    continue
                with lock:
                    summary.results.append(r.id)
                stat = dev.profile.statistic  # what compare and the predictors use
                first = (f"{stat} {r.latency_ms(stat):.4g} ms, median {r.median_ms:.4g}"
                         if stat != "median" else f"median {r.median_ms:.4g} ms")
                mem = (f", peak {r.peak_memory_mb:.1f} MB" if r.peak_memory_mb is not None
                       else "")
                log(f"{dev.profile.name} ({dev.serial}) {m.name} [{mode.label}]: {first}, "
                    f"p90 {r.p90_ms:.4g}, std {r.std_ms:.2g}{mem}, {delegation_text(r)}")
        finally:
            finished[dev.serial] = done
            with contextlib.suppress(Exception):
                store.close()

    threads = [threading.Thread(target=worker, args=(d,), daemon=True) for d in devices]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for dev in devices:  # whatever a worker did not reach still ends as a failure
        for m, mode in jobs[finished.get(dev.serial, 0):]:
            fail(dev, m, mode, "not run: the device's worker stopped early")
    summary.expected = len(jobs) * len(devices)
    return summary
