"""The profiling campaign: measure kernels (and whole subnets) on a device, train its predictor.

    evit-profile --device host [--kernels 150] [--subnets 12] [--out runs/profile_host]

1. Choose kernels: the most frequent kernels of random subnets (every kind represented), then
   rounds that add the kernels where a bootstrap ensemble disagrees most (sampling.py).
2. Build each kernel as a standalone .tflite from the network's own blocks (static.py, BN
   folded, position bias frozen, exactly as evit-export builds subnets); files are cached by
   content in ``$EVIT_CACHE/kernels`` and reused across devices.
3. Measure through the device layer; every result is appended (and fsync'ed) to
   ``kernels.jsonl`` before the next starts, so a campaign interrupted at any moment resumes
   without re-measuring.
4. Measure whole subnets end to end (``subnets.jsonl``, also resumable), spread over their
   weight size, to fit the per-model overhead (measured ≈ scale × kernel sum, + a cost per
   MB of weights or an offset, or per-kind factors: ``choose_overhead``) and to check it.
5. Train, evaluate, and install the predictor for the device (user predictor folder).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from toolkit import fileio
from toolkit.fileio import atomic_write_json, sweep_temps
from toolkit.space import SPACE, ArchConfig, SearchSpace

from .kernels import Kernel, kernel_codes
from .predictor import LatencyPredictor
from .sampling import cover, kernel_frequencies, refine

CONVENTION = "network"  # host kernels are keyed by their real shapes


class FirstConv(nn.Module):
    def __init__(self, cout: int):
        super().__init__()
        self.first_conv = nn.Conv2d(3, cout, 3, 2, 1, bias=False)
        self.first_bn = nn.BatchNorm2d(cout)

    def forward(self, x):
        return F.hardswish(self.first_bn(self.first_conv(x)))


def kernel_module(k: Kernel, num_classes: int = 1000) -> tuple[nn.Module, torch.Tensor]:
    """The block for one kernel (eval mode, BN folded) and an input of its real shape."""
    from toolkit.export import fold_bn
    from toolkit.supernet.layers import init_weights
    from toolkit.supernet.static import FFN, Attention, MBConv, MBPoolHead

    torch.manual_seed(0)
    if k.kind == "firstconv":
        m, x = FirstConv(k.cout), torch.randn(1, 3, k.hw, k.hw)
    elif k.kind in ("mbconv", "transds"):
        m = MBConv(k.cin, k.cout, k.expand, k.kernel, k.stride, bool(k.se))
        x = torch.randn(1, k.cin, k.hw, k.hw)
    elif k.kind == "attn":
        m, x = Attention(k.cout, k.v, k.hw), torch.randn(1, k.hw * k.hw, k.cout)
    elif k.kind == "ffn":
        m, x = FFN(k.cout, k.mlp), torch.randn(1, k.hw * k.hw, k.cout)
    else:
        m, x = MBPoolHead(k.cin, num_classes), torch.randn(1, k.cin, k.hw, k.hw)
    init_weights(m)
    m.eval()
    if isinstance(m, FirstConv):
        m.first_conv, m.first_bn = fold_bn(m.first_conv, m.first_bn), nn.Identity()
    elif isinstance(m, MBConv):
        for conv, bn in (("pw", "pw_bn"), ("dw", "dw_bn"), ("pwl", "pwl_bn")):
            if hasattr(m, conv):
                setattr(m, conv, fold_bn(getattr(m, conv), getattr(m, bn)))
                setattr(m, bn, nn.Identity())
    elif isinstance(m, Attention):
        m.freeze_position_bias()
    elif isinstance(m, MBPoolHead):
        m.pre0, m.bn = fold_bn(m.pre0, m.bn), nn.Identity()
    return m, x


def cache_dir() -> Path:
    return fileio.cache_dir("kernels")


def _versions() -> str:
    from importlib.metadata import version

    return f"torch={torch.__version__};litert-torch={version('litert-torch')}"


def kernel_path(k: Kernel, num_classes: int = 1000) -> Path:
    """Where the kernel's .tflite lives in the cache (keyed by content: key, classes, tools)."""
    digest = hashlib.sha256(f"{k.key}|{k.code}|{num_classes}|{_versions()}|v1".encode())
    return cache_dir() / f"{k.key}-{digest.hexdigest()[:12]}.tflite"


