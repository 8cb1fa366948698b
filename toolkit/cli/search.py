"""``evit-search``: the most accurate subnet within a latency (or MFLOPs) budget.

    evit-search --latency-ms 25 --device pixel4 --supernet runs/train/supernet.pt
    evit-search --latency-ms 10 15 20 --device host --export tflite --measure
    evit-search --mflops 200 400
    evit-search --latency-ms 8 11 14 --fitness predictor --json

Fitness is top-1 with the supernet's weights after BN recalibration, on a search split held
out from training (never the validation set). ``--fitness predictor`` measures a few hundred
subnets once per supernet (cached, resumable), fits an accuracy predictor, searches with it
and measures the final top-k for real. Several budgets give a Pareto front. Outputs in --out:
best_<budget>.json per budget, front.csv (every subnet measured for real), front.png,
accuracy_predictor.json (with --fitness predictor), and the resumable search state.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import sys
import time
from pathlib import Path

from toolkit.fileio import atomic_open, atomic_write_json
from toolkit.search.evolution import (
    OPERATORS,
    Cost,
    SearchConfig,
    SearchError,
    pareto_front,
    random_search,
    rerank,
    search,
)

DEFAULT_SUPERNET = "runs/train/supernet.pt"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="evit-search", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    b = p.add_mutually_exclusive_group(required=True)
    b.add_argument("--latency-ms", type=float, nargs="+", help="latency budget(s) in ms")
    b.add_argument("--mflops", type=float, nargs="+", help="MFLOPs budget(s)")
    p.add_argument("--device", default="pixel4",
                   help="whose latency predictor (pixel1/4/6, xiaomi11, or host after a campaign)")
    p.add_argument("--predictor", help="a latency predictor file to use instead of the one "
                   "installed for --device (e.g. runs/profile_host/host.json)")
    p.add_argument("--supernet", default=DEFAULT_SUPERNET, help="supernet checkpoint (evit-train)")
    p.add_argument("--data", default=None, help="ImageNet-layout folder (default: the "
                   "checkpoint's training data; the embedded digits for evit-train's default)")
    p.add_argument("--out", default="runs/search")
    s = SearchConfig()
    p.add_argument("--population", type=int, default=s.population)
    p.add_argument("--generations", type=int, default=s.generations)
    p.add_argument("--parents", type=int, default=s.parents)
    p.add_argument("--mutations", type=int, default=s.mutations)
    p.add_argument("--crossovers", type=int, default=s.crossovers)
    p.add_argument("--mutation-prob", type=float, default=s.mutation_prob)
    p.add_argument("--lower-frac", type=float, default=s.lower_frac,
                   help="feasible = cost in [lower_frac * budget, budget]")
    p.add_argument("--max-retries", type=int, default=s.max_retries)
    p.add_argument("--seed", type=int, default=s.seed)
    p.add_argument("--operators", choices=OPERATORS, default=s.operators,
                   help="release: mutation biased toward the smallest choice and whole-kind "
                        "crossover, as the release's searcher; uniform: unbiased re-draws")
    p.add_argument("--dim-mutation-prob", type=float, default=s.dim_mutation_prob,
                   help="release operators: a re-drawn value is uniform with this probability, "
                        "else the smallest choice")
    p.add_argument("--depth-mutation-prob", type=float, default=s.depth_mutation_prob,
                   help="release operators: probability of re-drawing all depths together")
    p.add_argument("--strategy", choices=("evolution", "random"), default="evolution",
                   help="random: as many uniform feasible subnets as evolution evaluates "
                        "(population + generations x (mutations + crossovers)), the best wins")
    p.add_argument("--fitness", choices=("measured", "predictor"), default="measured",
                   help="measured: real top-1 of every candidate; predictor: an accuracy "
                        "predictor's top-1, then the final --top-k measured for real")
    p.add_argument("--predictor-subnets", type=int, default=300,
                   help="--fitness predictor: subnets measured for real to fit the predictor "
                        "(in the budgets' cost window; cached per supernet, resumable)")
    p.add_argument("--top-k", type=int, default=10,
                   help="--fitness predictor: best predicted subnets measured for real")
    p.add_argument("--accuracy-predictor", help="--fitness predictor: use this accuracy "
                   "predictor file instead of measuring and fitting one")
    p.add_argument("--calib-images", type=int, default=None,
                   help="BN recalibration images (default: 6,240 for a folder, the release's 65 "
                        "batches of 96; 128 for the digits)")
    p.add_argument("--search-images", type=int, default=None,
                   help="fitness images from the search split (default: 10,000 for a folder, "
                        "standard error <= 0.5%%; the digits' whole search split, 287)")
    p.add_argument("--json", action="store_true",
                   help="print the results as JSON on stdout (messages go to stderr)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--export", choices=("tflite", "onnx"), help="export each budget's best")
    p.add_argument("--measure", action="store_true",
                   help="run the exported best subnets on --device and compare with the predictor")
    p.add_argument("--benchmark-binary", help="benchmark_model for --measure on a phone")
    p.add_argument("--no-bank-seeds", action="store_true",
                   help="start the search from uniform draws only, not from the supernet's "
                        "memory banks (the release seeds its first population from them)")
    p.add_argument("--overwrite", action="store_true",
                   help="start over in --out even though it holds another search (deletes it)")
    p.add_argument("--any-subnet", action="store_true",
                   help="with a release-layout supernet: search the whole space, not only the "
                        "subnets the release's sampler could have trained")
    return p


def _plot(rows: list[dict], bests: list[dict], unit: str, path: Path) -> None:
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


def run(args) -> dict:
    import torch

    from toolkit.checkpoint import (
        CheckpointError,
        checkpoint_banks,
        load_checkpoint,
        supernet_from_checkpoint,
        trained_rules,
    )
    from toolkit.flops import flops
    from toolkit.search.accuracy import AccuracyEvaluator
    from toolkit.space import SearchSpace

    cfg = SearchConfig(args.population, args.generations, args.parents, args.mutations,
                       args.crossovers, args.mutation_prob, args.lower_frac, args.max_retries,
                       args.seed, args.operators, args.dim_mutation_prob,
                       args.depth_mutation_prob)
    cfg.validate()
    for name in ("predictor_subnets", "top_k"):
        if getattr(args, name) < 1:
            raise SearchError(f"--{name.replace('_', '-')} = {getattr(args, name)}; must be >= 1")
    for name in ("calib_images", "search_images"):
        v = getattr(args, name)
        if v is not None and v < 1:
            raise SearchError(f"--{name.replace('_', '-')} = {v}; must be >= 1")
    accuracy_model = None
    if args.accuracy_predictor:
        if args.fitness != "predictor":
            raise SearchError("--accuracy-predictor needs --fitness predictor")
        from toolkit.search.predictor import AccuracyPredictor

        accuracy_model = AccuracyPredictor.load(args.accuracy_predictor)  # before slow work
    say = (lambda m: print(m, file=sys.stderr, flush=True))
    import os

    rank, world, device = 0, int(os.environ.get("WORLD_SIZE", "1")), "cpu"
    if world > 1:  # torchrun: fitness evaluations are spread over the ranks
        import torch.distributed as dist

        if torch.cuda.is_available():
            device = f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
            torch.cuda.set_device(device)
        if not dist.is_initialized():
            dist.init_process_group("nccl" if device != "cpu" else "gloo")
        rank = dist.get_rank()
    elif torch.cuda.is_available():
        device = "cuda"
    if args.latency_ms:
        from toolkit.latency import LatencyPredictor, load_predictor

        predictor = (LatencyPredictor.load(args.predictor) if args.predictor
                     else load_predictor(args.device))
        cost, budgets = Cost("latency", predictor), args.latency_ms
    else:
        cost, budgets = Cost("mflops"), args.mflops
    # infeasible budgets fail before anything slow happens
    cheapest, _ = cost.cheapest(cfg.seed)
    bad = [b for b in budgets if b < cheapest]
    if bad:
        raise SearchError(f"budget {bad[0]:g} {cost.unit} is infeasible on {args.device}: the "
                          f"cheapest subnet found costs {cheapest:.2f} {cost.unit}")
    ckpt_path = Path(args.supernet)
    if not ckpt_path.is_file():
        raise SearchError(
            f"no supernet checkpoint at {ckpt_path}. Train one with `evit-train` (the embedded "
            "digits, about 10 minutes on 2 CPU cores; writes runs/train/supernet.pt) or pass "
            "--supernet PATH")
    out = Path(args.out)
    manifest = (_claim_folder(out, _manifest(args, cost, cfg, ckpt_path), args.overwrite)
                if rank == 0 else None)  # one claimant: torchrun's other ranks write no state
    try:
        ckpt = load_checkpoint(ckpt_path)
        ckpt_cfg = ckpt.get("config", {}) or {}
        net = supernet_from_checkpoint(ckpt, ckpt_path)
    except CheckpointError as e:
        raise SearchError(str(e)) from e
    seeds = [] if args.no_bank_seeds else [a for b in checkpoint_banks(ckpt) for a in b["archs"]]
    # a supernet was trained on the subnets its sampler draws (the release's, or evit's
    # sub-spaces under the same channel rules): search keeps to them unless --any-subnet
    rules = trained_rules(ckpt, net)
    del ckpt
    space = SearchSpace(cfg.seed, rules="none" if args.any_subnet else rules)
    if space.rules != "none":
        who = ("the release's sampler" if net.layout == "release" else
               f"its training sub-spaces ({ckpt_cfg.get('subspace')})")
        print(f"search keeps to the subnets {who} could have trained: conv stem as wide as "
              "the first conv, no stage narrower than the one before (--any-subnet lifts "
              "this)", file=sys.stderr)
    elif net.layout == "release":
        print("warning: --any-subnet: subnets whose conv stem is not as wide as the first conv "
              "use a shortcut conv the release never trained (its initial random weights)",
              file=sys.stderr)
    if args.data is None and not ckpt_cfg.get("data") and net.num_classes != 10:
        raise SearchError(f"{ckpt_path} records no training data and has {net.num_classes} "
                          "classes (the default data, the embedded digits, has 10); pass --data "
                          "with its data set (e.g. --data /data/imagenet for the authors' "
                          "ImageNet supernet)")
    data = args.data if args.data is not None else ckpt_cfg.get("data")
    torch.manual_seed(args.seed)
    image_size = int(ckpt_cfg.get("image_size", 224) or 224)
    evaluator = AccuracyEvaluator.from_datasets(
        net, data, calib_images=args.calib_images, search_images=args.search_images,
        seed=args.seed, image_size=image_size, device=device, warn=say)
    if rank == 0:
        say(f"fitness: BN recalibrated on {len(evaluator.calib)} training images, top-1 on "
            f"{len(evaluator.labels)} search-split images (standard error <= "
            f"{100 * evaluator.standard_error:.1f}%)")
        atomic_write_json(out / "search.json", manifest, indent=1)
    t0 = time.time()
    fitness = evaluator.evaluate
    if args.fitness == "predictor":
        from toolkit.search.predictor import prepare

        if accuracy_model is None:
            lo = min(budgets) * cfg.lower_frac
            from toolkit.fileio import sha256_file

            header = {"supernet_sha256": sha256_file(ckpt_path),
                      "data": str(data) if data else None, "image_size": image_size,
                      "calib_images": len(evaluator.calib),
                      "search_images": len(evaluator.labels), "rules": space.rules}
            accuracy_model = prepare(evaluator, cost, lo, max(budgets), args.predictor_subnets,
                                     header, space, seed=args.seed, say=say,
                                     bar=not args.no_progress)
        elif accuracy_model.num_classes != net.num_classes:
            raise SearchError(f"{args.accuracy_predictor} predicts for "
                              f"{accuracy_model.num_classes} classes; the supernet has "
                              f"{net.num_classes}")
        if rank == 0:
            accuracy_model.save(out / "accuracy_predictor.json")
            m = accuracy_model.info.get("held_out", {})
            if "kendall_tau" in m:
                say(f"accuracy predictor ({accuracy_model.info.get('kind')}, "
                    f"{accuracy_model.info.get('subnets')} measured subnets): held-out Kendall "
                    f"tau {m['kendall_tau']:.2f}, mean error {100 * m['mae']:.2f}% on "
                    f"{m['n_test']} subnets -> {out / 'accuracy_predictor.json'}")
        fitness = accuracy_model.predict
    results = []
    for b in budgets:
        state = out / f"state_{cost.kind}_{b:g}.json"
        bar = _bar(b, cost.unit, cfg.generations, rank == 0 and not args.no_progress)
        if args.strategy == "random":
            n = cfg.population + cfg.generations * (cfg.mutations + cfg.crossovers)
            r = random_search(b, cost, fitness, n, cfg.seed, cfg.lower_frac, space,
                              state_path=state, save=rank == 0)
        else:
            r = search(b, cost, fitness, cfg, state_path=state, save=rank == 0,
                       progress=lambda m, quiet=bar is not None: rank == 0 and not quiet
                       and say(m),
                       space=space, seeds=seeds, on_generation=bar and bar.update_to)
        if bar is not None:
            bar.close()
        if args.fitness == "predictor":
            r = rerank(r, cost, evaluator.evaluate, args.top_k)
        arch = r["arch"]
        best = {"budget": b, "unit": cost.unit, "device": args.device if args.latency_ms else None,
                "cost": r["cost"], "accuracy": r["accuracy"], "fitness": args.fitness,
                "strategy": args.strategy,
                "mflops": flops(arch, net.num_classes),
                "params": sum(p.numel() for p in net.extract(arch).parameters()),
                "rules": space.rules,
                "evaluated": len(r["evaluated"]), "arch": arch.to_dict(),
                "supernet": str(ckpt_path)}
        if args.latency_ms:
            best["predicted_latency_ms"] = r["cost"]
        if args.fitness == "predictor":
            best["predicted_accuracy"] = r["predicted"]
            best["measured_top_k"] = len(r["reranked"])
        path = out / (f"best_{cost.kind}_{b:g}.json" if rank == 0 else
                      f"best_{cost.kind}_{b:g}.rank{rank}.json")
        atomic_write_json(path, best, indent=1)
        best["path"] = str(path)
        results.append(best)
        say(f"budget {b:g} {cost.unit}: top-1 {100 * r['accuracy']:.1f}% at {r['cost']:.2f} "
            f"{cost.unit}, {best['mflops']:.1f} MFLOPs -> {path}")
    if rank != 0:
        return {"results": results, "evaluated": evaluator.evaluated}
    rows = {}
    for k, acc in evaluator.cache.items():
        from toolkit.space import ArchConfig

        a = ArchConfig.from_json(k)
        rows[k] = {"cost": cost.of(a), "accuracy": acc, "mflops": flops(a, net.num_classes),
                   "arch": k}
    rows = list(rows.values())
    front = set(pareto_front([(r["cost"], r["accuracy"]) for r in rows]))
    with atomic_open(out / "front.csv", "w") as f:
        w = csv.writer(f)
        w.writerow([f"cost_{cost.unit}", "top1", "mflops", "pareto", "arch"])
        for r in sorted(rows, key=lambda r: r["cost"]):
            w.writerow([f"{r['cost']:.4f}", f"{r['accuracy']:.4f}", f"{r['mflops']:.2f}",
                        int(rows.index(r) in front), r["arch"]])
    _plot(rows, results, cost.unit, out / "front.png")
    say(f"front: {out / 'front.csv'}, plot: {out / 'front.png'} "
        f"({evaluator.evaluated} subnets measured for real in {time.time() - t0:.0f} s)")
    if args.export:
        from toolkit.cli import export as export_cli

        for best in results:
            art = out / f"best_{cost.kind}_{best['budget']:g}.{args.export}"
            if _already_exported(art, best["arch"], ckpt_path, data):
                say(f"{art}: already exported (same subnet, same supernet)")
                best["artifact"] = str(art)
                continue
            argv = ["--arch", best["path"], "--supernet", str(ckpt_path), "--format",
                    args.export, "--out", str(art), "--num-classes", str(net.num_classes)]
            if data:
                argv += ["--data", str(data)]
            with contextlib.redirect_stdout(sys.stderr if args.json else sys.stdout):
                code = export_cli.main(argv)
            if code != 0:
                raise SearchError(f"export of {best['path']} failed")
            best["artifact"] = str(art)
    if args.measure:
        if not args.export or args.export != "tflite":
            raise SearchError("--measure needs --export tflite")
        from toolkit.devices.base import RunSpec
        from toolkit.devices.measure import measure
        from toolkit.devices.resolve import open_device

        binary = None
        if args.device.lower() != "host":
            from toolkit.devices.binary import resolve_binary

            binary = resolve_binary(args.benchmark_binary)
        dev = open_device(args.device, binary=binary)
        stat = dev.profile.statistic  # the figure the device's predictor learned
        for best in results:
            m = measure(dev, best["artifact"], RunSpec(repeats=5, num_runs=30))
            best["measured_ms"], best["measured_statistic"] = m.latency_ms(stat), stat
            best["measured_median_ms"] = m.median_ms
            gap = 100 * (best["measured_ms"] / best["cost"] - 1)
            say(f"budget {best['budget']:g}: measured {best['measured_ms']:.2f} ms ({stat}) "
                  f"on {args.device} vs predicted {best['cost']:.2f} ms ({gap:+.1f}%)")
    atomic_write_json(out / "summary.json", results, indent=1, default=str)
    if args.json:
        print(json.dumps({"results": results, "real_evaluations": evaluator.evaluated},
                         indent=1, default=str))
    return {"results": results, "evaluated": evaluator.evaluated}


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


SEARCH_FILES = ("search.json", "summary.json", "front.csv", "front.png")
SEARCH_GLOBS = ("state_*.json", "best_*.json", "best_*.tflite", "best_*.tflite.json",
                "best_*.onnx", "best_*.onnx.json")


def _manifest(args, cost: Cost, cfg: SearchConfig, ckpt: Path) -> dict:
    """What makes a search folder's run this run: resuming needs all of it to match."""
    from dataclasses import asdict

    from toolkit.fileio import sha256_file

    m = {"format": "evit-search-run", "supernet_sha256": sha256_file(ckpt),
         "data": args.data, "cost": cost.kind, "config": asdict(cfg),
         "any_subnet": bool(args.any_subnet), "bank_seeds": not args.no_bank_seeds,
         "strategy": args.strategy, "fitness": args.fitness,
         "calib_images": args.calib_images, "search_images": args.search_images}
    if args.fitness == "predictor":
        m["predictor_subnets"], m["top_k"] = args.predictor_subnets, args.top_k
        m["accuracy_predictor_sha256"] = (sha256_file(args.accuracy_predictor)
                                          if args.accuracy_predictor else None)
    if cost.kind == "latency":
        m["device"] = cost.predictor.device
        m["predictor_sha256"] = sha256_file(args.predictor) if args.predictor else None
    return m


