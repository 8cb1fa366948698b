"""Batch-mode mixup/cutmix with soft targets, seeded by (seed, step) like every other draw."""

from __future__ import annotations

import math

import numpy as np
import torch

from toolkit.train.losses import one_hot_smooth


def mixup_cutmix(x: torch.Tensor, y: torch.Tensor, num_classes: int, seed: int, step: int,
                 mixup: float = 0.01, cutmix: float = 0.01, smoothing: float = 0.1,
                 switch_prob: float = 0.5) -> tuple[torch.Tensor, torch.Tensor]:
    """Batch-mode mixup/cutmix (release defaults: alphas 0.01, smoothing 0.1). Soft targets."""
    t = one_hot_smooth(y, num_classes, smoothing)
    if mixup <= 0 and cutmix <= 0:
        return x, t
    rng = np.random.default_rng((seed, step, 0xC0))
    use_cut = cutmix > 0 and (mixup <= 0 or rng.random() < switch_prob)
    lam = float(rng.beta(cutmix, cutmix) if use_cut else rng.beta(mixup, mixup))
    xf = x.flip(0)
    if use_cut:
        h, w = x.shape[-2:]
        ch, cw = int(h * math.sqrt(1 - lam)), int(w * math.sqrt(1 - lam))
        cy, cx = int(rng.integers(h)), int(rng.integers(w))
        y0, y1 = max(cy - ch // 2, 0), min(cy + ch // 2, h)
        x0, x1 = max(cx - cw // 2, 0), min(cx + cw // 2, w)
        x = x.clone()
        x[..., y0:y1, x0:x1] = xf[..., y0:y1, x0:x1]
        lam = 1 - (y1 - y0) * (x1 - x0) / (h * w)
    else:
        x = x * lam + xf * (1 - lam)
    return x, t * lam + t.flip(0) * (1 - lam)
