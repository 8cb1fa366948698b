"""The whole pipeline on embedded defaults, on this machine, in minutes: ``evit-demo``'s job.

train -> profile the host -> search (host, pixel4) -> export both -> benchmark them on the
host beside the profile's subnets (this machine's speed now) -> summary table. Each step
logs the equivalent command line (so it can be run by hand) and leaves its files in
``DemoConfig.out``. Training and the searches run here as library calls; the profiling
campaign, the exports (side by side, each with a timeout) and the benchmark run as their
commands in child processes. Run again after an interruption and finished steps are kept:
training resumes from its last checkpoint, the campaign and the searches from their logs.

>>> summary = run_demo(DemoConfig(out="runs/demo", train_steps=60))
>>> print(summary_table(summary))
"""

from __future__ import annotations

import json
import math
import os
import shlex
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from toolkit.fileio import atomic_copy, atomic_write_json
from toolkit.search.folder import already_exported, artifact_path
from toolkit.space import SPACE

__all__ = ["DemoConfig", "DemoError", "DemoConfigError", "run_demo", "export_all",
           "wait_or_kill", "run_module", "auto_host_budget", "speed_change", "summary_table",
           "EXPORT_TIMEOUT_S", "MIN_LEVEL"]

Log = Callable[[str], None]
EXPORT_TIMEOUT_S = 30 * 60.0  # one evit-export (the exports run side by side): then killed
MIN_LEVEL = round(SPACE.mflops_range()[0], 1)  # MFLOPs: below it no subnet exists
TOTAL = 6  # steps


class DemoError(RuntimeError):
    """A step failed; the message names it and how to go on."""


class DemoConfigError(ValueError):
    """A DemoConfig field out of range; the message names the field, value and range."""


