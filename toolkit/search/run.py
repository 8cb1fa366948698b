"""A search job: the most accurate subnet within each budget, from a supernet checkpoint.

:class:`SearchJob` is everything ``evit-search`` takes (it round-trips to JSON and back to
its command line); :func:`run_search` runs it: fitness from the supernet's weights after BN
recalibration (measured, or an accuracy predictor's with the final top-k measured), one
evolution (or random search) per budget, resumable from the folder's state; writes the
folder's files (see :mod:`toolkit.search.folder`), optionally exports each best and measures
it on the device.

>>> job = SearchJob(latency_ms=(10.0, 15.0), device="host", export="tflite")
>>> out = run_search(job)          # {"results": [...one per budget...], "real_evaluations": n}
"""

from __future__ import annotations

import csv
import json
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from toolkit.console import say as _say
from toolkit.fileio import atomic_open, atomic_write_json
from toolkit.search.evolution import (
    Cost,
    SearchConfig,
    SearchError,
    pareto_front,
    random_search,
    rerank,
    search,
)
from toolkit.search.folder import (
    already_exported,
    artifact_path,
    best_path,
    claim_folder,
    state_path,
)

__all__ = ["SearchJob", "run_search", "search_manifest", "plot_front", "distributed_context",
           "DEFAULT_SUPERNET", "STRATEGIES", "FITNESS", "EXPORT_FORMATS"]

DEFAULT_SUPERNET = "runs/train/supernet.pt"
STRATEGIES = ("evolution", "random")
FITNESS = ("measured", "predictor")
EXPORT_FORMATS = ("tflite", "onnx")
Say = Callable[[str], None]


@dataclass
class SearchJob:
    """One search: exactly one of ``latency_ms`` (budgets in ms on ``device``'s latency
    predictor, or the ``predictor`` file) or ``budget_mflops`` (MFLOPs budgets)."""

    latency_ms: tuple[float, ...] = ()
    budget_mflops: tuple[float, ...] = ()
    device: str = "pixel4"
    predictor: str | None = None
    supernet: str = DEFAULT_SUPERNET
    data: str | None = None  # None: the checkpoint's training data
    out: str = "runs/search"
    config: SearchConfig = field(default_factory=SearchConfig)
    strategy: str = "evolution"
    fitness: str = "measured"
    predictor_subnets: int = 300
    top_k: int = 10
    accuracy_predictor: str | None = None
    calib_images: int | None = None  # None: the data's default (see search.accuracy)
    search_images: int | None = None
    export: str | None = None
    measure: bool = False
    benchmark_binary: str | None = None
    bank_seeds: bool = True
    overwrite: bool = False
    any_subnet: bool = False
    progress: bool = True

    @property
    def cost_kind(self) -> str:
        return "latency" if self.latency_ms else "mflops"

    @property
    def budgets(self) -> tuple[float, ...]:
        return tuple(self.latency_ms or self.budget_mflops)

    def validate(self) -> None:
        """Raise SearchError naming the field, its value and what is allowed."""
        if bool(self.latency_ms) == bool(self.budget_mflops):
            raise SearchError("give latency budgets (--latency-ms) or MFLOPs budgets "
                              "(--budget-mflops): exactly one of them")
        self.config.validate()
        for name, allowed in (("strategy", STRATEGIES), ("fitness", FITNESS),
                              ("export", (None, *EXPORT_FORMATS))):
            if getattr(self, name) not in allowed:
                raise SearchError(f"{name} = {getattr(self, name)!r}; choose one of "
                                  f"{', '.join(map(str, allowed))}")
        for name in ("predictor_subnets", "top_k", "calib_images", "search_images"):
            v = getattr(self, name)
            if not (v is None and name.endswith("_images")) and (v is None or v < 1):
                raise SearchError(f"--{name.replace('_', '-')} = {v}; must be >= 1")
        if self.accuracy_predictor and self.fitness != "predictor":
            raise SearchError("--accuracy-predictor needs --fitness predictor")
        if self.measure and self.export != "tflite":
            raise SearchError("--measure needs --export tflite")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SearchJob:
        known = {f.name for f in fields(cls)}
        extra = sorted(set(d) - known)
        if extra:
            raise SearchError(f"a search job has no field {extra[0]!r}; it has "
                              f"{', '.join(sorted(known))}")
        d = dict(d)
        for k in ("latency_ms", "budget_mflops"):
            d[k] = tuple(d.get(k) or ())
        if isinstance(d.get("config"), dict):
            d["config"] = SearchConfig(**d["config"])
        return cls(**d)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1)

    @classmethod
    def from_json(cls, text: str) -> SearchJob:
        return cls.from_dict(json.loads(text))

    def to_argv(self) -> list[str]:
        """The equivalent ``evit-search`` command line (options that differ from defaults)."""
        num = (lambda v: f"{v:g}" if isinstance(v, float) else str(v))  # noqa: E731
        argv = (["--latency-ms", *map(num, self.latency_ms), "--device", self.device]
                if self.latency_ms else ["--budget-mflops", *map(num, self.budget_mflops)])
        dflt, cdflt = SearchJob(), SearchConfig()
        for name in ("predictor", "supernet", "data", "out"):
            if getattr(self, name) != getattr(dflt, name):
                argv += [f"--{name}", str(getattr(self, name))]
        for f in fields(SearchConfig):
            if getattr(self.config, f.name) != getattr(cdflt, f.name):
                argv += [f"--{f.name.replace('_', '-')}", num(getattr(self.config, f.name))]
        for name in ("strategy", "fitness", "predictor_subnets", "top_k", "accuracy_predictor",
                     "calib_images", "search_images", "export", "benchmark_binary"):
            if getattr(self, name) != getattr(dflt, name):
                argv += [f"--{name.replace('_', '-')}", num(getattr(self, name))]
        flags = (("--measure", self.measure), ("--no-bank-seeds", not self.bank_seeds),
                 ("--overwrite", self.overwrite), ("--any-subnet", self.any_subnet),
                 ("--no-progress", not self.progress))
        return argv + [flag for flag, on in flags if on]