def subnet_path(arch: ArchConfig, num_classes: int = 1000) -> Path:
    digest = hashlib.sha256(f"{arch.to_json()}|{num_classes}|{_versions()}|v1".encode())
    return cache_dir() / f"subnet-{digest.hexdigest()[:16]}.tflite"


def kernel_tflite(k: Kernel, num_classes: int = 1000) -> Path:
    """The kernel as a .tflite, built once and cached by content (key, classes, tools)."""
    from converters import convert_tflite

    path = kernel_path(k, num_classes)
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        m, x = kernel_module(k, num_classes)
        convert_tflite(m, (x,), path)  # written to a temporary name and renamed
    return path


def subnet_tflite(arch: ArchConfig, num_classes: int = 1000) -> Path:
    from converters import convert_tflite
    from toolkit.export import optimize_for_export
    from toolkit.supernet.static import StaticViT

    path = subnet_path(arch, num_classes)
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.manual_seed(0)
        net = optimize_for_export(StaticViT(arch, num_classes).eval())
        r = arch.resolution
        convert_tflite(net, (torch.randn(1, 3, r, r),), path)
    return path


# -- durable logs ---------------------------------------------------------------------------

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
    data = path.read_bytes() if path.is_file() else b""
    with open(path, "ab") as f:
        if data and not data.endswith(b"\n"):
            f.write(b"\n")  # a torn last line stays torn; the new record starts cleanly
        f.write((json.dumps(record, sort_keys=True) + "\n").encode())
        f.flush()
        os.fsync(f.fileno())


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


def build_all(items: list[Build], workers: int,
              progress: Callable[[str], None] | None = None) -> None:
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

    def done(i: int, b: Build, secs: float) -> None:
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


def default_workers() -> int:
    return max(1, min(2, os.cpu_count() or 1))


CAMPAIGN_FILES = ("campaign.json", "kernels.jsonl", "subnets.jsonl", "summary.json")


