"""``evit-demo``: the whole pipeline on embedded defaults, on this machine, in minutes.

    evit-demo                     # train -> profile the host -> search (host, pixel4) -> export
                                  # both -> benchmark them on the host beside the profile's
                                  # subnets (this machine's speed now) -> summary table
    evit-demo --out runs/demo2 --train-steps 60 --kernels 30    # smaller / faster

Every step runs the real command (printed with its arguments, so you can run it yourself) and
leaves its files in --out. Run it again after an interruption and finished steps are kept:
training resumes from its last checkpoint, the profiling campaign and the searches resume from
their logs.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from toolkit.fileio import atomic_write_json


class DemoError(RuntimeError):
    pass


EXPORT_TIMEOUT_S = 30 * 60.0  # one evit-export (the exports run side by side): then killed


def wait_or_kill(proc, timeout_s: float, log_file: str | Path, what: str,
                 started: float | None = None) -> int:
    """``proc``'s exit code; still running ``timeout_s`` after ``started`` (a
    ``time.monotonic()``; default now), it is killed and DemoError names its log."""
    import subprocess

    started = time.monotonic() if started is None else started
    try:
        return proc.wait(timeout=max(0.0, started + timeout_s - time.monotonic()))
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise DemoError(f"{what} did not finish in {timeout_s:g} s and was killed; its log: "
                        f"{log_file}") from None


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

    @property
    def mflops_window(self) -> tuple[float, float]:
        """Where both searches land (budgets near the middle level): the part profiled."""
        mid = self.levels[len(self.levels) // 2]
        return (max(37.4, float(round(0.7 * mid))), float(round(1.4 * mid)))


def _step(n: int, total: int, title: str, prog: str, argv: list[str],
          main: Callable[[list[str]], int], log: Callable[[str], None]) -> float:
    log(f"\n[{n}/{total}] {title}\n$ {prog} {shlex.join(argv)}")
    t0 = time.perf_counter()
    rc = main(argv)
    if rc != 0:
        raise DemoError(f"step {n} ({prog}) failed with exit code {rc}; fix the error above and "
                        "run evit-demo again (finished steps are kept)")
    dt = time.perf_counter() - t0
    log(f"[{n}/{total}] done in {dt:.0f} s")
    return dt


def export_all(bests: dict[str, dict], out: Path, supernet: Path,
               log: Callable[[str], None], timeout_s: float = EXPORT_TIMEOUT_S) -> float:
    """``evit-export`` each search's best into its search folder, all at once (one process
    each, output in export.log beside it); sets each best's ``artifact``, and ``same_as``
    (the device whose export it copies) when two searches chose one subnet, which converts
    once. An export still running ``timeout_s`` after the start is killed (DemoError names
    its log). Seconds taken."""
    import os
    import shutil
    import subprocess

    from toolkit.cli.search import _already_exported

    t0 = time.perf_counter()
    procs, copies = [], []
    first: dict[str, tuple[str, Path]] = {}  # subnet -> (device, artifact) exported first
    for dev, b in bests.items():
        sdir = out / f"search_{dev}"
        art = sdir / f"best_latency_{b['budget']:g}.tflite"
        b["artifact"] = str(art)
        key = json.dumps(b["arch"], sort_keys=True)
        if key in first:
            b["same_as"] = first[key][0]
            if not _already_exported(art, b["arch"], supernet):
                log(f"{art}: the {dev} search chose the {first[key][0]} search's subnet: "
                    f"a copy of {first[key][1]}, not a second conversion")
                copies.append((first[key][1], art))
            continue
        first[key] = (dev, art)
        if _already_exported(art, b["arch"], supernet):
            log(f"{art}: already exported (same subnet, same supernet)")
            continue
        argv = ["--arch", b["path"], "--supernet", str(supernet), "--format", "tflite",
                "--out", str(art)]
        log(f"$ evit-export {shlex.join(argv)}")
        logf = open(sdir / "export.log", "w")  # noqa: SIM115 (closed below)
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        procs.append((dev, art, logf, subprocess.Popen(
            [sys.executable, "-m", "toolkit.cli.export", *argv], stdout=logf,
            stderr=subprocess.STDOUT, env=env)))
    failed = []
    started = time.monotonic()  # they run side by side: each has timeout_s from here
    try:
        for dev, art, logf, proc in procs:
            try:
                rc = wait_or_kill(proc, timeout_s, logf.name, f"evit-export for {dev}",
                                  started)
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
        for f_src, f_dst in ((src, dst), (src.with_name(src.name + ".json"),
                                          dst.with_name(dst.name + ".json"))):
            tmp = f_dst.with_name(f_dst.name + ".part")
            shutil.copyfile(f_src, tmp)
            os.replace(tmp, f_dst)
    return time.perf_counter() - t0


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


def run_demo(cfg: DemoConfig, log: Callable[[str], None] = print) -> dict:
    from toolkit.cli import bench, export, profile, search, train  # noqa: F401

    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "demo_config.json", cfg.__dict__, indent=1, default=list)
    t_start = time.perf_counter()
    times: dict[str, float] = {}
    total = 6
    levels = [f"{v:g}" for v in cfg.levels]
    lo, hi = cfg.mflops_window

    # 1. train -----------------------------------------------------------------------------
    tdir = out / "train"
    argv = ["--out", str(tdir), "--steps", str(cfg.train_steps), "--levels", *levels,
            "--bn-batches", "4", "--eval-images", "160", "--seed", str(cfg.seed)]
    if (tdir / "summary.json").is_file() and (tdir / "supernet.pt").is_file():
        log(f"\n[1/{total}] train: already done ({tdir / 'supernet.pt'})")
        times["train"] = 0.0
    else:
        if (tdir / "last.pt").is_file():
            argv.append("--resume")
        elif tdir.is_dir() and any(tdir.iterdir()):
            argv.append("--overwrite")  # a run killed before its first checkpoint: nothing kept
        times["train"] = _step(1, total, "train a supernet on the embedded digits", "evit-train",
                               argv, train.main, log)
    supernet = tdir / "supernet.pt"
    train_summary = json.loads((tdir / "summary.json").read_text())

    # 2. profile the host ------------------------------------------------------------------
    pdir = out / "profile_host"
    argv = ["--device", "host", "--kernels", str(cfg.kernels), "--subnets", str(cfg.subnets),
            "--mflops", f"{lo:g}", f"{hi:g}", "--num-classes", "10", "--out", str(pdir),
            "--report", "--no-install", "--runs", "100", "--repeats", "3", "--min-secs", "0.3",
            "--subnet-repeats", "5", "--subnet-min-secs", "0.5"]
    # 300 runs, 3 invocations of >= 0.3 s per kernel: a shared VM has slow phases of seconds,
    # and the fastest run is steady only when the runs are spread past them; the 6 subnets
    # get what step 5 gives the exports (5 x >= 0.5 s): the overhead law is fitted on them
    times["profile"] = _step(2, total, "profile this machine's CPU (kernels and whole subnets "
                             f"of {lo:g}-{hi:g} MFLOPs) and train its latency predictor",
                             "evit-profile", argv, profile.main, log)
    host_pred = pdir / "host.json"

    # 3. search: host and pixel4 -----------------------------------------------------------
    host_ms = cfg.host_ms or auto_host_budget(host_pred, cfg.levels[len(cfg.levels) // 2],
                                              cfg.seed)
    evo = ["--population", str(cfg.population), "--generations", str(cfg.generations),
           "--parents", str(max(2, cfg.population // 2)), "--mutations",
           str(max(2, cfg.population // 3)), "--crossovers", str(max(2, cfg.population // 3)),
           "--seed", str(cfg.seed), "--calib-images", str(cfg.calib_images),
           "--search-images", str(cfg.search_images)]
    searches = {
        "host": (["--latency-ms", f"{host_ms:g}", "--device", "host", "--predictor",
                  str(host_pred)], host_ms),
        "pixel4": (["--latency-ms", f"{cfg.pixel4_ms:g}", "--device", "pixel4"], cfg.pixel4_ms),
    }
    times["search"] = 0.0
    bests: dict[str, dict] = {}
    for i, (dev, (budget_args, budget)) in enumerate(searches.items()):
        sdir = out / f"search_{dev}"
        argv = [*budget_args, "--supernet", str(supernet), "--out", str(sdir), *evo]
        if dev == "host" and _predictor_changed(sdir, host_pred):
            argv.append("--overwrite")  # step 2 re-fitted the predictor: a new search
        title = (f"search the most accurate subnet within {budget:g} ms on {dev} "
                 f"({'the predictor of step 2' if dev == 'host' else 'shipped predictor'})")
        times["search"] += _step(3 + i, total, title, "evit-search", argv, search.main, log)
        summ = json.loads((sdir / "summary.json").read_text())
        bests[dev] = summ[0]

    # 5. export both, at once: a conversion is mostly one core's work (graph tracing) ---------
    t0 = time.perf_counter()
    log(f"\n[5/{total}] export both subnets as parity-checked .tflite (two processes at once)")
    times["export"] = export_all(bests, out, supernet, log)
    log(f"[5/{total}] done in {time.perf_counter() - t0:.0f} s")

    # 6. benchmark both artifacts on the host ----------------------------------------------
    # ... beside the whole subnets of step 2 again: how far this machine's speed moved between
    # the profile and the benchmark (a shared VM: one file -15% within 40 minutes)
    from toolkit.latency.profiler import read_jsonl, subnet_tflite
    from toolkit.space import ArchConfig

    refs = list(read_jsonl(pdir / "subnets.jsonl"))[:cfg.references]  # spread over weights
    classes = json.loads((pdir / "campaign.json").read_text())["config"]["num_classes"]
    ref_files = [subnet_tflite(ArchConfig.from_json(r["arch"]), classes) for r in refs]
    # the per-layer profile (~10 s a model here) for the host's best only; a subnet both
    # searches chose is measured once
    exports = [(f"best_{dev}", Path(b["artifact"]), dev == "host") for dev, b in bests.items()
               if "same_as" not in b]
    refs_named = [(f"campaign_subnet_{i + 1}", f, False) for i, f in enumerate(ref_files)]
    models = []  # interleaved, so that the exports and the references share the machine's phase
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
    store = out / "bench.sqlite"
    run_id = f"demo-{time.strftime('%Y%m%d-%H%M%S')}"
    times["bench"] = _step(6, total, "benchmark both artifacts on this machine (history, "
                           f"per-layer profile) beside {len(refs)} subnet(s) of step 2, and "
                           "write the report", "evit-bench",
                           ["--store", str(store), "run", str(suite), "--run-id", run_id],
                           bench.main, log)
    report_dir = out / "bench_report"
    bench.main(["--store", str(store), "report", "-o", str(report_dir)])

    # summary ------------------------------------------------------------------------------
    from toolkit.devices.store import ResultStore
    from toolkit.latency import LatencyPredictor

    host = LatencyPredictor.load(host_pred)
    measured: dict[str, float] = {}
    with ResultStore(store) as st:
        for r in st.results():
            if r.meta.get("bench_run") == run_id:
                measured[r.meta.get("model", r.model_name)] = r.latency_ms(
                    _host_statistic())
    rows = []
    for dev, b in bests.items():
        arch = ArchConfig.from_dict(b["arch"])
        art = Path(b["artifact"])
        rows.append({
            "subnet": f"best for {dev} ({b['budget']:g} ms)", "device": dev,
            "mflops": b["mflops"], "top1_search": b["accuracy"],
            "predicted_ms": b["cost"], "predicted_host_ms": host.predict(arch),
            "measured_host_ms": measured.get(f"best_{b.get('same_as', dev)}"),
            "same_as": b.get("same_as"),
            "size_mb": art.stat().st_size / 1e6, "artifact": str(art),
            "sidecar": str(art) + ".json", "arch": str(Path(b["path"])),
        })
    drift = speed_change(refs, measured)
    for r in rows:
        m, p = r["measured_host_ms"], r["predicted_host_ms"]
        r["host_error"] = (p / m - 1) if m else None
        r["rescaled_host_ms"] = p * drift["factor"] if drift else None
        r["rescaled_error"] = (p * drift["factor"] / m - 1) if (m and drift) else None
    plots = [str(pdir / "host_predictor.png")] + [str(out / f"search_{d}" / "front.png")
                                                  for d in bests]
    plots += sorted(str(p) for p in report_dir.glob("*.png")  # the exports' (the references'
                    if "campaign_subnet_" not in p.name)  # plots are in the report too)
    summary = {
        "seconds": time.perf_counter() - t_start, "step_seconds": times,
        "train": {"steps": train_summary.get("steps"), "evals": train_summary.get("evals")},
        "host_budget_ms": host_ms, "pixel4_budget_ms": cfg.pixel4_ms, "rows": rows,
        "plots": plots, "report": str(report_dir / "report.html"), "store": str(store),
        "supernet": str(supernet), "host_predictor": str(host_pred),
        "host_drift": drift,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=1, default=str))
    log("\n" + summary_table(summary))
    return summary


def speed_change(refs: list[dict], measured: dict[str, float]) -> dict | None:
    """This machine's speed now against step 2's: the geometric mean of now / then over the
    campaign's subnets measured again (``campaign_subnet_<i>``); None without any."""
    import math

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


