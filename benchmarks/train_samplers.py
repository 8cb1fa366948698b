"""Issue 3 benchmark: the three samplers at equal budget on the embedded digits.

    python benchmarks/train_samplers.py [--steps 150] [--per-level 6] [--work runs/bench_train]

For each sampler (sandwich, complexity, conflict-aware): train the same number of steps with
the same batch, levels and seed; then, per complexity level, evaluate the same N random
subnets (BN recalibration on training batches, then top-1), pick the best one on the
``search`` split (a slice of the training data) and report its top-1 on the held-out split
(a small-scale Table 3); report the HSS subnets; run the gradient-conflict analysis (Fig. 2b,
Table 4); and record training throughput. Trained supernets are kept in --work, so an
interrupted run picks up where it stopped.
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
from toolkit.flops import flops  # noqa: E402
from toolkit.space import SPACE  # noqa: E402
from toolkit.train import TrainConfig, train  # noqa: E402
from toolkit.train.conflict import analyze  # noqa: E402
from toolkit.train.data import BatchStream, DigitsDataset  # noqa: E402
from toolkit.train.evaluate import evaluate_subnets  # noqa: E402
from toolkit.zoo import hss_archs  # noqa: E402

SAMPLERS = ("sandwich", "complexity", "conflict-aware")
LEVELS = (100.0, 200.0, 300.0, 400.0, 500.0)


def _loader(split: str) -> torch.utils.data.DataLoader:
    return torch.utils.data.DataLoader(DigitsDataset(split, augment=False), batch_size=64)


def train_one(name: str, steps: int, work: Path) -> dict:
    out = work / name
    done = out / "supernet.pt"
    if done.exists() and load_checkpoint(done).get("step") == steps:
        print(f"[{name}] reusing {done}", flush=True)
    else:
        cfg = TrainConfig(out=str(out), sampler=name, steps=steps, levels=LEVELS,
                          eval_images=1, bn_batches=1, seed=0)
        t = time.time()
        resume = (out / "last.pt").exists()  # else a fresh start (a run killed before its
        train(cfg, resume=resume, progress=False, overwrite=not resume)  # first checkpoint)
        print(f"[{name}] trained {steps} steps in {time.time() - t:.0f} s", flush=True)
    log = [json.loads(ln) for ln in (out / "log.jsonl").read_text().splitlines()
           if '"losses"' in ln]
    per_pass = [r["seconds"] / len(r["losses"]) for r in log[1:]]
    return {"seconds": sum(r["seconds"] for r in log),
            "img_per_s_per_subnet_step": 16 / statistics.median(per_pass),
            "median_step_s": statistics.median(r["seconds"] for r in log[1:])}


def evaluate_one(name: str, work: Path, per_level: int) -> dict:
    model = load_supernet(work / name / "supernet.pt")  # EMA weights
    calib = [x for _, x, _ in _calib_batches()]
    rng = np.random.default_rng(2024)  # the same candidate subnets for every sampler
    cands = {f"L{int(f)}_{i}": SPACE.sample_at(f, f + 20, rng=rng)
             for f in LEVELS for i in range(per_level)}
    archs = {**cands, **hss_archs()}
    search = evaluate_subnets(model, archs, calib, _loader("search"), torch.device("cpu"))
    val = evaluate_subnets(model, archs, calib, _loader("val"), torch.device("cpu"))
    levels = {}
    for f in LEVELS:
        names = [n for n in cands if n.startswith(f"L{int(f)}_")]
        best = max(names, key=lambda n: search[n])
        levels[int(f)] = {"best_val": val[best], "best_mflops": flops(archs[best], 10),
                          "mean_val": float(np.mean([val[n] for n in names]))}
    return {"levels": levels, "hss": {k: val[k] for k in hss_archs()}}


def _calib_batches():
    stream = BatchStream(DigitsDataset("train"), 16, seed=0)
    it = stream.iterate(0)
    return [next(it) for _ in range(8)]


def conflicts_one(name: str, work: Path) -> dict:
    model = load_supernet(work / name / "supernet.pt")
    ds = DigitsDataset("train", augment=False)
    g = torch.Generator().manual_seed(0)
    idx = torch.randperm(len(ds), generator=g)
    x = torch.stack([ds[int(i)][0] for i in idx[:64]])
    y = torch.tensor([ds[int(i)][1] for i in idx[:64]])
    calib = [torch.stack([ds[int(i)][0] for i in idx[64 + 16 * k:80 + 16 * k]])
             for k in range(4)]
    score_loader = _loader("search")
    rep = analyze(model, x, y, calib, score_loader, work / name / "conflicts", n_pairs=12,
                  level=300.0, n_level=24, top_k=6)
    return rep.summary


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--per-level", type=int, default=6)
    ap.add_argument("--work", default="runs/bench_train")
    ap.add_argument("--samplers", nargs="+", default=list(SAMPLERS))
    ap.add_argument("--render-only", action="store_true",
                    help="rewrite the RESULTS.md section from WORK/results.json")
    ap.add_argument("--note", default="", help="a sentence appended to the section")
    args = ap.parse_args()
    work = Path(args.work)
    if args.render_only:
        res = json.loads((work / "results.json").read_text())
        for r in res.values():
            r["eval"]["levels"] = {int(k): v for k, v in r["eval"]["levels"].items()}
        write_section("train_samplers", "Supernet training: samplers at equal budget (issue 3)",
                      render(res, args))
        return
    res = {}
    for s in args.samplers:
        res[s] = {"train": train_one(s, args.steps, work)}
        res[s]["eval"] = evaluate_one(s, work, args.per_level)
        res[s]["conflicts"] = conflicts_one(s, work)
        (work / "results.json").write_text(json.dumps(res, indent=1))
        print(json.dumps(res[s], indent=1), flush=True)
    write_section("train_samplers", "Supernet training: samplers at equal budget (issue 3)",
                  render(res, args))


def render(res: dict, args) -> str:
    names = list(res)
    lines = [f"Embedded digits (1,437 train / 360 held-out), {args.steps} steps of batch 16 for "
             "every sampler, levels 100-500 MFLOPs, seed 0, CPU. Per level, the same "
             f"{args.per_level} random subnets are evaluated on each supernet (EMA weights, BN "
             "recalibrated on 8 training batches); the best on the `search` split (a slice of "
             "the training data) is reported on the held-out split.", "",
             "| level (MFLOPs) | " + " | ".join(f"{n}: best / mean top-1" for n in names) + " |",
             "|---|" + "---|" * len(names)]
    for f in LEVELS:
        cells = []
        for n in names:
            lv = res[n]["eval"]["levels"][int(f)]
            cells.append(f"{lv['best_val'] * 100:.1f} / {lv['mean_val'] * 100:.1f}")
        lines.append(f"| {int(f)} | " + " | ".join(cells) + " |")
    for h in ("min_1", "min_2", "min_3"):
        lines.append(f"| HSS {h} | " + " | ".join(
            f"{res[n]['eval']['hss'][h] * 100:.1f}" for n in names) + " |")
    lines += ["", "Gradient conflicts (one batch of 64; cosine similarity of shared-weight "
              "gradients; 12 subnets over 50-1200 MFLOPs for the FLOPs-difference bins; 24 "
              "subnets at 300-320 MFLOPs scored on the search split, top 6 vs 6 random):", "",
              "| sampler | cos, ΔFLOPs 0-100 | 100-300 | 300-600 | 600+ | corr(cos, ΔFLOPs) | "
              "top-6 mean cos | random-6 mean cos |", "|---|---|---|---|---|---|---|---|"]
    for n in names:
        c = res[n]["conflicts"]
        b = c["cosine_by_mflops_diff"]
        cells = [f"{b.get(k, float('nan')):.3f}" for k in ("0-100", "100-300", "300-600",
                                                           "600-2000")]
        lines.append(f"| {n} | " + " | ".join(cells) + f" | {c['corr_cosine_vs_mflops_diff']:.2f}"
                     f" | {c['mean_cosine_top']:.3f} | {c['mean_cosine_random']:.3f} |")
    lines += ["", "Training throughput on this CPU (images per second per subnet pass, "
              "forward + backward, median over steps; batch 16):", "",
              "| sampler | median step (s) | images/s per subnet step | total train time (s) |",
              "|---|---|---|---|"]
    for n in names:
        t = res[n]["train"]
        lines.append(f"| {n} | {t['median_step_s']:.2f} | {t['img_per_s_per_subnet_step']:.1f} |"
                     f" {t['seconds']:.0f} |")
    lines.append("\nNo GPU was available to this session; GPU throughput is not measured yet.")
    if args.note:
        lines.append("\n" + args.note)
    return "\n".join(lines)


if __name__ == "__main__":
    main()