def search_manifest(job: SearchJob, cost: Cost) -> dict[str, Any]:
    """What makes a search folder's run this run: resuming needs all of it to match."""
    from toolkit.fileio import sha256_file

    m = {"format": "evit-search-run", "supernet_sha256": sha256_file(job.supernet),
         "data": job.data, "cost": cost.kind, "config": asdict(job.config),
         "any_subnet": bool(job.any_subnet), "bank_seeds": bool(job.bank_seeds),
         "strategy": job.strategy, "fitness": job.fitness,
         "calib_images": job.calib_images, "search_images": job.search_images}
    if job.fitness == "predictor":
        m["predictor_subnets"], m["top_k"] = job.predictor_subnets, job.top_k
        m["accuracy_predictor_sha256"] = (sha256_file(job.accuracy_predictor)
                                          if job.accuracy_predictor else None)
    if cost.kind == "latency":
        m["device"] = cost.predictor.device
        m["predictor_sha256"] = sha256_file(job.predictor) if job.predictor else None
    return m


def distributed_context() -> tuple[int, str]:
    """(rank, torch device): under torchrun the fitness evaluations are spread over the
    ranks (the process group is started here if the caller has not); else rank 0."""
    import os

    import torch

    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return 0, "cuda" if torch.cuda.is_available() else "cpu"
    import torch.distributed as dist

    device = "cpu"
    if torch.cuda.is_available():
        device = f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device != "cpu" else "gloo")
    return dist.get_rank(), device


@dataclass
class _Context:
    """What every budget's search shares."""

    job: SearchJob
    cost: Cost
    out: Path
    rank: int
    net: Any
    space: Any
    seeds: list
    data: str | None
    image_size: int
    evaluator: Any = None
    say: Say = _say


