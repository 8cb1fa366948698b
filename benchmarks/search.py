"""evit-search: evaluation speed, and the evolutionary front vs random search (issue 7).

    python benchmarks/search.py [--supernet runs/train_default/supernet.pt] [--real 8]

1. Time to evaluate 5,000 subnets by predicted latency (pixel4 predictor; vectorized, and one
   at a time), and by real top-1 on the embedded digits (BN recalibration on --calib-images
   training images, top-1 on --search-images of the search split): measured on --real
   uniformly random subnets, the 5,000 figure is that rate extrapolated (said so in the table).
2. Front vs random search at equal budget: for each latency budget, evolution with N fitness
   evaluations vs N random feasible subnets (same [0.85 B, B] window), best search-split top-1,
   and the best subnets' top-1 on the validation split (never used by the search).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._results import write_section  # noqa: E402
from toolkit.checkpoint import load_supernet  # noqa: E402
from toolkit.data.datasets import DigitsDataset  # noqa: E402
from toolkit.latency import load_predictor  # noqa: E402
from toolkit.search.accuracy import AccuracyEvaluator  # noqa: E402
from toolkit.search.evolution import Cost, SearchConfig, _feasible_samples, search  # noqa: E402
from toolkit.space import SPACE, SearchSpace  # noqa: E402


def val_top1(net, arch, evaluator):
    val = DigitsDataset("val", augment=False)
    ev = AccuracyEvaluator(net, evaluator.calib, val.x, val.y)
    return ev.evaluate([arch])[0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--supernet", default=str(ROOT / "runs" / "train_default" / "supernet.pt"))
    ap.add_argument("--real", type=int, default=8, help="subnets timed for the real-accuracy rate")
    ap.add_argument("--population", type=int, default=12)
    ap.add_argument("--generations", type=int, default=2)
    ap.add_argument("--budgets", type=float, nargs="+", default=[8.0, 14.0])
    ap.add_argument("--calib-images", type=int, default=32)
    ap.add_argument("--search-images", type=int, default=200)
    args = ap.parse_args()
    torch.set_num_threads(2)
    cost = Cost("latency", load_predictor("pixel4"))
    sp = SearchSpace(seed=1)
    enc = sp.sample_encoded(5000, np.random.default_rng(1))
    t0 = time.perf_counter()
    cost(enc)
    vec_s = time.perf_counter() - t0
    archs = [SPACE.decode(e) for e in enc]
    t0 = time.perf_counter()
    for a in archs:
        cost.of(a)
    one_s = time.perf_counter() - t0
    net = load_supernet(args.supernet)
    ev = AccuracyEvaluator.from_datasets(net, None, calib_images=args.calib_images,
                                         search_images=args.search_images)
    t0 = time.perf_counter()
    ev.evaluate(archs[:args.real])
    real_s = (time.perf_counter() - t0) / args.real
    rows = []
    for b in args.budgets:
        half = args.population // 2
        cfg = SearchConfig(population=args.population, generations=args.generations,
                           parents=half, mutations=half, crossovers=half, seed=0)
        ev_evo = AccuracyEvaluator(net, ev.calib, ev.images, ev.labels)
        t0 = time.perf_counter()
        r = search(b, cost, ev_evo.evaluate, cfg)
        evo_s = time.perf_counter() - t0
        n = ev_evo.evaluated
        ev_rand = AccuracyEvaluator(net, ev.calib, ev.images, ev.labels)
        cand = _feasible_samples(cost, r["lower_bound"], b, n, np.random.default_rng(99),
                                 4096 * 200)
        scores = ev_rand.evaluate(cand)
        best_rand = cand[int(np.argmax(scores))]
        rows.append((b, n, r["accuracy"], max(scores), val_top1(net, r["arch"], ev),
                     val_top1(net, best_rand, ev), r["cost"], cost.of(best_rand), evo_s))
        print(rows[-1], flush=True)
    body = [
        "| what | subnets | time | per subnet |", "|---|---|---|---|",
        f"| predicted latency, vectorized (pixel4) | 5,000 | {vec_s:.3f} s | "
        f"{1e6 * vec_s / 5000:.1f} µs |",
        f"| predicted latency, one call per subnet | 5,000 | {one_s:.2f} s | "
        f"{1e6 * one_s / 5000:.0f} µs |",
        f"| real top-1 on the digits ({len(ev.calib)} calib + {len(ev.labels)} search images), "
        f"measured on {args.real} | "
        f"5,000 (extrapolated) | {5000 * real_s / 60:.0f} min | {real_s:.2f} s |", "",
        f"Front vs random search at equal budget (pixel4 predictor; evolution: population "
        f"{args.population}, {args.generations} generations, {args.population // 2} parents, "
        f"{args.population // 2} mutations + {args.population // 2} crossovers; random: the "
        "same number of feasible random subnets). top-1 on the search split (fitness) and on "
        "the validation split (never seen by the search):", "",
        "| budget (ms) | evaluations | evolution search top-1 | random search top-1 | "
        "evolution val top-1 | random val top-1 | latency evo / random (ms) |",
        "|---|---|---|---|---|---|---|"]
    for b, n, ea, ra, ev_, rv, ec, rc, _s in rows:
        body.append(f"| {b:g} | {n} | {100 * ea:.1f}% | {100 * ra:.1f}% | {100 * ev_:.1f}% | "
                    f"{100 * rv:.1f}% | {ec:.2f} / {rc:.2f} |")
    body += ["", f"Supernet: {args.supernet} (the default `evit-train` run: digits, 267 "
             f"steps). On 2 CPU cores one real evaluation of a uniformly random subnet costs "
             f"{real_s:.1f} s (BN recalibration + top-1 at its resolution, up to 288 px), so the "
             "release's defaults (512 + 40 × 256 evaluations) are a GPU-sized job; the search "
             "budgets here are small. Search time per budget (evolution only): "
             + ", ".join(f"{r[0]:g} ms {r[8]:.0f} s" for r in rows) + "."]
    write_section("search", "Search (issue 7)", "\n".join(body))


if __name__ == "__main__":
    main()
