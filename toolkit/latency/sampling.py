"""Which kernels to measure: cover the space's kernel distribution first, then refine.

Subnet latency is a sum over kernels, so a kernel matters in proportion to how often subnets
use it. ``kernel_frequencies`` counts kernels over random subnets; ``cover`` takes the most
frequent distinct kernels (every kind represented); ``refine`` adds the candidates where a small
bootstrap ensemble of predictors disagrees most, weighted by frequency.
"""

from __future__ import annotations

import numpy as np

from toolkit.space import SPACE, SearchSpace

from .kernels import KINDS, kernel_codes
from .predictor import LatencyPredictor, _kind_of


def random_subnets(n: int, seed: int = 0, mflops: tuple[float, float] | None = None
                   ) -> np.ndarray:
    """n encoded random subnets: uniform over the space, or over those whose MFLOPs lie in
    ``mflops`` = (lo, hi) (the part of the space a deployment will search)."""
    if mflops is None:
        sp = SearchSpace(seed=seed)
        return np.stack([SPACE.encode(sp.sample()) for _ in range(n)])
    from toolkit.flops import flops_encoded

    lo, hi = mflops
    enc = SPACE.sample_window(flops_encoded, lo, hi, n, np.random.default_rng(seed),
                              max_draws=20_000_000, batch=50_000)
    if len(enc) < n:
        span = SPACE.mflops_range()
        raise ValueError(f"mflops = {mflops}: too few subnets of the space lie in "
                         f"[{lo:g}, {hi:g}] MFLOPs; the space spans {span[0]:.1f}-{span[1]:.1f}")
    return enc


def kernel_frequencies(n_subnets: int = 20000, seed: int = 0, convention: str = "table",
                       mflops: tuple[float, float] | None = None
                       ) -> tuple[np.ndarray, np.ndarray]:
    """(distinct kernel codes, how many of n random subnets use each), most frequent first."""
    enc = random_subnets(n_subnets, seed, mflops)
    codes, active = kernel_codes(enc, convention)
    uniq, counts = np.unique(codes[active], return_counts=True)
    order = np.argsort(-counts, kind="stable")
    return uniq[order], counts[order]


def cover(codes: np.ndarray, counts: np.ndarray, n: int, per_kind_min: int = 3) -> np.ndarray:
    """The n most frequent kernels, with at least ``per_kind_min`` of every kind."""
    kinds = _kind_of(codes)
    chosen = []
    for i in range(len(KINDS)):
        chosen.extend(codes[kinds == i][:per_kind_min].tolist())
    for c in codes.tolist():
        if len(chosen) >= n:
            break
        if c not in chosen:
            chosen.append(c)
    return np.array(chosen[:max(n, len(chosen))], dtype=np.int64)


def refine(measured: np.ndarray, latency_ms: np.ndarray, candidates: np.ndarray,
           weights: np.ndarray, k: int, members: int = 3, seed: int = 0,
           max_iter: int = 150) -> np.ndarray:
    """The k unmeasured candidates with the largest frequency-weighted ensemble disagreement."""
    rng = np.random.default_rng(seed)
    have = set(measured.tolist())
    mask = np.array([c not in have for c in candidates.tolist()])
    cand, w = candidates[mask], weights[mask]
    if len(cand) == 0:
        return cand
    preds = []
    for m in range(members):
        idx = rng.integers(0, len(measured), len(measured))
        idx = np.union1d(idx, _one_per_kind(measured))
        p = LatencyPredictor.fit("ensemble", measured[idx], latency_ms[idx], seed=seed + m,
                                 max_iter=max_iter)
        preds.append(np.log(p.predict_kernels(cand)))
    spread = np.std(np.stack(preds), axis=0) * np.exp(np.mean(np.stack(preds), axis=0)) * w
    return cand[np.argsort(-spread)[:k]]


def _one_per_kind(codes: np.ndarray) -> np.ndarray:
    kinds = _kind_of(codes)
    return np.array([np.flatnonzero(kinds == i)[0] for i in range(len(KINDS))
                     if (kinds == i).any()])