def _cost(job: SearchJob) -> Cost:
    """The cost model; an infeasible budget fails here, before anything slow."""
    if job.latency_ms:
        from toolkit.latency import LatencyPredictor, load_predictor

        predictor = (LatencyPredictor.load(job.predictor) if job.predictor
                     else load_predictor(job.device))
        cost = Cost("latency", predictor)
    else:
        cost = Cost("mflops")
    cheapest, _ = cost.cheapest(job.config.seed)
    bad = [b for b in job.budgets if b < cheapest]
    if bad:
        raise SearchError(f"budget {bad[0]:g} {cost.unit} is infeasible on {job.device}: the "
                          f"cheapest subnet found costs {cheapest:.2f} {cost.unit}")
    return cost


def _load(job: SearchJob, cost: Cost, rank: int, say: Say) -> _Context:
    """The supernet, its memory-bank seeds, the space it was trained on and its data."""
    from toolkit.checkpoint import (
        CheckpointError,
        checkpoint_banks,
        load_checkpoint,
        supernet_from_checkpoint,
        trained_rules,
    )
    from toolkit.space import SearchSpace

    ckpt_path = Path(job.supernet)
    try:
        ckpt = load_checkpoint(ckpt_path)
        ckpt_cfg = ckpt.get("config", {}) or {}
        net = supernet_from_checkpoint(ckpt, ckpt_path)
    except CheckpointError as e:
        raise SearchError(str(e)) from e
    seeds = [a for b in checkpoint_banks(ckpt) for a in b["archs"]] if job.bank_seeds else []
    # a supernet was trained on the subnets its sampler draws (the release's, or evit's
    # sub-spaces under the same channel rules): search keeps to them unless any_subnet
    rules = trained_rules(ckpt, net)
    del ckpt
    space = SearchSpace(job.config.seed, rules="none" if job.any_subnet else rules)
    if space.rules != "none":
        who = ("the release's sampler" if net.layout == "release" else
               f"its training sub-spaces ({ckpt_cfg.get('subspace')})")
        say(f"search keeps to the subnets {who} could have trained: conv stem as wide as "
            "the first conv, no stage narrower than the one before (--any-subnet lifts this)")
    elif net.layout == "release":
        say("warning: --any-subnet: subnets whose conv stem is not as wide as the first conv "
            "use a shortcut conv the release never trained (its initial random weights)")
    if job.data is None and not ckpt_cfg.get("data") and net.num_classes != 10:
        raise SearchError(f"{ckpt_path} records no training data and has {net.num_classes} "
                          "classes (the default data, the embedded digits, has 10); pass --data "
                          "with its data set (e.g. --data /data/imagenet for the authors' "
                          "ImageNet supernet)")
    data = job.data if job.data is not None else ckpt_cfg.get("data")
    image_size = int(ckpt_cfg.get("image_size", 224) or 224)
    return _Context(job, cost, Path(job.out), rank, net, space, seeds, data, image_size,
                    say=say)


def _accuracy_fitness(ctx: _Context, model) -> Callable:
    """--fitness predictor: the accuracy predictor (fitted on measured subnets, cached per
    supernet, unless one was given), saved in the folder; its ``predict``."""
    job, ev = ctx.job, ctx.evaluator
    if model is None:
        from toolkit.fileio import sha256_file
        from toolkit.search.predictor import prepare

        header = {"supernet_sha256": sha256_file(job.supernet),
                  "data": str(ctx.data) if ctx.data else None, "image_size": ctx.image_size,
                  "calib_images": len(ev.calib), "search_images": len(ev.labels),
                  "rules": ctx.space.rules}
        lo = min(job.budgets) * job.config.lower_frac
        model = prepare(ev, ctx.cost, lo, max(job.budgets), job.predictor_subnets, header,
                        ctx.space, seed=job.config.seed, say=ctx.say, bar=job.progress)
    elif model.num_classes != ctx.net.num_classes:
        raise SearchError(f"{job.accuracy_predictor} predicts for {model.num_classes} classes; "
                          f"the supernet has {ctx.net.num_classes}")
    if ctx.rank == 0:
        path = ctx.out / "accuracy_predictor.json"
        model.save(path)
        m = model.info.get("held_out", {})
        if "kendall_tau" in m:
            ctx.say(f"accuracy predictor ({model.info.get('kind')}, "
                    f"{model.info.get('subnets')} measured subnets): held-out Kendall tau "
                    f"{m['kendall_tau']:.2f}, mean error {100 * m['mae']:.2f}% on "
                    f"{m['n_test']} subnets -> {path}")
    return model.predict


