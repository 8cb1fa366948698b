"""The three samplers at equal budget on the embedded digits, over several seeds.

    python benchmarks/train_samplers.py [--steps 100] [--seeds 0 1 2] [--per-level 4]
                                        [--bank-small 30 --bank-big 10] [--work runs/bench_samplers]

For each sampler (sandwich, complexity, conflict-aware) and seed: train the same number of
steps with the same batch and levels, as the default run does (HSS sub-spaces, distillation
from the embedded digits teacher); then, per complexity level, evaluate the same N subnets of
that level's sub-space (BN recalibration on training batches, then top-1), pick the best one on
the ``search`` split (a slice of the training data) and report its top-1 on the held-out split
(a small-scale Table 3) as mean and spread over seeds; report the HSS subnets, how full the
memory banks ended, and training throughput. ``--conflicts`` adds the gradient-conflict
analysis (Fig. 2b, Table 4) of seed 0. Trained supernets are kept in --work, so an interrupted
run picks up where it stopped.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import write_section  # noqa: E402

from toolkit.checkpoint import load_checkpoint, load_supernet  # noqa: E402
from toolkit.data.datasets import BatchStream, DigitsDataset  # noqa: E402
from toolkit.evaluate import evaluate_subnets  # noqa: E402
from toolkit.flops import flops  # noqa: E402
from toolkit.space import SPACE  # noqa: E402
from toolkit.train import TrainConfig, train  # noqa: E402
from toolkit.train.conflict import analyze  # noqa: E402
from toolkit.train.samplers import hss_for_level  # noqa: E402
from toolkit.train.subspace import level_space  # noqa: E402
from toolkit.zoo import hss_archs  # noqa: E402

SAMPLERS = ("sandwich", "complexity", "conflict-aware")
LEVELS = (100.0, 200.0, 300.0, 400.0, 500.0)


def _loader(split: str) -> torch.utils.data.DataLoader:
    return torch.utils.data.DataLoader(DigitsDataset(split, augment=False), batch_size=64)


def train_one(name: str, seed: int, args, work: Path) -> dict:
    out = work / f"{name}_s{seed}"
    done = out / "supernet.pt"
    if done.exists() and load_checkpoint(done).get("step") == args.steps:
        print(f"[{name} seed {seed}] reusing {done}", flush=True)
    else:
        cfg = TrainConfig(out=str(out), sampler=name, steps=args.steps, levels=LEVELS,
                          eval_images=1, bn_batches=1, seed=seed, bank_small=args.bank_small,
                          bank_big=args.bank_big, subspace=args.subspace,
                          teachers=() if args.no_teacher else None)
        t = time.time()
        resume = (out / "last.pt").exists()  # else a fresh start (a run killed before its
        train(cfg, resume=resume, progress=False, overwrite=not resume)  # first checkpoint)
        print(f"[{name} seed {seed}] trained {args.steps} steps in {time.time() - t:.0f} s",
              flush=True)
    log = [json.loads(ln) for ln in (out / "log.jsonl").read_text().splitlines()
           if '"losses"' in ln]
    per_pass = [r["seconds"] / len(r["losses"]) for r in log[1:]]
    banks = load_checkpoint(done)["sampler"].get("banks")
    return {"seconds": sum(r["seconds"] for r in log),
            "img_per_s_per_subnet_step": 16 / statistics.median(per_pass),
            "median_step_s": statistics.median(r["seconds"] for r in log[1:]),
            "banks": None if banks is None else [[len(b["archs"]), b["capacity"]]
                                                 for b in banks],
            "replayed": sum(not e for r in log for e, role in zip(r["explored"], r["roles"])
                            if role == "uniform")}


def evaluate_one(path: Path, per_level: int) -> dict:
    model = load_supernet(path)  # EMA weights
    calib = [x for _, x, _ in _calib_batches()]
    rng = np.random.default_rng(2024)  # the same candidate subnets for every sampler and seed
    hss = hss_archs()
    cands = {f"L{int(f)}_{i}": level_space(hss[hss_for_level(f)], "hss", SPACE).sample_at(
        f, f + 20, rng=rng) for f in LEVELS for i in range(per_level)}
    archs = {**cands, **hss}
    search = evaluate_subnets(model, archs, calib, _loader("search"), torch.device("cpu"))
    val = evaluate_subnets(model, archs, calib, _loader("val"), torch.device("cpu"))
    levels = {}
    for f in LEVELS:
        names = [n for n in cands if n.startswith(f"L{int(f)}_")]
        best = max(names, key=lambda n: search[n])
        levels[int(f)] = {"best_val": val[best], "best_mflops": flops(archs[best], 10),
                          "mean_val": float(np.mean([val[n] for n in names]))}
    return {"levels": levels, "hss": {k: val[k] for k in hss}}


def _calib_batches():
    stream = BatchStream(DigitsDataset("train"), 16, seed=0)
    it = stream.iterate(0)
    return [next(it) for _ in range(8)]


def conflicts_one(path: Path) -> dict:
    model = load_supernet(path)
    ds = DigitsDataset("train", augment=False)
    g = torch.Generator().manual_seed(0)
    idx = torch.randperm(len(ds), generator=g)
    x = torch.stack([ds[int(i)][0] for i in idx[:64]])
    y = torch.tensor([ds[int(i)][1] for i in idx[:64]])
    calib = [torch.stack([ds[int(i)][0] for i in idx[64 + 16 * k:80 + 16 * k]])
             for k in range(4)]
    score_loader = _loader("search")
    rep = analyze(model, x, y, calib, score_loader, path.parent / "conflicts", n_pairs=12,
                  level=300.0, n_level=24, top_k=6)
    return rep.summary


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--per-level", type=int, default=4)
    ap.add_argument("--bank-small", type=int, default=30,
                    help="bank capacity below 500 MFLOPs (release: 150; scaled to the budget)")
    ap.add_argument("--bank-big", type=int, default=10, help="bank capacity from 500 MFLOPs")
    ap.add_argument("--subspace", default="hss")
    ap.add_argument("--no-teacher", action="store_true")
    ap.add_argument("--conflicts", action="store_true", help="gradient-conflict analysis")
    ap.add_argument("--work", default="runs/bench_samplers")
    ap.add_argument("--samplers", nargs="+", default=list(SAMPLERS))
    ap.add_argument("--render-only", action="store_true",
                    help="rewrite the RESULTS.md section from WORK/results.json")
    ap.add_argument("--note", default="", help="a sentence appended to the section")
    args = ap.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    path = work / "results.json"
    res = json.loads(path.read_text()) if path.exists() else {}
    if not args.render_only:
        for seed in args.seeds:  # seed-major: an interrupted run has every sampler's seed 0
            for s in args.samplers:
                key = f"{s}/{seed}"
                if key in res:
                    continue
                r = {"train": train_one(s, seed, args, work)}
                r["eval"] = evaluate_one(work / f"{s}_s{seed}" / "supernet.pt", args.per_level)
                if args.conflicts and seed == args.seeds[0]:
                    r["conflicts"] = conflicts_one(work / f"{s}_s{seed}" / "supernet.pt")
                res[key] = r
                path.write_text(json.dumps(res, indent=1))
                print(json.dumps(r["eval"], indent=1), flush=True)
    res = json.loads(json.dumps(res))  # level keys as strings, as results.json holds them
    write_section("train_samplers", "Supernet training: samplers at equal budget, 3 seeds "
                  "(issues 3, 21)", render(res, args))


def _ms(values: list[float]) -> str:
    v = np.asarray(values) * 100
    return f"{v.mean():.1f} ± {v.std(ddof=1) if len(v) > 1 else 0:.1f}"


def render(res: dict, args) -> str:
    names = [s for s in SAMPLERS if any(k.startswith(s + "/") for k in res)]
    runs = {n: [res[k] for k in sorted(res) if k.split("/")[0] == n] for n in names}
    seeds = sorted({int(k.split("/")[1]) for k in res})
    lines = [f"Embedded digits (1,437 train / 360 held-out), {args.steps} steps of batch 16 for "
             f"every sampler, levels 100-500 MFLOPs, seeds {', '.join(map(str, seeds))}, CPU; "
             f"sub-spaces `{args.subspace}`, "
             + ("labels (no teacher)" if args.no_teacher else
                "distillation from the embedded digits teacher (T = 0.2)")
             + f"; memory banks {args.bank_small} below 500 MFLOPs and {args.bank_big} from "
             "500 (the release's 150/50 cannot fill in a CPU budget: a level sees about "
             f"{3 * args.steps // len(LEVELS)} draws). Per level, the same {args.per_level} "
             "subnets of the level's sub-space are evaluated on each supernet (EMA weights, BN "
             "recalibrated on 8 training batches); the best on the `search` split (a slice of "
             "the training data) is reported on the held-out split. Mean ± standard deviation "
             "over seeds, top-1 %.", "",
             "| level (MFLOPs) | " + " | ".join(f"{n}: best" for n in names) + " | "
             + " | ".join(f"{n}: mean of {args.per_level}" for n in names) + " |",
             "|---|" + "---|" * (2 * len(names))]
    for f in LEVELS:
        best = [_ms([r["eval"]["levels"][str(int(f))]["best_val"] for r in runs[n]])
                for n in names]
        mean = [_ms([r["eval"]["levels"][str(int(f))]["mean_val"] for r in runs[n]])
                for n in names]
        lines.append(f"| {int(f)} | " + " | ".join(best + mean) + " |")
    for h in ("min_1", "min_2", "min_3"):
        lines.append(f"| HSS {h} | " + " | ".join(
            _ms([r["eval"]["hss"][h] for r in runs[n]]) for n in names) + " |"
            + " |" * len(names))
    wins = {n: 0 for n in names}
    for f in LEVELS:
        m = {n: np.mean([r["eval"]["levels"][str(int(f))]["best_val"] for r in runs[n]])
             for n in names}
        wins[max(m, key=m.get)] += 1
    lines += ["", "Levels won (highest mean best-subnet top-1): "
              + ", ".join(f"{n} {w}" for n, w in wins.items()) + "."]
    if "conflict-aware" in runs:
        lines += ["", "Memory banks at the end (entries / capacity per level 100-500, per "
                  "seed) and uniform draws replayed from a bank:", ""]
        for r, seed in zip(runs["conflict-aware"], seeds):
            b = r["train"]["banks"]
            lines.append(f"- seed {seed}: " + ", ".join(f"{n}/{c}" for n, c in b)
                         + f"; {r['train']['replayed']} of {3 * args.steps} draws replayed")
    lines += ["", "Training throughput on this CPU (images per second per subnet pass, "
              "forward + backward, median over steps; batch 16; mean over seeds):", "",
              "| sampler | median step (s) | images/s per subnet step | train time per run (s) |",
              "|---|---|---|---|"]
    for n in names:
        t = [r["train"] for r in runs[n]]
        lines.append(f"| {n} | {np.mean([x['median_step_s'] for x in t]):.2f} | "
                     f"{np.mean([x['img_per_s_per_subnet_step'] for x in t]):.1f} | "
                     f"{np.mean([x['seconds'] for x in t]):.0f} |")
    if any("conflicts" in r for rs in runs.values() for r in rs):
        lines += ["", "Gradient conflicts (seed 0; one batch of 64; cosine similarity of "
                  "shared-weight gradients):", "",
                  "| sampler | cos, ΔFLOPs 0-100 | 100-300 | 300-600 | 600+ | corr(cos, ΔFLOPs) "
                  "| top-6 mean cos | random-6 mean cos |", "|---|---|---|---|---|---|---|---|"]
        for n in names:
            c = next((r["conflicts"] for r in runs[n] if "conflicts" in r), None)
            if c is None:
                continue
            b = c["cosine_by_mflops_diff"]
            cells = [f"{b.get(k, float('nan')):.3f}" for k in ("0-100", "100-300", "300-600",
                                                               "600-2000")]
            lines.append(f"| {n} | " + " | ".join(cells)
                         + f" | {c['corr_cosine_vs_mflops_diff']:.2f} | "
                         f"{c['mean_cosine_top']:.3f} | {c['mean_cosine_random']:.3f} |")
    if args.note:
        lines.append("\n" + args.note)
    return "\n".join(lines)


if __name__ == "__main__":
    main()
