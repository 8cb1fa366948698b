"""The profiling campaign: measure kernels and whole subnets on a device, train its predictor.

    evit-profile --device host [--kernels 150] [--subnets 12] [--out runs/profile_host]

1. Choose kernels: the most frequent kernels of random subnets (every kind represented), then
   rounds that add the kernels where a bootstrap ensemble disagrees most (sampling.py).
2. Convert each to a .tflite (kernel_modules.py, cached by artifacts.py) on a process pool
   (``build_all``), whole subnets first.
3. Measure through the device layer; every result is appended (and fsync'ed) to
   ``kernels.jsonl`` before the next starts, so a campaign interrupted at any moment resumes
   without re-measuring.
4. Measure whole subnets end to end (``subnets.jsonl``, also resumable), spread over their
   weight size, to fit the per-model overhead (overhead.py) and to check it.
5. Train and save the predictor for the device (``finish``; the CLI installs it).
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from toolkit.fileio import atomic_write_json, sweep_temps
from toolkit.space import SPACE, ArchConfig, SearchSpace

from .artifacts import kernel_path, kernel_tflite, subnet_path, subnet_tflite
from .kernels import Kernel, kernel_codes
from .overhead import choose_overhead
from .predictor import LatencyPredictor
from .sampling import cover, kernel_frequencies, refine

__all__ = ["CONVENTION", "CampaignConfig", "SPREADS", "CAMPAIGN_FILES", "Build", "build_all",
           "default_workers", "read_jsonl", "append_jsonl", "run_campaign", "campaign_subnets",
           "finish", "kernel_codes_of"]

CONVENTION = "network"  # campaign kernels are keyed by their real shapes
Progress = Callable[[str], None]


# -- the durable log ------------------------------------------------------------------------

def read_jsonl(path: Path) -> list[dict]:
    """Every complete line; a line torn by an interruption is ignored."""
    if not path.is_file():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


def append_jsonl(path: Path, record: dict) -> None:
    """Append one record and fsync it before returning."""
    data = path.read_bytes() if path.is_file() else b""
    with open(path, "ab") as f:
        if data and not data.endswith(b"\n"):
            f.write(b"\n")  # a torn last line stays torn; the new record starts cleanly
        f.write((json.dumps(record, sort_keys=True) + "\n").encode())
        f.flush()
        os.fsync(f.fileno())


def _bar(total: int, desc: str, initial: int = 0, enabled: bool | None = None):
    """A progress bar on stderr, shown only on a terminal (``enabled=None``)."""
    from tqdm import tqdm

    show = sys.stderr.isatty() if enabled is None else enabled
    return tqdm(total=total, initial=initial, desc=desc, file=sys.stderr, disable=not show,
                leave=False, dynamic_ncols=True)


# -- configuration --------------------------------------------------------------------------

@dataclass
class CampaignConfig:
    kernels: int = 150  # total kernels to measure
    cover_fraction: float = 0.6  # share chosen by frequency before refinement rounds
    rounds: int = 2  # refinement rounds for the rest
    subnets: int = 12  # whole subnets measured end to end (overhead fit + check)
    num_classes: int = 1000
    seed: int = 0
    runs: int = 30
    warmup: int = 5
    repeats: int = 2
    min_secs: float = 0.0  # each invocation runs at least this long (RunSpec.min_secs)
    subnet_repeats: int = 0  # whole subnets: invocations (0: repeats)
    subnet_min_secs: float | None = None  # whole subnets: seconds per invocation (None: min_secs)
    mflops: tuple[float, float] | None = None  # profile the part of the space in [lo, hi]
    subnet_spread: str = "weights"  # whole subnets: spread over weight size, or "uniform"
    statistic: str = ""  # "" = the device profile's (median on phones, best on the host)

    def to_dict(self) -> dict:
        d = dict(self.__dict__)
        d["mflops"] = list(self.mflops) if self.mflops is not None else None
        return d


SPREADS = ("weights", "uniform")  # CampaignConfig.subnet_spread
LEGACY = {"subnet_spread": "uniform"}  # a campaign.json without the key measured these
CAMPAIGN_FILES = ("campaign.json", "kernels.jsonl", "subnets.jsonl", "summary.json")


# -- the conversion pool --------------------------------------------------------------------

@dataclass(frozen=True)
class Build:
    """One .tflite to convert into the cache: a kernel (``item`` = its code) or a whole
    subnet (``item`` = its arch JSON)."""
    what: str  # "kernel" | "subnet"
    item: int | str
    num_classes: int

    def path(self) -> Path:
        if self.what == "kernel":
            return kernel_path(Kernel.from_code(int(self.item)), self.num_classes)
        return subnet_path(ArchConfig.from_json(str(self.item)), self.num_classes)

    def name(self) -> str:
        if self.what == "kernel":
            return Kernel.from_code(int(self.item)).key
        from toolkit.flops import flops

        return f"subnet of {flops(ArchConfig.from_json(str(self.item))):.1f} MFLOPs"


def _build(b: Build) -> float:
    """Convert one file (in a worker); the seconds it took."""
    t0 = time.perf_counter()
    if b.what == "kernel":
        kernel_tflite(Kernel.from_code(int(b.item)), b.num_classes)
    else:
        subnet_tflite(ArchConfig.from_json(str(b.item)), b.num_classes)
    return time.perf_counter() - t0


def default_workers() -> int:
    return max(1, min(2, os.cpu_count() or 1))


def build_all(items: list[Build], workers: int, progress: Progress | None = None,
              bar: bool | None = None) -> None:
    """Convert every item not yet in the cache, whole subnets first (the long ones), on
    ``workers`` processes (conversion is single-threaded Python; measuring happens
    afterwards, on a quiet machine), with a line per file done."""
    todo = sorted((b for b in dict.fromkeys(items) if not b.path().is_file()),
                  key=lambda b: b.what != "subnet")
    if not todo:
        return
    say = progress or (lambda _: None)
    n_sub = sum(b.what == "subnet" for b in todo)
    what = ", ".join(f"{n} {name}(s)" for n, name in ((n_sub, "whole subnet"),
                                                     (len(todo) - n_sub, "kernel")) if n)
    say(f"converting {what} to .tflite on {min(workers, len(todo))} worker(s)")
    t0 = time.perf_counter()
    with _bar(len(todo), "converting", enabled=bar) as pbar:
        def done(i: int, b: Build, secs: float) -> None:
            pbar.update()
            say(f"  converted {i}/{len(todo)} {b.name()} ({secs:.0f} s, "
                f"{time.perf_counter() - t0:.0f} s in all)")

        if workers <= 1 or len(todo) <= 1:
            for i, b in enumerate(todo, 1):
                done(i, b, _build(b))
            return
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor, as_completed

        with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"),
                                 initializer=torch.set_num_threads, initargs=(1,)) as ex:
            futures = {ex.submit(_build, b): b for b in todo}
            for i, f in enumerate(as_completed(futures), 1):
                done(i, futures[f], f.result())


# -- the campaign folder --------------------------------------------------------------------

def _read_campaign_json(cfg_path: Path) -> dict:
    try:
        old = json.loads(cfg_path.read_text())
        if not (isinstance(old, dict) and isinstance(old.get("config"), dict)
                and isinstance(old.get("device"), str)):
            raise ValueError("not a campaign description")
    except ValueError as e:  # json.JSONDecodeError is a ValueError
        raise ValueError(f"{cfg_path} is damaged ({e}); its measurements cannot be "
                         "trusted to resume: start over with --overwrite or choose another "
                         "--out") from None
    return old


def open_campaign(out: Path, cfg: CampaignConfig, device_name: str,
                  overwrite: bool = False) -> CampaignConfig:
    """Prepare ``out`` for the campaign (new, or the same one resumed); the config to run
    (an older campaign keeps measuring what it measured). Another campaign is refused
    unless ``overwrite`` (which deletes its files)."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file; give a folder for the campaign")
    cfg_path = out / "campaign.json"
    if overwrite:  # start over: the old campaign's files go first
        for name in CAMPAIGN_FILES:
            (out / name).unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    sweep_temps(out)
    if not cfg_path.is_file():
        if any((out / n).exists() for n in CAMPAIGN_FILES):
            raise ValueError(f"{out} holds measurements of a campaign without its "
                             "campaign.json; start over with --overwrite or choose another --out")
        atomic_write_json(cfg_path, {"device": device_name, "config": cfg.to_dict()}, indent=1)
        return cfg
    old = _read_campaign_json(cfg_path)
    if "subnet_spread" not in old["config"]:  # older campaign: keep measuring its subnets
        cfg = CampaignConfig(**{**cfg.__dict__, **LEGACY})
    # keys added later: the value that reproduces what such a campaign measured
    old["config"] = {**CampaignConfig().to_dict(), **LEGACY, **old["config"]}
    if old["config"] != cfg.to_dict() or old["device"] != device_name:
        raise ValueError(
            f"{out} holds a campaign with a different configuration or device "
            f"({old['device']}, {old['config']}); use another --out, the same settings, "
            "or --overwrite (deletes it)")
    return cfg