def _host_statistic() -> str:
    from device_profiles import get_profile

    return get_profile("host").statistic


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


def build_parser() -> argparse.ArgumentParser:
    d = DemoConfig()
    p = argparse.ArgumentParser(
        prog="evit-demo", formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description="The whole pipeline on embedded defaults, on this machine, in minutes: "
        "train -> profile the host -> search (host, pixel4) -> export -> benchmark. Each step "
        "prints its command; run again after an interruption and finished steps are kept.")
    p.add_argument("--out", default=d.out, help="folder for every step's files")
    p.add_argument("--train-steps", type=int, default=d.train_steps,
                   help="supernet training steps (batch 16)")
    p.add_argument("--levels", type=float, nargs="+", default=list(d.levels),
                   help="MFLOPs levels: trained, profiled and searched")
    p.add_argument("--kernels", type=int, default=d.kernels, help="host campaign kernels")
    p.add_argument("--subnets", type=int, default=d.subnets, help="host campaign subnets")
    p.add_argument("--host-ms", type=float, default=argparse.SUPPRESS,
                   help="host latency budget (default: the median predicted latency of "
                   "subnets at the middle level)")
    p.add_argument("--pixel4-ms", type=float, default=d.pixel4_ms,
                   help="pixel4 latency budget (shipped predictor)")
    p.add_argument("--references", type=int, default=d.references,
                   help="subnets of step 2 measured again beside the exports, for the "
                   "speed-rescaled error (0: none)")
    p.add_argument("--population", type=int, default=d.population,
                   help="search: initial subnets per budget")
    p.add_argument("--generations", type=int, default=d.generations,
                   help="search: evolution generations")
    p.add_argument("--calib-images", type=int, default=d.calib_images,
                   help="search fitness: BN recalibration images")
    p.add_argument("--search-images", type=int, default=d.search_images,
                   help="search fitness: search-split images")
    p.add_argument("--seed", type=int, default=d.seed, help="seed of every step")
    return p