def _search_budget(ctx: _Context, budget: float, fitness: Callable) -> dict[str, Any]:
    """One budget's search; its best subnet, written to best_<cost>_<budget>.json."""
    job, cost, cfg, rank = ctx.job, ctx.cost, ctx.job.config, ctx.rank
    state = state_path(ctx.out, cost.kind, budget)
    bar = _bar(budget, cost.unit, cfg.generations, rank == 0 and job.progress)
    try:
        if job.strategy == "random":
            n = cfg.population + cfg.generations * (cfg.mutations + cfg.crossovers)
            r = random_search(budget, cost, fitness, n, cfg.seed, cfg.lower_frac, ctx.space,
                              state_path=state, save=rank == 0)
        else:
            r = search(budget, cost, fitness, cfg, state_path=state, save=rank == 0,
                       progress=lambda m, quiet=bar is not None: rank == 0 and not quiet
                       and ctx.say(m),
                       space=ctx.space, seeds=ctx.seeds, on_generation=bar and bar.update_to)
    finally:
        if bar is not None:
            bar.close()
    if job.fitness == "predictor":
        r = rerank(r, cost, ctx.evaluator.evaluate, job.top_k)
    best = _best_record(ctx, budget, r)
    path = best_path(ctx.out, cost.kind, budget, rank)
    atomic_write_json(path, best, indent=1)
    best["path"] = str(path)
    ctx.say(f"budget {budget:g} {cost.unit}: top-1 {100 * r['accuracy']:.1f}% at "
            f"{r['cost']:.2f} {cost.unit}, {best['mflops']:.1f} MFLOPs -> {path}")
    return best


def _best_record(ctx: _Context, budget: float, r: dict) -> dict[str, Any]:
    from toolkit.flops import flops

    job, arch = ctx.job, r["arch"]
    best = {"budget": budget, "unit": ctx.cost.unit,
            "device": job.device if job.latency_ms else None,
            "cost": r["cost"], "accuracy": r["accuracy"], "fitness": job.fitness,
            "strategy": job.strategy, "mflops": flops(arch, ctx.net.num_classes),
            "params": sum(p.numel() for p in ctx.net.extract(arch).parameters()),
            "rules": ctx.space.rules, "evaluated": len(r["evaluated"]), "arch": arch.to_dict(),
            "supernet": str(job.supernet)}
    if job.latency_ms:
        best["predicted_latency_ms"] = r["cost"]
    if job.fitness == "predictor":
        best["predicted_accuracy"] = r["predicted"]
        best["measured_top_k"] = len(r["reranked"])
    return best


def _write_front(ctx: _Context, results: list[dict]) -> None:
    """front.csv: every subnet measured for real, Pareto-optimal ones marked; front.png."""
    from toolkit.flops import flops
    from toolkit.space import ArchConfig

    rows = []
    for k, acc in ctx.evaluator.cache.items():
        a = ArchConfig.from_json(k)
        rows.append({"cost": ctx.cost.of(a), "accuracy": acc,
                     "mflops": flops(a, ctx.net.num_classes), "arch": k})
    front = set(pareto_front([(r["cost"], r["accuracy"]) for r in rows]))
    order = sorted(range(len(rows)), key=lambda i: rows[i]["cost"])
    with atomic_open(ctx.out / "front.csv", "w") as f:
        w = csv.writer(f)
        w.writerow([f"cost_{ctx.cost.unit}", "top1", "mflops", "pareto", "arch"])
        for i in order:
            r = rows[i]
            w.writerow([f"{r['cost']:.4f}", f"{r['accuracy']:.4f}", f"{r['mflops']:.2f}",
                        int(i in front), r["arch"]])
    plot_front(rows, results, ctx.cost.unit, ctx.out / "front.png")


