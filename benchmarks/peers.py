"""Peer models for latency comparison, built without weights, from their papers.

torchvision and timm cannot be used here (torchvision's PyPI wheel does not load with the CPU
build of torch, and timm needs torchvision), so the two Table 2 peers are written out:

* MobileNetV3-Large 1.0 (Howard et al. 2019, Table 1): 219 MFLOPs at 224.
* LeViT-128S (Graham et al. 2021): D = 128/256/384, heads 4/6/8, depths 2/3/4, key dim 16,
  V 2x (4x in the shrinking attention), MLP 2x, 4-conv stem: 305 MFLOPs at 224.

Both are in their inference (BN-folded) form: every conv/linear carries a bias instead of a
BatchNorm, the graph a converter produces after folding.
"""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F
from torch import nn


def _div8(v: float) -> int:
    return max(8, int(v + 4) // 8 * 8)


class _SE(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.fc1 = nn.Conv2d(c, _div8(c / 4), 1)
        self.fc2 = nn.Conv2d(_div8(c / 4), c, 1)

    def forward(self, x):
        s = F.relu(self.fc1(x.mean((2, 3), keepdim=True)))
        return x * F.hardsigmoid(self.fc2(s))


class _Bneck(nn.Module):
    def __init__(self, cin, k, exp, cout, se, hs, s):
        super().__init__()
        act = nn.Hardswish if hs else nn.ReLU
        layers = [] if exp == cin else [nn.Conv2d(cin, exp, 1), act()]
        layers += [nn.Conv2d(exp, exp, k, s, k // 2, groups=exp), act()]
        if se:
            layers.append(_SE(exp))
        layers.append(nn.Conv2d(exp, cout, 1))
        self.body = nn.Sequential(*layers)
        self.res = s == 1 and cin == cout

    def forward(self, x):
        y = self.body(x)
        return x + y if self.res else y


class MobileNetV3Large(nn.Module):
    CFG = [(3, 16, 16, False, False, 1), (3, 64, 24, False, False, 2),
           (3, 72, 24, False, False, 1), (5, 72, 40, True, False, 2),
           (5, 120, 40, True, False, 1), (5, 120, 40, True, False, 1),
           (3, 240, 80, False, True, 2), (3, 200, 80, False, True, 1),
           (3, 184, 80, False, True, 1), (3, 184, 80, False, True, 1),
           (3, 480, 112, True, True, 1), (3, 672, 112, True, True, 1),
           (5, 672, 160, True, True, 2), (5, 960, 160, True, True, 1),
           (5, 960, 160, True, True, 1)]

    def __init__(self, num_classes: int = 1000):
        super().__init__()
        layers = [nn.Conv2d(3, 16, 3, 2, 1), nn.Hardswish()]
        cin = 16
        for k, exp, cout, se, hs, s in self.CFG:
            layers.append(_Bneck(cin, k, exp, cout, se, hs, s))
            cin = cout
        layers += [nn.Conv2d(cin, 960, 1), nn.Hardswish()]
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.Linear(960, 1280), nn.Hardswish(),
                                  nn.Linear(1280, num_classes))

    def forward(self, x):
        return self.head(self.features(x).mean((2, 3)))


class _Attn(nn.Module):
    """LeViT attention (optionally shrinking: queries from a stride-2 subsample)."""

    def __init__(self, dim, out_dim, heads, key_dim, v_ratio, res, stride=1):
        super().__init__()
        self.h, self.kd, self.vd, self.stride = heads, key_dim, v_ratio * key_dim, stride
        self.res, self.res_out = res, (res - 1) // stride + 1
        self.kv = nn.Linear(dim, heads * (key_dim + self.vd))
        self.q = nn.Linear(dim, heads * key_dim)
        self.proj = nn.Linear(heads * self.vd, out_dim)
        pts = list(itertools.product(range(res), range(res)))
        pts_q = list(itertools.product(range(0, res, stride), range(0, res, stride)))
        offsets, idx = {}, []
        for p1 in pts_q:
            for p2 in pts:
                off = (abs(p1[0] - p2[0]), abs(p1[1] - p2[1]))
                idx.append(offsets.setdefault(off, len(offsets)))
        self.bias = nn.Parameter(torch.zeros(heads, len(offsets)))
        self.register_buffer("idx", torch.tensor(idx).view(len(pts_q), len(pts)),
                             persistent=False)
        self.scale = key_dim ** -0.5

    def forward(self, x):
        b, n, _ = x.shape
        k, v = self.kv(x).view(b, n, self.h, -1).split([self.kd, self.vd], dim=3)
        xq = x
        if self.stride > 1:
            xq = x.view(b, self.res, self.res, -1)[:, ::self.stride, ::self.stride].reshape(
                b, -1, x.shape[-1])
        q = self.q(xq).view(b, -1, self.h, self.kd)
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
        attn = (q @ k.transpose(-2, -1)) * self.scale + self.bias[:, self.idx]
        out = (attn.softmax(-1) @ v).transpose(1, 2).reshape(b, -1, self.h * self.vd)
        return self.proj(F.hardswish(out))


class _Mlp(nn.Module):
    def __init__(self, dim, ratio=2):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(dim, dim * ratio), nn.Linear(dim * ratio, dim)

    def forward(self, x):
        return self.fc2(F.hardswish(self.fc1(x)))


class LeViT128S(nn.Module):
    def __init__(self, num_classes: int = 1000, img: int = 224):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, 2, 1), nn.Hardswish(),
                                  nn.Conv2d(16, 32, 3, 2, 1), nn.Hardswish(),
                                  nn.Conv2d(32, 64, 3, 2, 1), nn.Hardswish(),
                                  nn.Conv2d(64, 128, 3, 2, 1))
        dims, heads, depths = (128, 256, 384), (4, 6, 8), (2, 3, 4)
        res = img // 16
        blocks: list[tuple[str, nn.Module]] = []
        for i, (d, h, n) in enumerate(zip(dims, heads, depths)):
            for _ in range(n):
                blocks += [("res", _Attn(d, d, h, 16, 2, res)), ("res", _Mlp(d))]
            if i < 2:  # shrinking attention to the next stage, then an MLP
                blocks.append(("down", _Attn(d, dims[i + 1], d // 16, 16, 4, res, 2)))
                res = (res - 1) // 2 + 1
                blocks.append(("res", _Mlp(dims[i + 1])))
        self.kinds = [k for k, _ in blocks]
        self.blocks = nn.ModuleList(m for _, m in blocks)
        self.head = nn.Linear(dims[-1], num_classes)

    def forward(self, x):
        x = self.stem(x).flatten(2).transpose(1, 2)
        for kind, blk in zip(self.kinds, self.blocks):
            x = x + blk(x) if kind == "res" else blk(x)
        return self.head(x.mean(1))


PEERS = {"mobilenetv3_large_100": MobileNetV3Large, "levit_128s": LeViT128S}
