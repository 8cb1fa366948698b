"""Gradient-conflict analysis (paper §3.2, Fig. 2b/2c, Table 4).

For one batch, each subnet's gradient of the cross-entropy with respect to the supernet's
weights is taken; two subnets' *shared* weights are the elements both of them use, found
exactly (not from non-zero gradients): :func:`used_mask` runs the supernet's slicing on
parameters holding their own global element indices. Their cosine similarity over the shared
weights measures how much the two subnets agree on where the weights should go.

* ``flops_pairs``: subnets spread over a FLOPs range; cosine vs FLOPs difference (Fig. 2b).
* ``quality_groups``: many subnets at one FLOPs level, scored (BN recalibration + top-1);
  mean pairwise cosine among the top-k vs among k random ones (Fig. 2c, Table 4).
"""

from __future__ import annotations

import csv
import itertools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from toolkit.evaluate import evaluate_subnets
from toolkit.flops import flops
from toolkit.space import ArchConfig, SearchSpace
from toolkit.supernet import Supernet


def _bar(items, desc: str):
    """A progress bar on interactive terminals (tqdm), the plain iterable otherwise."""
    import sys

    from tqdm import tqdm

    return tqdm(items, desc=desc, disable=not sys.stderr.isatty())


__all__ = ["used_mask", "subnet_gradient", "shared_cosine", "flops_pairs", "quality_groups",
           "ConflictReport", "analyze"]


@torch.no_grad()
def used_mask(model: Supernet, arch: ArchConfig) -> torch.Tensor:
    """Boolean mask over the flattened parameters of ``model``: True where ``arch`` uses it."""
    params = list(model.parameters())
    saved = [p.data for p in params]
    offsets = np.cumsum([0] + [p.numel() for p in params])
    total = int(offsets[-1])
    try:  # each parameter temporarily holds its own global indices (exact in float64)
        for p, o in zip(params, offsets):
            p.data = torch.arange(o, o + p.numel(), dtype=torch.float64).view(p.shape)
        mask = torch.zeros(total, dtype=torch.bool)
        for k, v in model.state_for(arch).items():
            if "running_" in k or "num_batches" in k or k.endswith("rel_index"):
                continue
            mask[v.detach().reshape(-1).long()] = True
    finally:
        for p, d in zip(params, saved):
            p.data = d
    return mask


def subnet_gradient(model: Supernet, arch: ArchConfig, x: torch.Tensor,
                    y: torch.Tensor) -> torch.Tensor:
    """Flattened gradient of CE(model(x, arch), y) over all parameters (zeros where unused)."""
    model.zero_grad(set_to_none=True)
    model.train()
    F.cross_entropy(model(x, arch), y).backward()
    g = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1)
                   for p in model.parameters()])
    model.zero_grad(set_to_none=True)
    return g.detach()


def shared_cosine(g1: torch.Tensor, m1: torch.Tensor, g2: torch.Tensor,
                  m2: torch.Tensor) -> float:
    s = m1 & m2
    a, b = g1[s].double(), g2[s].double()
    den = a.norm() * b.norm()
    return float(a @ b / den) if den > 0 else float("nan")


def flops_pairs(model: Supernet, x: torch.Tensor, y: torch.Tensor, n: int = 12,
                lo: float = 50.0, hi: float = 1200.0, seed: int = 0) -> list[dict]:
    """Pairwise shared-weight gradient cosines of ``n`` subnets spread over [lo, hi] MFLOPs."""
    space = SearchSpace(seed=seed)
    targets = np.linspace(lo, hi, n)
    archs = [space.sample_at(t, t + 20) for t in targets]
    grads, masks = [], []
    for a in _bar(archs, "gradients over the FLOPs range"):
        grads.append(subnet_gradient(model, a, x, y))
        masks.append(used_mask(model, a))
    rows = []
    for i, j in itertools.combinations(range(n), 2):
        fi, fj = flops(archs[i], model.num_classes), flops(archs[j], model.num_classes)
        rows.append({"i": i, "j": j, "mflops_i": round(fi, 2), "mflops_j": round(fj, 2),
                     "mflops_diff": round(abs(fi - fj), 2),
                     "cosine": shared_cosine(grads[i], masks[i], grads[j], masks[j])})
    return rows