def run_campaign(device, out: str | Path, cfg: CampaignConfig | None = None,
                 progress: Callable[[str], None] = print, workers: int | None = None,
                 overwrite: bool = False) -> dict:
    """Run (or resume) a campaign; returns the summary (also written to out/summary.json).
    A folder holding another campaign is refused unless ``overwrite`` (which deletes it)."""
    cfg = cfg or CampaignConfig()
    cfg = CampaignConfig(**{**cfg.__dict__, "statistic": cfg.statistic
                            or device.profile.statistic})
    workers = default_workers() if workers is None else workers
    from toolkit.devices.base import RunSpec
    from toolkit.devices.measure import measure

    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file; give a folder for the campaign")
    cfg_path = out / "campaign.json"
    if overwrite:  # start over: the old campaign's files go first
        for name in CAMPAIGN_FILES:
            (out / name).unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    sweep_temps(out)
    if not cfg_path.is_file() and any((out / n).exists() for n in CAMPAIGN_FILES):
        raise ValueError(f"{out} holds measurements of a campaign without its campaign.json; "
                         "start over with --overwrite or choose another --out")
    if cfg_path.is_file():
        try:
            old = json.loads(cfg_path.read_text())
            if not (isinstance(old, dict) and isinstance(old.get("config"), dict)
                    and isinstance(old.get("device"), str)):
                raise ValueError("not a campaign description")
        except ValueError as e:
            raise ValueError(f"{cfg_path} is damaged ({e}); its measurements cannot be "
                             "trusted to resume: start over with --overwrite or choose another "
                             "--out") from None
        if "subnet_spread" not in old["config"]:  # older campaign: keep measuring its subnets
            cfg = CampaignConfig(**{**cfg.__dict__, **LEGACY})
        # keys added later: the value that reproduces what such a campaign measured
        old["config"] = {**CampaignConfig().to_dict(), **LEGACY, **old["config"]}
        if old["config"] != cfg.to_dict() or old["device"] != device.profile.name:
            raise ValueError(
                f"{out} holds a campaign with a different configuration or device "
                f"({old['device']}, {old['config']}); use another --out, the same settings, "
                "or --overwrite (deletes it)")
    else:
        atomic_write_json(cfg_path, {"device": device.profile.name, "config": cfg.to_dict()},
                          indent=1)
    spec = RunSpec(warmup_runs=cfg.warmup, num_runs=cfg.runs, repeats=cfg.repeats,
                   min_secs=cfg.min_secs,
                   max_cooldown_s=60)
    klog, slog = out / "kernels.jsonl", out / "subnets.jsonl"
    done = {r["code"]: r for r in read_jsonl(klog)}
    if done:
        progress(f"resuming: {len(done)} kernels already measured")

    def record(r) -> dict:
        return {"latency_ms": r.latency_ms(cfg.statistic), "statistic": cfg.statistic,
                "median_ms": r.median_ms, "best_ms": r.best_ms, "std_ms": r.std_ms}

    # whole subnets: chosen before any measurement, so they convert with the first kernels
    subs = {r["arch"]: r for r in read_jsonl(slog)}
    archs = [a.to_json() for a in campaign_subnets(cfg)]
    sub_todo = [a for a in archs if a not in subs]

    def measure_codes(codes: np.ndarray, also: list[Build] = ()) -> None:
        todo = [c for c in codes.tolist() if c not in done]
        build_all([Build("kernel", c, cfg.num_classes) for c in todo] + list(also), workers,
                  progress)
        for code in todo:
            k = Kernel.from_code(code)
            t0 = time.perf_counter()
            path = kernel_tflite(k, cfg.num_classes)
            r = measure(device, path, spec)
            rec = {"code": code, "key": k.key, **record(r),
                   "n": r.repeats * r.num_runs, "flags": r.flags, "result_sha": r.model_sha256}
            append_jsonl(klog, rec)
            done[code] = rec
            progress(f"kernel {len(done)}/{cfg.kernels} {k.key}: {rec['latency_ms']:.4f} ms "
                     f"({time.perf_counter() - t0:.1f} s)")

    fcodes, counts = kernel_frequencies(20000, seed=cfg.seed, convention=CONVENTION,
                                        mflops=cfg.mflops)
    n_cover = max(6 * 3, int(cfg.kernels * cfg.cover_fraction))
    measure_codes(cover(fcodes, counts, n_cover),
                  [Build("subnet", a, cfg.num_classes) for a in sub_todo])
    per_round = max(1, (cfg.kernels - len(done)) // max(1, cfg.rounds))
    while len(done) < cfg.kernels:
        codes = np.array(list(done), dtype=np.int64)
        y = np.array([done[c]["latency_ms"] for c in done])
        add = refine(codes, y, fcodes, counts, k=min(per_round, cfg.kernels - len(done)),
                     seed=len(done))
        if len(add) == 0:
            break
        measure_codes(add)
    # whole subnets, end to end: few, and the overhead is fitted on them, so they may get
    # more and longer invocations than the kernels (one subnet's best of 3 x 0.3 s ranged
    # 1.69-2.07 ms over four campaigns within an hour, its best of 5 x 0.5 s 1.80-1.88 ms)
    spec = dataclasses.replace(
        spec, repeats=cfg.subnet_repeats or cfg.repeats,
        min_secs=cfg.min_secs if cfg.subnet_min_secs is None else cfg.subnet_min_secs)
    for key in sub_todo:  # converted with the first kernels
        t0 = time.perf_counter()
        r = measure(device, subnet_tflite(ArchConfig.from_json(key), cfg.num_classes), spec)
        rec = {"arch": key, **record(r), "repeats": r.repeats, "n": r.repeats * r.num_runs}
        append_jsonl(slog, rec)
        subs[key] = rec
        progress(f"subnet {len(subs)}/{cfg.subnets}: {rec['latency_ms']:.3f} ms "
                 f"({time.perf_counter() - t0:.1f} s)")
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


OVERHEAD_FORMS = ("ratio", "weights", "linear", "per-kind")
# subnets needed to fit each form (leave-one-out needs one more)
MIN_SUBNETS = {"ratio": 1, "weights": 3, "linear": 4, "per-kind": 14}


# the weights form wins ties: within this factor of the best leave-one-out error. Over six
# noisy subnets the errors tie (ratio 6.8%, weights 6.9%; 10.6% / 11.2%), and on ten other
# subnets of those campaigns, measured apart, the weights form did better each time (RMSPE
# 5.3-8.0% against 8.6-9.9%; three campaigns on this machine)
PREFER_WEIGHTS = 1.2


def _fit_form(pred: LatencyPredictor, form: str, sums: np.ndarray, by_kind: np.ndarray,
              mb: np.ndarray, measured: np.ndarray) -> None:
    if form == "ratio":  # measured = scale x kernel sum; the median ratio resists outliers
        pred.scale, pred.offset_ms, pred.ms_per_mb = float(np.median(measured / sums)), 0.0, 0.0
        pred.kind_scale = dict.fromkeys(pred.kind_scale, 1.0)
    elif form == "weights":  # measured = scale x kernel sum + ms_per_mb x weights (MB)
        pred.fit_overhead(sums, measured, weights_mb=mb)
    elif form == "linear":
        pred.fit_overhead(sums, measured)
    else:
        pred.fit_overhead(by_kind, measured)


def _overhead_predict(pred: LatencyPredictor, by_kind: np.ndarray, mb: np.ndarray) -> np.ndarray:
    """What ``pred.predict_encoded`` gives, from per-kind kernel sums and weights (MB)."""
    factors = np.array(list(pred.kind_scale.values()))
    return pred.scale * (by_kind * factors).sum(axis=-1) + pred.ms_per_mb * mb + pred.offset_ms


def choose_overhead(pred: LatencyPredictor, sums: np.ndarray, by_kind: np.ndarray,
                    mb: np.ndarray, measured: np.ndarray, idx: np.ndarray
                    ) -> tuple[str, dict]:
    """Fit the overhead form with the lowest leave-one-out error on subnets ``idx``.

    A scale + offset line through subnets of similar size is ill-conditioned (six subnets
    of 70-140 MFLOPs once gave 0.30 x sum + 4.9 ms, blind to the kernels), so the form is
    chosen by how well each predicts the subnet left out: ratio, weights (scale x sum +
    ms per MB of weights; >= 3 subnets; wins within ``PREFER_WEIGHTS`` of the best), linear
    (>= 4) or per-kind factors (>= 14). On this
    machine a whole subnet took 1.22-1.67 x the sum of its kernels measured alone, growing with
    its weights (19-68 MB against a 32 MB L3): ratio 10.2%, weights 4.2% leave-one-out over
    ten subnets. Returns the form and each form's leave-one-out RMSPE.
    """
    idx = np.asarray(idx)
    loo: dict[str, float] = {}
    for form in OVERHEAD_FORMS:
        if len(idx) < max(2, MIN_SUBNETS[form] + 1):
            continue
        err = []
        for i in range(len(idx)):
            rest = np.delete(idx, i)
            _fit_form(pred, form, sums[rest], by_kind[rest], mb[rest], measured[rest])
            j = idx[i]
            err.append(_overhead_predict(pred, by_kind[j], mb[j]) / measured[j] - 1)
        loo[form] = float(np.sqrt(np.mean(np.square(err))))
    form = min(loo, key=loo.get) if loo else "ratio"
    if "weights" in loo and loo["weights"] <= PREFER_WEIGHTS * loo[form]:
        form = "weights"
    _fit_form(pred, form, sums[idx], by_kind[idx], mb[idx], measured[idx])
    return form, loo


def finish(device_name: str, out: Path, cfg: CampaignConfig) -> dict:
    """Train on the measured kernels, fit the overhead on the subnets, save the predictor.

    The overhead form (ratio, weights, linear, per-kind; ``choose_overhead``) is chosen and fitted
    on the first half of the subnets and checked on the other half. The installed predictor
    then chooses and refits on every subnet.
    """
    rows = read_jsonl(out / "kernels.jsonl")
    codes = np.array([r["code"] for r in rows], dtype=np.int64)
    y = np.array([r["latency_ms"] for r in rows])
    pred = LatencyPredictor.fit(device_name, codes, y, convention=CONVENTION, provenance={
        "source": f"evit-profile campaign in {out}", "kernels": len(rows),
        "num_classes": cfg.num_classes, "statistic": cfg.statistic})
    pred.weight_classes = cfg.num_classes  # the weights term counts the head as measured
    subs = read_jsonl(out / "subnets.jsonl")
    if not subs:  # no end-to-end measurements: kernel sums only, no overhead
        pred.save(out / f"{device_name}.json")
        summary = {"device": device_name, "kernels": len(rows), "subnets": 0,
                   "statistic": cfg.statistic,
                   "overhead": {"scale": 1.0, "offset_ms": 0.0, "kind_scale": pred.kind_scale,
                                "ms_per_mb": 0.0},
                   "held_out_within10": float("nan"), "held_out_within5": float("nan"),
                   "held_out_rmspe": float("nan"),
                   "predictor": str(out / f"{device_name}.json"), "points": []}
        atomic_write_json(out / "summary.json", summary, indent=1)
        return summary
    enc = np.stack([SPACE.encode(ArchConfig.from_json(s["arch"])) for s in subs])
    measured = np.array([s["latency_ms"] for s in subs])
    sums = pred.kernel_sum_encoded(enc)
    by_kind = pred.kernel_sums_by_kind(enc)
    mb = pred.weights_mb(enc)

    half = len(subs) // 2
    if half >= 2:  # choose and fit on one half, judge on the other
        choose_overhead(pred, sums, by_kind, mb, measured, np.arange(half))
        held = pred.predict_encoded(enc[half:]) / measured[half:] - 1
    # the installed predictor: the form chosen on every subnet, fitted on every subnet
    form, loo = choose_overhead(pred, sums, by_kind, mb, measured,
                                np.arange(len(subs)))
    predicted = pred.predict_encoded(enc)
    if half < 2:
        held = predicted / measured - 1
    pred.provenance["subnets"] = len(subs)
    pred.save(out / f"{device_name}.json")
    summary = {
        "device": device_name, "kernels": len(rows), "subnets": len(subs),
        "statistic": cfg.statistic,
        "overhead": {"scale": pred.scale, "offset_ms": pred.offset_ms,
                     "kind_scale": pred.kind_scale, "ms_per_mb": pred.ms_per_mb,
                     "weight_classes": pred.weight_classes, "form": form,
                     "loo_rmspe": loo},
        "held_out_within10": float(np.mean(np.abs(held) <= 0.10)),
        "held_out_within5": float(np.mean(np.abs(held) <= 0.05)),
        "held_out_rmspe": float(np.sqrt(np.mean(held ** 2))),
        "held_out": int(len(held)),
        "raw_sum_ratio_median": float(np.median(measured / sums)),
        "predictor": str(out / f"{device_name}.json"),
        "points": [{"measured_ms": float(m), "predicted_ms": float(p), "kernel_sum_ms": float(s),
                    "weights_mb": float(w)}
                   for m, p, s, w in zip(measured, predicted, sums, mb)],
    }
    atomic_write_json(out / "summary.json", summary, indent=1)
    return summary


def report(summary: dict, out: Path) -> list[Path]:
    """Predicted-vs-measured scatter and error histogram (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pts = summary["points"]
    m = np.array([p["measured_ms"] for p in pts])
    p = np.array([p["predicted_ms"] for p in pts])
    fig, ax = plt.subplots(1, 2, figsize=(10, 4))
    ax[0].scatter(m, p, s=14)
    lim = [0, max(m.max(), p.max()) * 1.05]
    ax[0].plot(lim, lim, "k--", lw=1)
    ax[0].plot(lim, [v * 1.1 for v in lim], "r:", lw=1)
    ax[0].plot(lim, [v * 0.9 for v in lim], "r:", lw=1)
    ax[0].set(xlabel="measured (ms)", ylabel="predicted (ms)",
              title=f"{summary['device']}: subnets end to end")
    ax[1].hist(100 * (p / m - 1), bins=20)
    ax[1].set(xlabel="prediction error (%)", ylabel="subnets", title="error histogram")
    fig.tight_layout()
    path = Path(out) / f"{summary['device']}_predictor.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return [path]


def kernel_codes_of(arch: ArchConfig) -> np.ndarray:
    codes, active = kernel_codes(SPACE.encode(arch)[None], CONVENTION)
    return codes[0][active[0]]