def _export_bests(ctx: _Context, results: list[dict]) -> None:
    """Export each budget's best beside it (kept when a resumed search finds it done)."""
    from converters import ConversionError
    from toolkit.checkpoint import CheckpointError
    from toolkit.export_job import ExportRequest, run_export

    job = ctx.job
    for best in results:
        art = artifact_path(ctx.out, ctx.cost.kind, best["budget"], job.export)
        best["artifact"] = str(art)
        if already_exported(art, best["arch"], job.supernet, ctx.data):
            ctx.say(f"{art}: already exported (same subnet, same supernet)")
            continue
        req = ExportRequest(arch=best["path"], supernet=str(job.supernet), format=job.export,
                            out=str(art), num_classes=ctx.net.num_classes,
                            data=str(ctx.data) if ctx.data else None)
        try:
            meta = run_export(req)
        except (ValueError, CheckpointError, ConversionError, OSError) as e:
            raise SearchError(f"export of {best['path']} failed: {e}") from e
        p = meta["parity"]
        ctx.say(f"{meta['artifact']}: {meta['size_bytes'] / 1e6:.2f} MB, parity vs PyTorch: "
                f"max abs err {p['max_abs_error']:.2e}, top-1 agreement "
                f"{p['top1_agreement'] * 100:.0f}% ({p['samples']} inputs); metadata: "
                f"{meta['sidecar']}")


def _measure_bests(ctx: _Context, results: list[dict]) -> None:
    """Run each exported best on the device; its figure beside the predicted one."""
    from toolkit.devices.base import RunSpec
    from toolkit.devices.measure import measure
    from toolkit.devices.resolve import open_device

    job = ctx.job
    binary = None
    if job.device.lower() != "host":
        from toolkit.devices.binary import resolve_binary

        binary = resolve_binary(job.benchmark_binary)
    dev = open_device(job.device, binary=binary)
    stat = dev.profile.statistic  # the figure the device's predictor learned
    for best in results:
        m = measure(dev, best["artifact"], RunSpec(repeats=5, num_runs=30))
        best["measured_ms"], best["measured_statistic"] = m.latency_ms(stat), stat
        best["measured_median_ms"] = m.median_ms
        gap = 100 * (best["measured_ms"] / best["cost"] - 1)
        ctx.say(f"budget {best['budget']:g}: measured {best['measured_ms']:.2f} ms ({stat}) "
                f"on {job.device} vs predicted {best['cost']:.2f} ms ({gap:+.1f}%)")


def _prepare(job: SearchJob, say: Say) -> tuple[_Context, Any, dict | None]:
    """Every check that can fail fast, then the supernet and the fitness evaluator."""
    import torch

    from toolkit.search.accuracy import AccuracyEvaluator

    job.validate()
    accuracy_model = None
    if job.accuracy_predictor:
        from toolkit.search.predictor import AccuracyPredictor

        accuracy_model = AccuracyPredictor.load(job.accuracy_predictor)  # before slow work
    rank, device = distributed_context()
    cost = _cost(job)
    if not Path(job.supernet).is_file():
        raise SearchError(
            f"no supernet checkpoint at {job.supernet}. Train one with `evit-train` (the "
            "embedded digits, about 10 minutes on 2 CPU cores; writes runs/train/supernet.pt) "
            "or pass --supernet PATH")
    manifest = (claim_folder(job.out, search_manifest(job, cost), job.overwrite)
                if rank == 0 else None)  # one claimant: torchrun's other ranks write no state
    ctx = _load(job, cost, rank, say)
    torch.manual_seed(job.config.seed)
    ctx.evaluator = AccuracyEvaluator.from_datasets(
        ctx.net, ctx.data, calib_images=job.calib_images, search_images=job.search_images,
        seed=job.config.seed, image_size=ctx.image_size, device=device, warn=say)
    return ctx, accuracy_model, manifest