def quality_groups(model: Supernet, x: torch.Tensor, y: torch.Tensor, calib: list[torch.Tensor],
                   score_loader, level: float = 300.0, n: int = 30, k: int = 8,
                   seed: int = 0) -> tuple[list[dict], list[dict]]:
    """Score ``n`` subnets at [level, level+20]; cosines among the top ``k`` and among ``k``
    random ones. Returns (per-subnet scores, pairwise rows)."""
    space = SearchSpace(seed=seed)
    archs = {f"s{i}": space.sample_at(level, level + 20) for i in range(n)}
    device = next(model.parameters()).device
    acc = evaluate_subnets(model, archs, calib, score_loader, device)
    names = sorted(acc, key=lambda nm: -acc[nm])
    rng = np.random.default_rng(seed)
    groups = {"top": names[:k], "random": list(rng.choice(list(archs), size=k, replace=False))}
    cache: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    rows = []
    for group, members in _bar(list(groups.items()), "top vs random gradients"):
        for a, b in itertools.combinations(members, 2):
            for nm in (a, b):
                if nm not in cache:
                    cache[nm] = (subnet_gradient(model, archs[nm], x, y),
                                 used_mask(model, archs[nm]))
            rows.append({"group": group, "a": a, "b": b, "top1_a": acc[a], "top1_b": acc[b],
                         "cosine": shared_cosine(*cache[a], *cache[b])})
    scores = [{"subnet": nm, "mflops": round(flops(archs[nm], model.num_classes), 2),
               "top1": acc[nm], "arch": archs[nm].to_json()} for nm in names]
    return scores, rows


@dataclass
class ConflictReport:
    pairs_csv: Path
    groups_csv: Path
    scores_csv: Path
    png: Path
    summary: dict


def _write_csv(path: Path, rows: list[dict]) -> None:
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def analyze(model: Supernet, x: torch.Tensor, y: torch.Tensor, calib: list[torch.Tensor],
            score_loader, out: str | Path, n_pairs: int = 12, level: float = 300.0,
            n_level: int = 30, top_k: int = 8, seed: int = 0) -> ConflictReport:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    pairs = flops_pairs(model, x, y, n_pairs, seed=seed)
    scores, groups = quality_groups(model, x, y, calib, score_loader, level, n_level, top_k,
                                    seed)
    _write_csv(out / "conflict_pairs.csv", pairs)
    _write_csv(out / "conflict_groups.csv", groups)
    _write_csv(out / "conflict_scores.csv", scores)
    d = np.array([r["mflops_diff"] for r in pairs])
    c = np.array([r["cosine"] for r in pairs])
    bins = [0, 100, 300, 600, 2000]
    by_bin = {f"{lo}-{hi}": float(np.nanmean(c[(d >= lo) & (d < hi)]))
              for lo, hi in zip(bins[:-1], bins[1:]) if np.any((d >= lo) & (d < hi))}
    mean = {g: float(np.nanmean([r["cosine"] for r in groups if r["group"] == g]))
            for g in ("top", "random")}
    summary = {"cosine_by_mflops_diff": by_bin,
               "corr_cosine_vs_mflops_diff": float(np.corrcoef(d, np.nan_to_num(c))[0, 1]),
               "level": level, "mean_cosine_top": mean["top"],
               "mean_cosine_random": mean["random"], "top_k": top_k, "n_level": n_level}
    png = out / "conflicts.png"
    _plot(pairs, groups, png, level)
    return ConflictReport(out / "conflict_pairs.csv", out / "conflict_groups.csv",
                          out / "conflict_scores.csv", png, summary)


def _plot(pairs: list[dict], groups: list[dict], png: Path, level: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    a.scatter([r["mflops_diff"] for r in pairs], [r["cosine"] for r in pairs], s=14)
    a.set_xlabel("|FLOPs difference| (MFLOPs)")
    a.set_ylabel("cosine similarity of shared-weight gradients")
    a.set_title("(b) similarity vs FLOPs difference")
    a.axhline(0, color="grey", lw=0.5)
    data = [[r["cosine"] for r in groups if r["group"] == g] for g in ("random", "top")]
    b.boxplot(data)
    b.set_xticks([1, 2], ["random subnets", "top subnets"])
    b.set_title(f"(c) same level ({level:g}-{level + 20:g} MFLOPs)")
    b.set_ylabel("cosine similarity")
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)