@dataclass
class DemoConfig:
    out: str = "runs/demo"
    train_steps: int = 24  # the digits, batch 16 (evit-train's default run is 267 steps)
    levels: tuple[float, ...] = (60.0, 100.0, 150.0)  # MFLOPs levels trained and searched
    kernels: int = 20  # host campaign: kernels measured
    subnets: int = 6  # host campaign: whole subnets for the overhead fit (scale + offset)
    host_ms: float | None = None  # host budget; None: the median predicted latency of
    # subnets at the middle level
    pixel4_ms: float = 11.0  # pixel4 budget (shipped predictor): about a 100-MFLOPs subnet
    references: int = 4  # step 2's subnets measured again in step 6: this machine's speed now
    population: int = 6
    generations: int = 1
    calib_images: int = 32  # fitness: BN recalibration images per subnet
    search_images: int = 96  # fitness: top-1 on this many search-split images
    seed: int = 0

    def validate(self) -> None:
        levels = list(self.levels)
        if not levels or sorted(levels) != levels or levels[0] < MIN_LEVEL:
            raise DemoConfigError(f"--levels {levels}: give increasing MFLOPs levels "
                                  f">= {MIN_LEVEL}")
        for name, low in (("train_steps", 1), ("kernels", 1), ("population", 1),
                          ("calib_images", 1), ("search_images", 1), ("generations", 0),
                          ("subnets", 0), ("references", 0)):
            v = getattr(self, name)
            if v < low:
                raise DemoConfigError(f"--{name.replace('_', '-')} {v}: give a whole number "
                                      f">= {low}")

    @property
    def mflops_window(self) -> tuple[float, float]:
        """Where both searches land (budgets near the middle level): the part profiled."""
        mid = self.levels[len(self.levels) // 2]
        return (max(MIN_LEVEL, float(round(0.7 * mid))), float(round(1.4 * mid)))


# -- running steps -----------------------------------------------------------------------------
def _step(n: int, title: str, prog: str, argv: list[str], call: Callable[[], None],
          log: Log) -> float:
    """Log step ``n`` and its command line, run ``call``; seconds taken."""
    log(f"\n[{n}/{TOTAL}] {title}\n$ {prog} {shlex.join(argv)}")
    t0 = time.perf_counter()
    call()
    dt = time.perf_counter() - t0
    log(f"[{n}/{TOTAL}] done in {dt:.0f} s")
    return dt


def _failed(n: int, prog: str, what: object) -> DemoError:
    return DemoError(f"step {n} ({prog}) failed: {what}; fix it and run evit-demo again "
                     "(finished steps are kept)")


def _child_env() -> dict[str, str]:
    return {**os.environ, "PYTHONUNBUFFERED": "1"}


def run_module(module: str, argv: list[str], log: Log) -> int:
    """``python -m module argv`` in a child process; its stdout lines go to ``log``, its
    stderr to this process's stderr. The exit code; the child is killed if interrupted."""
    proc = subprocess.Popen([sys.executable, "-m", module, *argv], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, errors="replace",
                            env=_child_env())

    def relay_stderr() -> None:
        for line in proc.stderr:
            print(line, end="", file=sys.stderr, flush=True)

    t = threading.Thread(target=relay_stderr, daemon=True)
    t.start()
    try:
        for line in proc.stdout:
            log(line.rstrip("\n"))
        return proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        t.join(timeout=5)


def _module_step(n: int, title: str, prog: str, module: str, argv: list[str],
                 log: Log) -> float:
    def call() -> None:
        rc = run_module(module, argv, log)
        if rc != 0:
            raise _failed(n, prog, f"exit code {rc} (see above)")

    return _step(n, title, prog, argv, call, log)


def wait_or_kill(proc, timeout_s: float, log_file: str | Path, what: str,
                 started: float | None = None) -> int:
    """``proc``'s exit code; still running ``timeout_s`` after ``started`` (a
    ``time.monotonic()``; default now), it is killed and DemoError names its log."""
    started = time.monotonic() if started is None else started
    try:
        return proc.wait(timeout=max(0.0, started + timeout_s - time.monotonic()))
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise DemoError(f"{what} did not finish in {timeout_s:g} s and was killed; its log: "
                        f"{log_file}") from None


# -- 1. train ----------------------------------------------------------------------------------
def _train(cfg: DemoConfig, tdir: Path, log: Log) -> float:
    from toolkit.checkpoint import CheckpointError
    from toolkit.data import DataError
    from toolkit.space import ArchError
    from toolkit.train.config import ConfigError, TrainConfig
    from toolkit.train.teachers import TeacherError
    from toolkit.train.trainer import train

    if (tdir / "summary.json").is_file() and (tdir / "supernet.pt").is_file():
        log(f"\n[1/{TOTAL}] train: already done ({tdir / 'supernet.pt'})")
        return 0.0
    levels = tuple(float(v) for v in cfg.levels)
    tcfg = TrainConfig(out=str(tdir), steps=cfg.train_steps, levels=levels, bn_batches=4,
                       eval_images=160, seed=cfg.seed)
    argv = ["--out", str(tdir), "--steps", str(cfg.train_steps), "--levels",
            *(f"{v:g}" for v in levels), "--bn-batches", "4", "--eval-images", "160",
            "--seed", str(cfg.seed)]
    resume = (tdir / "last.pt").is_file()
    # a run killed before its first checkpoint left nothing to keep
    overwrite = not resume and tdir.is_dir() and any(tdir.iterdir())
    argv += ["--resume"] if resume else ["--overwrite"] if overwrite else []

    def call() -> None:
        try:
            res = train(tcfg, resume=resume, overwrite=overwrite)
        except (ConfigError, DataError, CheckpointError, ArchError, TeacherError,
                OSError) as e:
            raise _failed(1, "evit-train", e) from e
        log(f"trained {res.steps} steps in {res.seconds:.0f} s; supernet: {res.checkpoint}")

    return _step(1, "train a supernet on the embedded digits", "evit-train", argv, call, log)


# -- 2. profile --------------------------------------------------------------------------------
def _profile(cfg: DemoConfig, pdir: Path, log: Log) -> float:
    lo, hi = cfg.mflops_window
    # 300 runs, 3 invocations of >= 0.3 s per kernel: the fastest run is steady only when
    # the runs are spread past a shared machine's slow phases; the subnets get what step 6
    # gives the exports (5 x >= 0.5 s): the overhead law is fitted on them
    argv = ["--device", "host", "--kernels", str(cfg.kernels), "--subnets", str(cfg.subnets),
            "--mflops", f"{lo:g}", f"{hi:g}", "--num-classes", "10", "--out", str(pdir),
            "--report", "--no-install", "--runs", "100", "--repeats", "3", "--min-secs", "0.3",
            "--subnet-repeats", "5", "--subnet-min-secs", "0.5"]
    return _module_step(2, "profile this machine's CPU (kernels and whole subnets of "
                        f"{lo:g}-{hi:g} MFLOPs) and train its latency predictor",
                        "evit-profile", "toolkit.cli.profile", argv, log)


# -- 3, 4. search ------------------------------------------------------------------------------
def _predictor_changed(sdir: Path, predictor: Path) -> bool:
    """True when ``sdir`` holds a search made with another version of ``predictor`` (a rerun
    of step 2 re-fits it, e.g. with a new date in its provenance)."""
    from toolkit.fileio import sha256_file

    try:
        old = json.loads((sdir / "search.json").read_text()).get("predictor_sha256")
    except (OSError, ValueError, AttributeError):
        return False
    return old is not None and old != sha256_file(predictor)


def auto_host_budget(predictor_file: Path, level: float, seed: int = 0) -> float:
    """The median predicted host latency of 200 random subnets at ``level`` MFLOPs."""
    import numpy as np

    from toolkit.latency import LatencyPredictor
    from toolkit.space import SearchSpace

    pred = LatencyPredictor.load(predictor_file)
    sp = SearchSpace(seed=seed)
    enc = np.stack([sp.encode(sp.sample_at(level, level + 20)) for _ in range(200)])
    return float(np.round(np.median(pred.predict_encoded(enc)), 2))


def _search(n: int, cfg: DemoConfig, dev: str, budget: float, supernet: Path, sdir: Path,
            predictor: Path | None, log: Log) -> tuple[float, dict]:
    """One search (``dev``'s budget); seconds taken and its best."""
    from toolkit.devices.base import DeviceError
    from toolkit.latency import PredictorError
    from toolkit.search.evolution import SearchConfig, SearchError
    from toolkit.search.run import SearchJob, run_search

    p = cfg.population
    job = SearchJob(latency_ms=(budget,), device=dev,
                    predictor=str(predictor) if predictor else None, supernet=str(supernet),
                    out=str(sdir), calib_images=cfg.calib_images,
                    search_images=cfg.search_images,
                    config=SearchConfig(population=p, generations=cfg.generations,
                                        parents=max(2, p // 2), mutations=max(2, p // 3),
                                        crossovers=max(2, p // 3), seed=cfg.seed),
                    overwrite=predictor is not None and _predictor_changed(sdir, predictor))
    best: dict = {}

    def call() -> None:
        try:
            best.update(run_search(job)["results"][0])
        except (SearchError, PredictorError, DeviceError, ValueError, OSError) as e:
            raise _failed(n, "evit-search", e) from e

    title = (f"search the most accurate subnet within {budget:g} ms on {dev} "
             f"({'the predictor of step 2' if predictor else 'shipped predictor'})")
    return _step(n, title, "evit-search", job.to_argv(), call, log), best


# -- 5. export ---------------------------------------------------------------------------------
def _plan_exports(bests: dict[str, dict], out: Path, supernet: Path, log: Log
                  ) -> tuple[list[tuple[str, Path, list[str]]], list[tuple[Path, Path]]]:
    """(exports to run: device, artifact, argv), (copies: from, to). Sets each best's
    ``artifact``, and ``same_as`` when another search chose the same subnet."""
    runs, copies = [], []
    first: dict[str, tuple[str, Path]] = {}  # subnet -> (device, artifact) exported first
    for dev, b in bests.items():
        art = artifact_path(out / f"search_{dev}", "latency", b["budget"], "tflite")
        b["artifact"] = str(art)
        key = json.dumps(b["arch"], sort_keys=True)
        if key in first:
            b["same_as"] = first[key][0]
            if not already_exported(art, b["arch"], supernet):
                log(f"{art}: the {dev} search chose the {first[key][0]} search's subnet: "
                    f"a copy of {first[key][1]}, not a second conversion")
                copies.append((first[key][1], art))
            continue
        first[key] = (dev, art)
        if already_exported(art, b["arch"], supernet):
            log(f"{art}: already exported (same subnet, same supernet)")
            continue
        runs.append((dev, art, ["--arch", b["path"], "--supernet", str(supernet), "--format",
                                "tflite", "--out", str(art)]))
    return runs, copies


def _wait_exports(procs: list, timeout_s: float, log: Log) -> list[str]:
    """Wait for the side-by-side exports (each ``timeout_s`` from now); what failed."""
    failed = []
    started = time.monotonic()
    for dev, art, logf, proc in procs:
        try:
            rc = wait_or_kill(proc, timeout_s, logf.name, f"evit-export for {dev}", started)
        except DemoError as e:
            failed.append(f"{dev} ({e})")
            continue
        finally:
            logf.close()
        lines = Path(logf.name).read_text(errors="replace").splitlines()
        if rc != 0:
            failed.append(f"{dev} (exit code {rc}; {logf.name}: "
                          f"{' | '.join(lines[-3:])[-600:]})")
            continue
        log("\n".join(x for x in lines if x.startswith((str(art), "metadata: "))))
    return failed


def export_all(bests: dict[str, dict], out: Path, supernet: Path, log: Log,
               timeout_s: float = EXPORT_TIMEOUT_S) -> float:
    """``evit-export`` each search's best into its search folder, all at once (one process
    each, output in export.log beside it); sets each best's ``artifact``, and ``same_as``
    (the device whose export it copies) when two searches chose one subnet, which converts
    once. An export still running ``timeout_s`` after the start is killed (DemoError names
    its log). Seconds taken."""
    t0 = time.perf_counter()
    runs, copies = _plan_exports(bests, out, supernet, log)
    procs = []
    try:
        for dev, art, argv in runs:
            log(f"$ evit-export {shlex.join(argv)}")
            logf = open(art.parent / "export.log", "w")  # noqa: SIM115 (closed when done)
            procs.append((dev, art, logf, subprocess.Popen(
                [sys.executable, "-m", "toolkit.cli.export", *argv], stdout=logf,
                stderr=subprocess.STDOUT, env=_child_env())))
        failed = _wait_exports(procs, timeout_s, log)
    finally:  # interrupted (^C): no export is left running
        for _, _, logf, proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            logf.close()
    if failed:
        raise DemoError(f"export failed: {'; '.join(failed)}; fix it and run evit-demo again "
                        "(finished steps are kept)")
    for src, dst in copies:  # the sidecar last: a torn copy is never taken as finished
        atomic_copy(src, dst)
        atomic_copy(src.with_name(src.name + ".json"), dst.with_name(dst.name + ".json"))
    return time.perf_counter() - t0


# -- 6. benchmark ------------------------------------------------------------------------------
def _read_jsonl(path: Path) -> list[dict]:
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def _write_suite(cfg: DemoConfig, out: Path, pdir: Path, bests: dict[str, dict]
                 ) -> tuple[Path, list[dict]]:
    """The benchmark suite: the exports interleaved with step 2's whole subnets (so that
    both share the machine's phase); the suite file and the reference subnets' records."""
    from toolkit.latency.artifacts import subnet_tflite
    from toolkit.space import ArchConfig

    refs = _read_jsonl(pdir / "subnets.jsonl")[:cfg.references]  # spread over weights
    classes = json.loads((pdir / "campaign.json").read_text())["config"]["num_classes"]
    ref_files = [subnet_tflite(ArchConfig.from_json(r["arch"]), classes) for r in refs]
    # the per-layer profile (~10 s a model) for the host's best only; a subnet both searches
    # chose is measured once
    exports = [(f"best_{dev}", Path(b["artifact"]), dev == "host") for dev, b in bests.items()
               if "same_as" not in b]
    refs_named = [(f"campaign_subnet_{i + 1}", f, False) for i, f in enumerate(ref_files)]
    models = []
    for i in range(max(len(exports), len(refs_named))):
        models += refs_named[i:i + 1] + exports[i:i + 1]
    suite = out / "bench_suite.yaml"
    suite.write_text("# written by evit-demo: the exports and the subnets of "
                     "step 2 (references for this machine's speed)\nname: demo\nmodels:\n" +
                     "".join(f"  - {{name: {name}, path: {json.dumps(str(path.resolve()))}"
                             f"{', per_layer: true' if per_layer else ''}}}\n"
                             for name, path, per_layer in models) +
                     "devices: [host]\nmodes: [default]\nrepeats: 5\nruns: 100\nmin_secs: 0.5\n"
                     "warmup: 5\n")
    return suite, refs


def _bench(cfg: DemoConfig, out: Path, pdir: Path, bests: dict[str, dict], log: Log
           ) -> tuple[float, str, list[dict]]:
    """Step 6; (seconds, run id, reference records)."""
    suite, refs = _write_suite(cfg, out, pdir, bests)
    store, report_dir = out / "bench.sqlite", out / "bench_report"
    run_id = f"demo-{time.strftime('%Y%m%d-%H%M%S')}"
    dt = _module_step(6, "benchmark both artifacts on this machine (history, per-layer "
                      f"profile) beside {len(refs)} subnet(s) of step 2, and write the report",
                      "evit-bench", "toolkit.cli.bench",
                      ["--store", str(store), "run", str(suite), "--run-id", run_id], log)
    rc = run_module("toolkit.cli.bench", ["--store", str(store), "report", "-o",
                                          str(report_dir)], log)
    if rc != 0:
        log(f"note: the benchmark report was not written (exit code {rc})")
    return dt, run_id, refs


# -- summary -----------------------------------------------------------------------------------
def _host_statistic() -> str:
    from device_profiles import get_profile

    return get_profile("host").statistic


def _measured(store: Path, run_id: str) -> dict[str, float]:
    from toolkit.devices.store import ResultStore

    stat, measured = _host_statistic(), {}
    with ResultStore(store) as st:
        for r in st.results():
            if r.meta.get("bench_run") == run_id:
                measured[r.meta.get("model", r.model_name)] = r.latency_ms(stat)
    return measured


def _rows(bests: dict[str, dict], host_pred: Path, measured: dict[str, float],
          drift: dict | None) -> list[dict[str, Any]]:
    from toolkit.latency import LatencyPredictor
    from toolkit.space import ArchConfig

    host = LatencyPredictor.load(host_pred)
    rows = []
    for dev, b in bests.items():
        art = Path(b["artifact"])
        p = host.predict(ArchConfig.from_dict(b["arch"]))
        m = measured.get(f"best_{b.get('same_as', dev)}")
        rows.append({
            "subnet": f"best for {dev} ({b['budget']:g} ms)", "device": dev,
            "mflops": b["mflops"], "top1_search": b["accuracy"],
            "predicted_ms": b["cost"], "predicted_host_ms": p, "measured_host_ms": m,
            "same_as": b.get("same_as"),
            "size_mb": art.stat().st_size / 1e6, "artifact": str(art),
            "sidecar": str(art) + ".json", "arch": str(Path(b["path"])),
            "host_error": (p / m - 1) if m else None,
            "rescaled_host_ms": p * drift["factor"] if drift else None,
            "rescaled_error": (p * drift["factor"] / m - 1) if (m and drift) else None,
        })
    return rows


def speed_change(refs: list[dict], measured: dict[str, float]) -> dict | None:
    """This machine's speed now against step 2's: the geometric mean of now / then over the
    campaign's subnets measured again (``campaign_subnet_<i>``); None without any."""
    pairs = [(r["latency_ms"], measured.get(f"campaign_subnet_{i + 1}"))
             for i, r in enumerate(refs)]
    pairs = [(a, b) for a, b in pairs if a and b]
    if not pairs:
        return None
    ratios = [b / a for a, b in pairs]
    factor = math.exp(sum(math.log(x) for x in ratios) / len(ratios))
    return {"subnets": len(pairs), "profile_ms": [a for a, _ in pairs],
            "bench_ms": [b for _, b in pairs], "factor": factor, "change": factor - 1,
            "min_change": min(ratios) - 1, "max_change": max(ratios) - 1}


def run_demo(cfg: DemoConfig, log: Log = print) -> dict[str, Any]:
    """Run (or resume) the demo in ``cfg.out``; the summary (also in summary.json). Raises
    DemoConfigError for a bad config, DemoError naming the step that failed."""
    cfg.validate()
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "demo_config.json", asdict(cfg), indent=1)
    t_start = time.perf_counter()
    tdir, pdir = out / "train", out / "profile_host"
    supernet, host_pred = tdir / "supernet.pt", pdir / "host.json"
    times = {"train": _train(cfg, tdir, log), "profile": _profile(cfg, pdir, log),
             "search": 0.0}
    host_ms = cfg.host_ms or auto_host_budget(host_pred, cfg.levels[len(cfg.levels) // 2],
                                              cfg.seed)
    bests: dict[str, dict] = {}
    for i, (dev, budget, pred) in enumerate((("host", host_ms, host_pred),
                                             ("pixel4", cfg.pixel4_ms, None))):
        dt, bests[dev] = _search(3 + i, cfg, dev, budget, supernet, out / f"search_{dev}",
                                 pred, log)
        times["search"] += dt
    # both exports at once: a conversion is mostly one core's work (graph tracing)
    t0 = time.perf_counter()
    log(f"\n[5/{TOTAL}] export both subnets as parity-checked .tflite (two processes at once)")
    times["export"] = export_all(bests, out, supernet, log)
    log(f"[5/{TOTAL}] done in {time.perf_counter() - t0:.0f} s")
    times["bench"], run_id, refs = _bench(cfg, out, pdir, bests, log)
    measured = _measured(out / "bench.sqlite", run_id)
    drift = speed_change(refs, measured)
    report_dir = out / "bench_report"
    plots = [str(pdir / "host_predictor.png")] + [str(out / f"search_{d}" / "front.png")
                                                  for d in bests]
    plots += sorted(str(p) for p in report_dir.glob("*.png")  # the exports' (the references'
                    if "campaign_subnet_" not in p.name)  # plots are in the report too)
    train_summary = json.loads((tdir / "summary.json").read_text())
    summary = {
        "seconds": time.perf_counter() - t_start, "step_seconds": times,
        "train": {"steps": train_summary.get("steps"), "evals": train_summary.get("evals")},
        "host_budget_ms": host_ms, "pixel4_budget_ms": cfg.pixel4_ms,
        "rows": _rows(bests, host_pred, measured, drift),
        "plots": plots, "report": str(report_dir / "report.html"),
        "store": str(out / "bench.sqlite"), "supernet": str(supernet),
        "host_predictor": str(host_pred), "host_drift": drift,
    }
    atomic_write_json(out / "summary.json", summary, indent=1, default=str)
    log("\n" + summary_table(summary))
    return summary


def summary_table(s: dict) -> str:
    lines = [f"evit-demo finished in {s['seconds'] / 60:.1f} min "
             f"({', '.join(f'{k} {v:.0f} s' for k, v in s['step_seconds'].items())})", "",
             f"{'subnet':<26} {'MFLOPs':>7} {'top-1':>6} {'pred. on device':>16} "
             f"{'host pred.':>10} {'host meas.':>10} {'error':>7} {'error*':>7} {'size':>8}"]
    for r in s["rows"]:
        meas = f"{r['measured_host_ms']:.2f}" if r["measured_host_ms"] else "–"
        err = f"{100 * r['host_error']:+.1f}%" if r["host_error"] is not None else "–"
        res = r.get("rescaled_error")
        res = f"{100 * res:+.1f}%" if res is not None else "–"
        lines.append(f"{r['subnet']:<26} {r['mflops']:7.1f} {100 * r['top1_search']:5.1f}% "
                     f"{r['predicted_ms']:11.2f} ms {r['predicted_host_ms']:7.2f} ms "
                     f"{meas:>7} ms {err:>7} {res:>7} {r['size_mb']:5.1f} MB")
    lines += ["", "top-1: on the digits' search split (fitness); host latencies: the "
              f"{_host_statistic()} statistic of the host profile, measured by evit-bench", ""]
    for r in s["rows"]:
        same = (f"; the {r['same_as']} search's subnet, measured once"
                if r.get("same_as") else "")
        lines.append(f"{r['device']:>7}: {r['artifact']} (+ .json sidecar), subnet "
                     f"{r['arch']}{same}")
    d = s.get("host_drift")
    if d:
        lines += [f"error*: against the host prediction rescaled by this CPU's speed change since "
                  f"step 2: its {d['subnets']} whole subnet(s), measured again beside the two "
                  f"above, changed by {100 * d['change']:+.1f}% "
                  f"(each {100 * d['min_change']:+.1f}% to {100 * d['max_change']:+.1f}%); "
                  "error includes that change", ""]
    lines.append(f"  plots: {', '.join(s['plots'])}")
    lines.append(f"  report: {s['report']}   results: {s['store']}")
    lines.append(f"  supernet: {s['supernet']}   host predictor: {s['host_predictor']}")
    return "\n".join(lines)