def run_search(job: SearchJob, say: Say = _say) -> dict[str, Any]:
    """Run ``job``; ``{"results": [best per budget], "real_evaluations": n}``. Messages go
    to ``say`` (default: stderr). Raises SearchError (and PredictorError, DeviceError,
    AccuracyPredictorError) for bad input, before any slow work where it can."""
    ctx, accuracy_model, manifest = _prepare(job, say)
    ev = ctx.evaluator
    if ctx.rank == 0:
        say(f"fitness: BN recalibrated on {len(ev.calib)} training images, top-1 on "
            f"{len(ev.labels)} search-split images (standard error <= "
            f"{100 * ev.standard_error:.1f}%)")
        atomic_write_json(ctx.out / "search.json", manifest, indent=1)
        atomic_write_json(ctx.out / "job.json", job.to_dict(), indent=1)
    t0 = time.time()
    fitness = _accuracy_fitness(ctx, accuracy_model) if job.fitness == "predictor" \
        else ev.evaluate
    results = [_search_budget(ctx, b, fitness) for b in job.budgets]
    if ctx.rank != 0:
        return {"results": results, "real_evaluations": ev.evaluated}
    _write_front(ctx, results)
    say(f"front: {ctx.out / 'front.csv'}, plot: {ctx.out / 'front.png'} "
        f"({ev.evaluated} subnets measured for real in {time.time() - t0:.0f} s)")
    if job.export:
        _export_bests(ctx, results)
    if job.measure:
        _measure_bests(ctx, results)
    atomic_write_json(ctx.out / "summary.json", results, indent=1, default=str)
    return {"results": results, "real_evaluations": ev.evaluated}


def plot_front(rows: list[dict], bests: list[dict], unit: str, path: Path) -> None:
    """Every evaluated subnet, the Pareto front as a staircase, each budget's best."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.2))
    ax.scatter([r["cost"] for r in rows], [100 * r["accuracy"] for r in rows], s=6, c="0.7",
               label="evaluated subnets")
    front = [rows[i] for i in pareto_front([(r["cost"], r["accuracy"]) for r in rows])]
    if front:  # a staircase out to the dearest subnet: visible even for a one-subnet front
        xs = [r["cost"] for r in front] + [max(r["cost"] for r in rows)]
        ys = [100 * r["accuracy"] for r in front]
        ax.step(xs, ys + ys[-1:], where="post", c="C0", lw=1.5, label="Pareto front")
        ax.plot(xs[:-1], ys, "o", c="C0", ms=5)
    ax.scatter([b["cost"] for b in bests], [100 * b["accuracy"] for b in bests], marker="*",
               s=140, c="C3", zorder=5, label="best per budget")
    ax.set(xlabel=f"predicted latency ({unit})" if unit == "ms" else "MFLOPs",
           ylabel="top-1 (%) on the search split", title="evit-search")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


class _Bar:
    """One tqdm bar per budget over generations, the best fitness so far as its postfix."""

    def __init__(self, budget: float, unit: str, generations: int):
        from tqdm import tqdm

        self.t = tqdm(total=generations, desc=f"budget {budget:g} {unit}", unit="gen",
                      file=sys.stderr, dynamic_ncols=True)

    def update_to(self, gen: int, total: int, best: float, evaluated: int) -> None:
        self.t.n = gen
        self.t.set_postfix_str(f"best {100 * best:.1f}%, {evaluated} evaluated", refresh=False)
        self.t.refresh()

    def close(self) -> None:
        self.t.close()


def _bar(budget: float, unit: str, generations: int, show: bool) -> _Bar | None:
    """A bar on a terminal; elsewhere (logs, pipes) one line per generation instead."""
    return _Bar(budget, unit, generations) if show and sys.stderr.isatty() else None