def _claim_folder(out: Path, manifest: dict, overwrite: bool) -> dict:
    """Refuse a folder holding another search (before any work); ``overwrite`` deletes it."""
    if out.exists() and not out.is_dir():
        raise SearchError(f"--out {out} is a file; give a folder")
    old_files = [out / f for f in SEARCH_FILES if (out / f).exists()] + sorted(
        p for g in SEARCH_GLOBS for p in out.glob(g)) if out.is_dir() else []
    if overwrite:
        for p in old_files:
            p.unlink(missing_ok=True)
        return manifest
    mpath = out / "search.json"
    if mpath.is_file():
        try:
            old = json.loads(mpath.read_text())
        except ValueError:
            old = None
        if not isinstance(old, dict):
            raise SearchError(f"{mpath} is damaged; start over with --overwrite or choose "
                              "another --out")
        diff = sorted(k for k in set(old) | set(manifest) if old.get(k) != manifest.get(k))
        if diff:
            raise SearchError(
                f"{out} holds another search (it differs in {', '.join(diff)}); resume it with "
                "the same settings, start over with --overwrite (deletes it), or choose "
                "another --out")
    elif any(p.name.startswith(("state_", "best_")) for p in old_files) and not any(
            p.name.startswith("state_") for p in old_files):
        raise SearchError(f"{out} holds results of another search ({old_files[0].name}, ...) "
                          "and no state to resume; start over with --overwrite or choose "
                          "another --out")
    return manifest


def _already_exported(art: Path, arch: dict, ckpt: Path, data: str | None = None) -> bool:
    """True when ``art`` and its sidecar hold exactly this subnet from this checkpoint,
    calibrated on the same data (a resumed search does not convert again); anything missing
    or different: export again."""
    from toolkit.fileio import sha256_file

    side = art.with_name(art.name + ".json")
    if not (art.is_file() and side.is_file()):
        return False
    try:
        meta = json.loads(side.read_text())
    except ValueError:
        return False
    src = meta.get("source", {})
    return (meta.get("arch") == arch and meta.get("precision") == "fp32"
            and src.get("supernet_sha256") == sha256_file(ckpt)
            and src.get("data") == (str(data) if data else None)
            and meta.get("sha256") == sha256_file(art))


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from toolkit.devices.base import DeviceError
    from toolkit.latency import PredictorError

    try:
        run(args)
    except (SearchError, PredictorError, DeviceError, ValueError) as e:
        print(f"evit-search: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
