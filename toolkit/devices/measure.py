"""Measure one model on one device with hygiene, and store the result with its provenance.

A measurement is ``repeats`` separate benchmark_model invocations of ``num_runs`` timed runs
each (after ``warmup_runs``), all with one binary, one thread count and one core mask. Before
each invocation the device's thermal state is read; a throttled device (thermal status
MODERATE or worse, or a capped core) gets a bounded wait to cool down, and if it is still
throttled the result carries a flag. The summary statistics are over the invocations'
medians (benchmark_model prints per-invocation statistics, not every run): median, p90, std.
Op profiling, when asked, is one extra invocation after the timed ones, so the profiler's
overhead never enters the latency figures.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import tempfile
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import numpy as np

from toolkit.fileio import sha256_file

from .base import Device, DeviceError, RunSpec
from .benchmark_model import BenchmarkParseError, parse_op_csv, parse_output
from .host import HostDevice, runtime_versions
from .hygiene import wait_for_cooldown
from .store import Result, ResultStore


class MeasurementError(RuntimeError):
    """A measurement failed; nothing was stored as valid. ``result`` holds what is known."""

    def __init__(self, message: str, result: Result):
        super().__init__(message)
        self.result = result


def _repeat_row(out, raw: str) -> dict:
    r = out.runs
    return {"count": r.count, "median_us": r.median, "avg_us": r.avg, "std_us": r.std,
            "min_us": r.min, "max_us": r.max, "p5_us": r.p5, "p95_us": r.p95, "raw": raw}


def measure(device: Device, model: str | Path, spec: RunSpec | None = None,
            store: ResultStore | None = None, label: str = "", meta: dict | None = None,
            progress: Callable[[str], None] = lambda s: None) -> Result:
    model = str(model)
    spec = spec or RunSpec()
    if not os.path.isfile(model):
        raise DeviceError(f"model {model} does not exist")
    mask, threads, mode = spec.resolve(device.profile)
    runtime, binary_sha = device.runtime_id()
    result = Result(
        device=device.profile.name, serial=device.serial, fingerprint=device.fingerprint(),
        model_name=Path(model).name, model_sha256=sha256_file(model),
        model_bytes=os.path.getsize(model), runtime=runtime, binary_sha256=binary_sha,
        mode=mode, mask=mask, threads=threads, delegate=spec.delegate,
        warmup_runs=spec.warmup_runs, num_runs=spec.num_runs, repeats=spec.repeats,
        versions=runtime_versions(), label=label, meta=dict(meta or {}),
    )
    if spec.min_secs > 0:
        result.meta.setdefault("min_secs", spec.min_secs)
    try:
        remote = device.prepare_model(model)
        centers, inits = [], []
        for i in range(spec.repeats):
            snap, waited = wait_for_cooldown(device.snapshot, spec.max_cooldown_s,
                                             spec.cooldown_poll_s)
            if i == 0:
                result.thermal_before = snap.to_dict()
            if waited > 0.5:
                result.flags.append(f"waited {waited:.0f}s for cool-down before repeat {i}")
            if snap.throttled:
                result.flags.append(
                    f"throttled during repeat {i}: thermal status {snap.thermal_status}, "
                    f"capped {', '.join(snap.capped()) or 'none'}"
                )
            progress(f"{device.profile.name}: repeat {i + 1}/{spec.repeats}")
            text = device.run_benchmark(spec.flags(remote, threads), mask, spec.timeout_s)
            out = parse_output(text)
            _record_memory_and_delegation(result, out, spec.delegate)
            result.repeat_rows.append(_repeat_row(out, text if i == 0 else ""))
            centers.append(out.runs.center_us / 1000)
            if out.init_us is not None:
                inits.append(out.init_us / 1000)
        if spec.op_profiling:
            progress(f"{device.profile.name}: op profiling")
            with tempfile.TemporaryDirectory() as tmp:
                csv_path = (os.path.join(tmp, "ops.csv") if isinstance(device, HostDevice)
                            else remote + ".ops.csv")
                text = device.run_benchmark(spec.flags(remote, threads, csv=csv_path), mask,
                                            spec.timeout_s)
                ops = parse_output(text).ops
                csv_text = device.fetch_op_csv(csv_path)
                if csv_text:
                    ops = parse_op_csv(csv_text) or ops
            result.op_rows = [
                {k: v for k, v in asdict(o).items()
                 if k in ("node_type", "name", "avg_ms", "first_ms", "percent")} for o in ops
            ]
        after = device.snapshot()
        result.thermal_after = after.to_dict()
        if after.throttled:
            result.flags.append(f"throttled after the run: capped {', '.join(after.capped())}")
        arr = np.asarray(centers)
        result.median_ms = float(np.median(arr))
        result.p90_ms = float(np.percentile(arr, 90))
        result.std_ms = float(arr.std(ddof=1)) if len(arr) > 1 else 0.0
        result.mean_ms = float(statistics.fmean(
            r["avg_us"] / 1000 if r["avg_us"] is not None else c
            for r, c in zip(result.repeat_rows, centers)))
        result.min_ms = float(arr.min())
        result.max_ms = float(arr.max())
        result.init_ms = float(np.median(inits)) if inits else None
    except (DeviceError, BenchmarkParseError) as e:
        result.status, result.error = "invalid", f"{type(e).__name__}: {e}"
        if store is not None:
            store.add(result)
        raise MeasurementError(
            f"measurement of {Path(model).name} on {device.profile.name} ({device.serial}) "
            f"failed: {e}", result) from e
    finally:
        with contextlib.suppress(DeviceError):
            device.cleanup()
    if store is not None:
        store.add(result)
    return result


def _record_memory_and_delegation(result: Result, out, asked: str) -> None:
    """Peak memory (the largest of the invocations) and the delegation the output reports;
    a delegate asked for that ran no node is an error (the run measured the CPU), one that ran
    part of the graph is flagged with the node counts."""
    peak = out.peak_mb
    if peak is not None:
        result.peak_memory_mb = max(peak, result.peak_memory_mb or 0.0)
    if result.applied_delegate is None and (out.applied or out.total_nodes is not None):
        result.applied_delegate = out.applied or "none"
        result.delegated_nodes, result.total_nodes = out.delegated_nodes, out.total_nodes
        result.partitions = out.partitions
    wanted = {"gpu": "gpu", "nnapi": "nnapi", "xnnpack": "xnnpack"}.get(asked)
    if wanted is None or out.total_nodes is None and out.applied is None:
        return  # plain CPU kernels asked, or the build prints no delegation lines
    counts = (f"{out.delegated_nodes} of {out.total_nodes} nodes" if out.total_nodes is not None
              else "no node counts printed")
    if out.applied != wanted:
        raise DeviceError(f"the {asked} delegate did not apply ({counts}, delegate "
                          f"{out.applied or 'none'}): this run measured the CPU kernels, not "
                          f"{asked}; check the model's ops against the delegate")
    if out.fully_delegated is False:
        flag = (f"{asked} ran {counts} in {out.partitions or '?'} partition(s); the rest ran "
                "on the CPU kernels")
        if flag not in result.flags:
            result.flags.append(flag)


def summary(r: Result) -> str:
    lines = [
        f"{r.model_name} on {r.device} ({r.serial}), {r.mode}: mask {r.mask}, "
        f"{r.threads} thread(s), {r.delegate}",
        f"  latency: median {r.median_ms:.4g} ms   p90 {r.p90_ms:.4g} ms   std {r.std_ms:.3g} ms   "
        f"best {r.best_ms or float('nan'):.4g} ms   (over {r.repeats} invocations x "
        f"{r.num_runs} runs; init {r.init_ms or 0:.1f} ms)",
        f"  thermal: status {r.thermal_before.get('thermal_status')} -> "
        f"{r.thermal_after.get('thermal_status')}, max temp "
        f"{r.thermal_before.get('max_temp_c')} -> {r.thermal_after.get('max_temp_c')} C",
        f"  runtime: {r.runtime} {r.binary_sha256[:24]}   model sha256 {r.model_sha256[:16]}",
        f"  memory: peak {_mb(r.peak_memory_mb)}   delegation: {delegation_text(r)}",
    ]
    if r.flags:
        lines.append("  flags: " + "; ".join(r.flags))
    return "\n".join(lines)


def layer_table(r: Result, top: int = 0) -> str:
    rows = sorted(r.op_rows, key=lambda o: -o["avg_ms"])[:top] if top else r.op_rows
    total = sum(o["avg_ms"] for o in r.op_rows) or 1.0
    out = [f"{'#':>4}  {'node type':<24} {'avg ms':>9} {'%':>7}  name"]
    for i, o in enumerate(rows):
        out.append(f"{i:>4}  {o['node_type'][:24]:<24} {o['avg_ms']:9.3f} "
                   f"{100 * o['avg_ms'] / total:6.2f}%  {o['name'][:60]}")
    out.append(f"      {'sum':<24} {total:9.3f}")
    return "\n".join(out)


def _mb(v: float | None) -> str:
    return "not reported" if v is None else f"{v:.1f} MB"


def delegation_text(r: Result) -> str:
    """e.g. 'xnnpack 716/716 nodes (1 partition)', 'none (CPU kernels)', 'not reported'."""
    if r.applied_delegate is None:
        return "not reported"
    if r.applied_delegate == "none":
        return "none (CPU kernels)"
    nodes = (f" {r.delegated_nodes}/{r.total_nodes} nodes" if r.total_nodes is not None else "")
    parts = f" ({r.partitions} partition{'s' if r.partitions != 1 else ''})" \
        if r.partitions is not None else ""
    return f"{r.applied_delegate}{nodes}{parts}"
