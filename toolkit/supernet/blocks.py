"""Elastic blocks: max-size weights, sliced per call. Pure: the config is an argument.

Every block has ``forward(x, ...choices)`` and ``state_for(...choices, prefix)``; the latter
returns the exact tensors the forward uses, keyed like the matching module of
:mod:`toolkit.supernet.static`, which is how :meth:`Supernet.extract` works.

q/k/v layout: one block of rows per role and a per-head V layout (``v[head, 0:16·v_scale]``),
so a weight row keeps its role whatever width and V scale a subnet samples (the release's fused
layout re-assigns rows between q, k and v as the width changes). ``release=True`` builds a
stage with the release's parameter shapes and numerics instead (``layout="release"``; its
attention is :class:`~toolkit.supernet.release.ReleaseElasticAttention`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from toolkit.space import (
    HEAD_DIM,
    HEAD_EXPAND,
    HEAD_WIDTH,
    REDUCTION_EXPAND,
    REDUCTION_KERNEL,
    SE_REDUCTION,
    ConvStage,
    TransformerStage,
)
from toolkit.supernet.layers import (
    ElasticBatchNorm,
    ElasticJointLayerNorm,
    ElasticLayerNorm,
    ElasticLinear,
    center_crop_kernel,
    hard_sigmoid,
)
from toolkit.supernet.release import ReleaseElasticAttention, release_residual_pool
from toolkit.supernet.static import attention_core, relative_index, residual_pool

__all__ = ["ElasticMBConv", "ElasticAttention", "ElasticFFN", "ElasticConvStage",
           "ElasticTransformerStage", "ElasticHead"]


class ElasticMBConv(nn.Module):
    """MBConv over any (in width ≤ max_in, out width ≤ max_out, expand, kernel)."""

    def __init__(self, max_in: int, max_out: int, max_expand: int, max_kernel: int, stride: int,
                 se: bool, shortcut: bool, release: bool = False):
        super().__init__()
        inner = max_in * max_expand
        self.stride, self.has_pw, self.has_se = stride, max_expand != 1, se
        self.pool = release_residual_pool if release else residual_pool
        if self.has_pw:
            self.pw = nn.Conv2d(max_in, inner, 1, bias=False)
            self.pw_bn = ElasticBatchNorm(inner)
        self.dw = nn.Conv2d(inner, inner, max_kernel, groups=inner, bias=False)
        self.dw_bn = ElasticBatchNorm(inner)
        if se:
            self.se_reduce = nn.Conv2d(inner, inner // SE_REDUCTION, 1)
            self.se_expand = nn.Conv2d(inner // SE_REDUCTION, inner, 1)
        self.pwl = nn.Conv2d(inner, max_out, 1, bias=False)
        self.pwl_bn = ElasticBatchNorm(max_out)
        if shortcut:
            self.shortcut = nn.Conv2d(max_in, max_out, 1, bias=False)
        self.zero_init_last_bn = stride == 1  # release: pwl BN starts at 0 in stride-1 blocks

    def _w(self, cin: int, cout: int, expand: int, kernel: int) -> dict[str, torch.Tensor]:
        inner = cin * expand
        w = {"dw.weight": center_crop_kernel(self.dw.weight[:inner], kernel),
             "pwl.weight": self.pwl.weight[:cout, :inner]}
        if self.has_pw:
            w["pw.weight"] = self.pw.weight[:inner, :cin]
        if self.has_se:
            mid = inner // SE_REDUCTION
            w.update({"se.reduce.weight": self.se_reduce.weight[:mid, :inner],
                      "se.reduce.bias": self.se_reduce.bias[:mid],
                      "se.expand.weight": self.se_expand.weight[:inner, :mid],
                      "se.expand.bias": self.se_expand.bias[:inner]})
        if cin != cout:
            w["shortcut.weight"] = self.shortcut.weight[:cout, :cin]
        return w

    def forward(self, x: torch.Tensor, cout: int, expand: int, kernel: int) -> torch.Tensor:
        cin = x.shape[1]
        inner = cin * expand
        w = self._w(cin, cout, expand, kernel)
        h = F.hardswish(self.pw_bn(F.conv2d(x, w["pw.weight"]))) if self.has_pw else x
        h = F.conv2d(h, w["dw.weight"], None, self.stride, kernel // 2, 1, inner)
        h = F.hardswish(self.dw_bn(h))
        if self.has_se:
            s = F.conv2d(h.mean((2, 3), keepdim=True), w["se.reduce.weight"], w["se.reduce.bias"])
            s = F.conv2d(F.relu(s), w["se.expand.weight"], w["se.expand.bias"])
            h = h * hard_sigmoid(s)
        h = self.pwl_bn(F.conv2d(h, w["pwl.weight"]))
        r = self.pool(x) if self.stride == 2 else x
        if cin != cout:
            r = F.conv2d(r, w["shortcut.weight"])
        return h + r

    def state_for(self, cin: int, cout: int, expand: int, kernel: int,
                  prefix: str) -> dict[str, torch.Tensor]:
        inner = cin * expand
        d = {prefix + k: v for k, v in self._w(cin, cout, expand, kernel).items()}
        if self.has_pw:
            d.update(self.pw_bn.state_for(inner, prefix + "pw_bn."))
        d.update(self.dw_bn.state_for(inner, prefix + "dw_bn."))
        d.update(self.pwl_bn.state_for(cout, prefix + "pwl_bn."))
        return d


class ElasticAttention(nn.Module):
    """Pre-norm attention of any width ≤ max_dim (heads = width // 16), V scale ≤ max_v."""

    def __init__(self, max_dim: int, max_v: int, max_grid: int):
        super().__init__()
        mh, mv = max_dim // HEAD_DIM, HEAD_DIM * max_v
        self.max_grid = max_grid
        self.norm = ElasticLayerNorm(max_dim)
        self.q = nn.Parameter(torch.empty(mh * HEAD_DIM, max_dim))
        self.k = nn.Parameter(torch.empty(mh * HEAD_DIM, max_dim))
        self.v = nn.Parameter(torch.empty(mh, mv, max_dim))
        self.dw_v = nn.Parameter(torch.empty(mh, mv, 1, 3, 3))
        self.proj_weight = nn.Parameter(torch.empty(max_dim, mh, mv))
        self.proj_bias = nn.Parameter(torch.zeros(max_dim))
        self.rel_bias = nn.Parameter(torch.empty(mh, 2 * max_grid - 1, 2 * max_grid - 1))
        self._index_cache: dict[tuple[int, torch.device], torch.Tensor] = {}
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for p in (self.q, self.k, self.v, self.proj_weight, self.rel_bias):
            nn.init.trunc_normal_(p, std=0.02)
        nn.init.normal_(self.dw_v, 0.0, (2.0 / 9.0) ** 0.5)
        nn.init.zeros_(self.proj_bias)

    def _index(self, grid: int, device: torch.device) -> torch.Tensor:
        key = (grid, device)
        if key not in self._index_cache:
            self._index_cache[key] = relative_index(grid).to(device)
        return self._index_cache[key]

    def _w(self, dim: int, v_scale: int, grid: int) -> dict[str, torch.Tensor]:
        h, vd = dim // HEAD_DIM, HEAD_DIM * v_scale
        if grid > self.max_grid:
            raise ValueError(f"token grid {grid}x{grid} exceeds this stage's maximum "
                             f"{self.max_grid}x{self.max_grid}")
        s = self.max_grid - grid  # the table for a smaller grid is the centre of the largest
        return {
            "qkv.weight": torch.cat([self.q[:h * HEAD_DIM, :dim], self.k[:h * HEAD_DIM, :dim],
                                     self.v[:h, :vd, :dim].reshape(h * vd, dim)]),
            "dw_v.weight": self.dw_v[:h, :vd].reshape(h * vd, 1, 3, 3),
            "proj.weight": self.proj_weight[:dim, :h, :vd].reshape(dim, h * vd),
            "proj.bias": self.proj_bias[:dim],
            "rel_bias": self.rel_bias[:h, s:s + 2 * grid - 1, s:s + 2 * grid - 1],
        }

    def forward(self, x: torch.Tensor, v_scale: int, grid: int) -> torch.Tensor:
        dim = x.shape[-1]
        w = self._w(dim, v_scale, grid)
        bias = w["rel_bias"].flatten(1)[:, self._index(grid, x.device)]
        out = attention_core(F.linear(self.norm(x), w["qkv.weight"]), w["dw_v.weight"], bias,
                             dim // HEAD_DIM, HEAD_DIM * v_scale, grid)
        return x + F.linear(out, w["proj.weight"], w["proj.bias"])

    def state_for(self, dim: int, v_scale: int, grid: int, prefix: str) -> dict[str, torch.Tensor]:
        d = {prefix + k: v for k, v in self._w(dim, v_scale, grid).items()}
        d.update(self.norm.state_for(dim, prefix + "norm."))
        return d


class ElasticFFN(nn.Module):
    def __init__(self, max_dim: int, max_ratio: int, release: bool = False):
        super().__init__()
        self.norm = ElasticJointLayerNorm(max_dim) if release else ElasticLayerNorm(max_dim)
        self.fc1 = ElasticLinear(max_dim, max_dim * max_ratio)
        self.fc2 = ElasticLinear(max_dim * max_ratio, max_dim)

    def forward(self, x: torch.Tensor, mlp_ratio: int) -> torch.Tensor:
        dim = x.shape[-1]
        return x + self.fc2(F.hardswish(self.fc1(self.norm(x), dim * mlp_ratio)), dim)

    def state_for(self, dim: int, mlp_ratio: int, prefix: str) -> dict[str, torch.Tensor]:
        hid = dim * mlp_ratio
        return {**self.norm.state_for(dim, prefix + "norm."),
                **self.fc1.state_for(hid, dim, prefix + "fc1."),
                **self.fc2.state_for(dim, hid, prefix + "fc2.")}


class ElasticConvStage(nn.Module):
    def __init__(self, max_in: int, max_width: int, max_depth: int, max_expand: int,
                 max_kernel: int, stride: int, se: bool, release: bool = False):
        super().__init__()
        if release:  # the release sizes every block of a stage by the stage's own max width
            max_in = max_width
        self.blocks = nn.ModuleList(
            ElasticMBConv(max_in if i == 0 else max_width, max_width, max_expand, max_kernel,
                          stride if i == 0 else 1, se, shortcut=i == 0, release=release)
            for i in range(max_depth))

    def forward(self, x: torch.Tensor, st: ConvStage) -> torch.Tensor:
        for b in self.blocks[:st.depth]:
            x = b(x, st.width, st.expand, st.kernel)
        return x

    def state_for(self, cin: int, st: ConvStage, prefix: str) -> dict[str, torch.Tensor]:
        d: dict[str, torch.Tensor] = {}
        for i, b in enumerate(self.blocks[:st.depth]):
            d.update(b.state_for(cin if i == 0 else st.width, st.width, st.expand, st.kernel,
                                 f"{prefix}blocks.{i}."))
        return d


class ElasticTransformerStage(nn.Module):
    def __init__(self, max_in: int, max_width: int, max_depth: int, max_ratio: int, max_v: int,
                 max_grid: int, stride: int, release: bool = False):
        super().__init__()
        self.reduction = ElasticMBConv(max_width if release else max_in, max_width,
                                       REDUCTION_EXPAND, REDUCTION_KERNEL, stride, se=True,
                                       shortcut=True, release=release)
        attn = ReleaseElasticAttention if release else ElasticAttention
        self.attns = nn.ModuleList(attn(max_width, max_v, max_grid) for _ in range(max_depth))
        self.ffns = nn.ModuleList(ElasticFFN(max_width, max_ratio, release)
                                  for _ in range(max_depth))

    def forward(self, x: torch.Tensor, st: TransformerStage) -> torch.Tensor:
        x = self.reduction(x, st.width, REDUCTION_EXPAND, REDUCTION_KERNEL)
        b, c, h, w = x.shape
        t = x.flatten(2).transpose(1, 2)  # every pixel is a token
        for attn, ffn in zip(self.attns[:st.depth], self.ffns[:st.depth]):
            t = ffn(attn(t, st.v_scale, h), st.mlp_ratio)
        return t.transpose(1, 2).reshape(b, c, h, w)

    def state_for(self, cin: int, st: TransformerStage, grid: int,
                  prefix: str) -> dict[str, torch.Tensor]:
        d = self.reduction.state_for(cin, st.width, REDUCTION_EXPAND, REDUCTION_KERNEL,
                                     prefix + "reduction.")
        for i in range(st.depth):
            d.update(self.attns[i].state_for(st.width, st.v_scale, grid, f"{prefix}attns.{i}."))
            d.update(self.ffns[i].state_for(st.width, st.mlp_ratio, f"{prefix}ffns.{i}."))
        return d


class ElasticHead(nn.Module):
    """MBPool head of any input width ≤ max_dim."""

    def __init__(self, max_dim: int, num_classes: int, pre0_bias: bool = False):
        super().__init__()
        hid = HEAD_EXPAND * max_dim
        self.pre0 = ElasticLinear(max_dim, hid, bias=pre0_bias)
        self.bn = ElasticBatchNorm(hid)
        self.pre1 = ElasticLinear(hid, HEAD_WIDTH)
        self.classifier = nn.Linear(HEAD_WIDTH, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dim = x.shape[1]
        t = self.pre0(x.flatten(2).transpose(1, 2), HEAD_EXPAND * dim)
        b, n, c = t.shape
        t = F.hardswish(self.bn(t.reshape(b * n, c))).reshape(b, n, c).mean(1)
        return self.classifier(F.hardswish(self.pre1(t)))

    def state_for(self, dim: int, prefix: str) -> dict[str, torch.Tensor]:
        hid = HEAD_EXPAND * dim
        return {**self.pre0.state_for(hid, dim, prefix + "pre0."),
                **self.bn.state_for(hid, prefix + "bn."),
                **self.pre1.state_for(HEAD_WIDTH, hid, prefix + "pre1."),
                f"{prefix}classifier.weight": self.classifier.weight,
                f"{prefix}classifier.bias": self.classifier.bias}