def main(argv: list[str] | None = None) -> int:
    a = build_parser().parse_args(argv)
    if sorted(a.levels) != a.levels or a.levels[0] < 37.4:
        print(f"evit-demo: error: --levels {a.levels}: give increasing MFLOPs levels >= 37.4",
              file=sys.stderr)
        return 2
    for flag, low in (("train_steps", 1), ("kernels", 1), ("population", 1),
                      ("calib_images", 1), ("search_images", 1), ("generations", 0),
                      ("subnets", 0), ("references", 0)):
        if getattr(a, flag) < low:
            print(f"evit-demo: error: --{flag.replace('_', '-')} {getattr(a, flag)}: give a "
                  f"whole number >= {low}", file=sys.stderr)
            return 2
    cfg = DemoConfig(out=a.out, train_steps=a.train_steps, levels=tuple(a.levels),
                     kernels=a.kernels, subnets=a.subnets, references=a.references,
                     host_ms=getattr(a, "host_ms", None),
                     pixel4_ms=a.pixel4_ms, population=a.population, generations=a.generations,
                     calib_images=a.calib_images, search_images=a.search_images, seed=a.seed)
    try:
        run_demo(cfg, log=lambda m: print(m, flush=True))
    except DemoError as e:
        print(f"evit-demo: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