# -- measuring ------------------------------------------------------------------------------

def _record(r, statistic: str) -> dict:
    return {"latency_ms": r.latency_ms(statistic), "statistic": statistic,
            "median_ms": r.median_ms, "best_ms": r.best_ms, "std_ms": r.std_ms}


@dataclass
class _Run:
    """One campaign in progress: its device, folder, settings and what is measured."""
    device: object
    out: Path
    cfg: CampaignConfig
    spec: object  # RunSpec
    workers: int
    progress: Progress
    bar: bool | None
    kernels: dict  # code -> record
    subnets: dict  # arch JSON -> record

    def measure_kernels(self, codes: np.ndarray, also: list[Build] = ()) -> None:
        from toolkit.devices.measure import measure

        cfg = self.cfg
        todo = [c for c in codes.tolist() if c not in self.kernels]
        build_all([Build("kernel", c, cfg.num_classes) for c in todo] + list(also),
                  self.workers, self.progress, self.bar)
        with _bar(len(todo), "kernels", enabled=self.bar) as pbar:
            for code in todo:
                k = Kernel.from_code(code)
                t0 = time.perf_counter()
                r = measure(self.device, kernel_tflite(k, cfg.num_classes), self.spec)
                rec = {"code": code, "key": k.key, **_record(r, cfg.statistic),
                       "n": r.repeats * r.num_runs, "flags": r.flags,
                       "result_sha": r.model_sha256}
                append_jsonl(self.out / "kernels.jsonl", rec)
                self.kernels[code] = rec
                pbar.update()
                self.progress(f"kernel {len(self.kernels)}/{cfg.kernels} {k.key}: "
                              f"{rec['latency_ms']:.4f} ms ({time.perf_counter() - t0:.1f} s)")

    def measure_subnets(self, archs: list[str]) -> None:
        """Whole subnets end to end: few, and the overhead is fitted on them, so they may get
        more and longer invocations than the kernels (``subnet_repeats``, ``subnet_min_secs``)."""
        from toolkit.devices.measure import measure

        cfg = self.cfg
        spec = dataclasses.replace(
            self.spec, repeats=cfg.subnet_repeats or cfg.repeats,
            min_secs=cfg.min_secs if cfg.subnet_min_secs is None else cfg.subnet_min_secs)
        with _bar(len(archs), "subnets", enabled=self.bar) as pbar:
            for key in archs:
                t0 = time.perf_counter()
                path = subnet_tflite(ArchConfig.from_json(key), cfg.num_classes)
                r = measure(self.device, path, spec)
                rec = {"arch": key, **_record(r, cfg.statistic), "repeats": r.repeats,
                       "n": r.repeats * r.num_runs}
                append_jsonl(self.out / "subnets.jsonl", rec)
                self.subnets[key] = rec
                pbar.update()
                self.progress(f"subnet {len(self.subnets)}/{cfg.subnets}: "
                              f"{rec['latency_ms']:.3f} ms ({time.perf_counter() - t0:.1f} s)")

    def refine(self, fcodes: np.ndarray, counts: np.ndarray) -> None:
        """Rounds adding the kernels where a bootstrap ensemble disagrees most."""
        cfg = self.cfg
        per_round = max(1, (cfg.kernels - len(self.kernels)) // max(1, cfg.rounds))
        while len(self.kernels) < cfg.kernels:
            codes = np.array(list(self.kernels), dtype=np.int64)
            y = np.array([self.kernels[c]["latency_ms"] for c in self.kernels])
            add = refine(codes, y, fcodes, counts,
                         k=min(per_round, cfg.kernels - len(self.kernels)),
                         seed=len(self.kernels))
            if len(add) == 0:
                break
            self.measure_kernels(add)


def run_campaign(device, out: str | Path, cfg: CampaignConfig | None = None,
                 progress: Progress = print, workers: int | None = None,
                 overwrite: bool = False, bar: bool | None = None) -> dict:
    """Run (or resume) a campaign; returns the summary (also written to out/summary.json).
    A folder holding another campaign is refused unless ``overwrite`` (which deletes it).
    ``bar``: progress bars on stderr (None: when stderr is a terminal)."""
    from toolkit.devices.base import RunSpec

    cfg = cfg or CampaignConfig()
    cfg = dataclasses.replace(cfg, statistic=cfg.statistic or device.profile.statistic)
    out = Path(out)
    cfg = open_campaign(out, cfg, device.profile.name, overwrite)
    spec = RunSpec(warmup_runs=cfg.warmup, num_runs=cfg.runs, repeats=cfg.repeats,
                   min_secs=cfg.min_secs, max_cooldown_s=60)
    run = _Run(device, out, cfg, spec, default_workers() if workers is None else workers,
               progress, bar, {r["code"]: r for r in read_jsonl(out / "kernels.jsonl")},
               {r["arch"]: r for r in read_jsonl(out / "subnets.jsonl")})
    if run.kernels:
        progress(f"resuming: {len(run.kernels)} kernels already measured")
    # whole subnets: chosen before any measurement, so they convert with the first kernels
    sub_todo = [a for a in (s.to_json() for s in campaign_subnets(cfg)) if a not in run.subnets]
    fcodes, counts = kernel_frequencies(20000, seed=cfg.seed, convention=CONVENTION,
                                        mflops=cfg.mflops)
    n_cover = max(6 * 3, int(cfg.kernels * cfg.cover_fraction))
    run.measure_kernels(cover(fcodes, counts, n_cover),
                        [Build("subnet", a, cfg.num_classes) for a in sub_todo])
    run.refine(fcodes, counts)
    run.measure_subnets(sub_todo)
    return finish(device.profile.name, out, cfg)


def campaign_subnets(cfg: CampaignConfig) -> list[ArchConfig]:
    """The whole subnets a campaign measures: random (within cfg.mflops if set).

    ``subnet_spread="weights"``: the subnets at evenly spaced quantiles of the weight size of
    40 random candidates each, in the order smallest, third, fifth, ..., then second, fourth,
    ..., so that the overhead's weights term is fitted over the range and each half of the
    list (fit / held-out check in ``finish``) spans it. ``"uniform"``: the first candidates
    as drawn (campaigns from before this key).
    """
    if cfg.subnet_spread not in SPREADS:
        raise ValueError(f"subnet_spread = {cfg.subnet_spread!r} is not allowed; choose one of "
                         f"{', '.join(SPREADS)}")
    n = cfg.subnets if cfg.subnet_spread == "uniform" else 40 * cfg.subnets
    if cfg.mflops is None:
        sp = SearchSpace(seed=cfg.seed + 1)
        archs = [sp.sample() for _ in range(n)]
    else:
        from .sampling import random_subnets

        archs = [SPACE.decode(e) for e in random_subnets(n, cfg.seed + 1, cfg.mflops)]
    if cfg.subnet_spread == "uniform" or cfg.subnets < 2:
        return archs[:cfg.subnets]
    from toolkit.flops import params

    order = sorted(range(n), key=lambda i: (params(archs[i], cfg.num_classes), i))
    picks = [order[round(q)] for q in np.linspace(0, n - 1, cfg.subnets)]
    return [archs[i] for i in picks[0::2] + picks[1::2]]


# -- the predictor --------------------------------------------------------------------------

def _summary_base(device_name: str, out: Path, cfg: CampaignConfig, kernels: int,
                  pred: LatencyPredictor) -> dict:
    return {"device": device_name, "kernels": kernels, "statistic": cfg.statistic,
            "predictor": str(out / f"{device_name}.json"),
            "overhead": {"scale": pred.scale, "offset_ms": pred.offset_ms,
                         "kind_scale": pred.kind_scale, "ms_per_mb": pred.ms_per_mb}}


def _held_out(pred: LatencyPredictor, enc: np.ndarray, measured: np.ndarray, sums, by_kind,
              mb) -> np.ndarray:
    """Relative errors on the second half of the subnets, the law chosen and fitted on the
    first half (with under four subnets: the errors on all of them, fitted on all)."""
    half = len(measured) // 2
    if half < 2:
        choose_overhead(pred, sums, by_kind, mb, measured, np.arange(len(measured)))
        return pred.predict_encoded(enc) / measured - 1
    choose_overhead(pred, sums, by_kind, mb, measured, np.arange(half))
    return pred.predict_encoded(enc[half:]) / measured[half:] - 1


def finish(device_name: str, out: Path, cfg: CampaignConfig) -> dict:
    """Train on the measured kernels, fit the overhead on the subnets, save the predictor.

    The overhead form (overhead.py) is chosen and fitted on the first half of the subnets and
    checked on the other half. The saved predictor then chooses and refits on every subnet.
    """
    rows = read_jsonl(out / "kernels.jsonl")
    codes = np.array([r["code"] for r in rows], dtype=np.int64)
    y = np.array([r["latency_ms"] for r in rows])
    pred = LatencyPredictor.fit(device_name, codes, y, convention=CONVENTION, provenance={
        "source": f"evit-profile campaign in {out}", "kernels": len(rows),
        "num_classes": cfg.num_classes, "statistic": cfg.statistic},
        weight_classes=cfg.num_classes)  # the weights term counts the head as measured
    subs = read_jsonl(out / "subnets.jsonl")
    if not subs:  # no end-to-end measurements: kernel sums only, no overhead
        pred.save(out / f"{device_name}.json")
        nan = float("nan")
        summary = {**_summary_base(device_name, out, cfg, len(rows), pred), "subnets": 0,
                   "held_out_within10": nan, "held_out_within5": nan, "held_out_rmspe": nan,
                   "points": []}
        atomic_write_json(out / "summary.json", summary, indent=1)
        return summary
    enc = np.stack([SPACE.encode(ArchConfig.from_json(s["arch"])) for s in subs])
    measured = np.array([s["latency_ms"] for s in subs])
    sums, by_kind = pred.kernel_sum_encoded(enc), pred.kernel_sums_by_kind(enc)
    mb = pred.weights_mb(enc)
    held = _held_out(pred, enc, measured, sums, by_kind, mb)
    # the saved predictor: the form chosen on every subnet, fitted on every subnet
    form, loo = choose_overhead(pred, sums, by_kind, mb, measured, np.arange(len(subs)))
    predicted = pred.predict_encoded(enc)
    pred.provenance["subnets"] = len(subs)
    pred.save(out / f"{device_name}.json")
    summary = _summary_base(device_name, out, cfg, len(rows), pred)
    summary["overhead"].update(weight_classes=pred.weight_classes, form=form, loo_rmspe=loo)
    summary.update({
        "subnets": len(subs),
        "held_out_within10": float(np.mean(np.abs(held) <= 0.10)),
        "held_out_within5": float(np.mean(np.abs(held) <= 0.05)),
        "held_out_rmspe": float(np.sqrt(np.mean(held ** 2))), "held_out": int(len(held)),
        "raw_sum_ratio_median": float(np.median(measured / sums)),
        "points": [{"measured_ms": float(m), "predicted_ms": float(p), "kernel_sum_ms": float(s),
                    "weights_mb": float(w)} for m, p, s, w in zip(measured, predicted, sums, mb)],
    })
    atomic_write_json(out / "summary.json", summary, indent=1)
    return summary


def kernel_codes_of(arch: ArchConfig) -> np.ndarray:
    codes, active = kernel_codes(SPACE.encode(arch)[None], CONVENTION)
    return codes[0][active[0]]
