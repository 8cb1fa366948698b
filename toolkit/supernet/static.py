"""Static ElasticViT subnets: plain ``nn.Module``s, no slicing, no unused parameters.

``StaticViT(arch)`` builds a subnet with fresh weights; :meth:`Supernet.extract` builds the same
module and loads the supernet's slices into it. Structure (after the official release):

* first conv 3x3/2 + BN + Hardswish;
* MBConv blocks: [1x1 expand + BN + Hardswish] → kxk depthwise + BN + Hardswish → [SE] →
  1x1 project + BN; residual = identity, or average pool (stride 2) and/or a 1x1 conv (width
  change);
* transformer stages: a fixed MBv3 downsample block (expand 6, kernel 3, SE), then ``depth``
  pre-norm (attention, FFN) pairs over every pixel as a token. Attention: 16-wide heads,
  ``C // 16`` of them, V ``16·v_scale`` wide per head, a depthwise 3x3 conv on V over the token
  grid, relative position bias, Hardswish before the output projection;
* MBPool head: per-token linear C→6C, BN, Hardswish, mean over tokens, →1984, Hardswish,
  →classes.

``layout="release"`` is the same network with the release's three numerical differences:
LayerNorm over tokens x channels jointly, the stride-2 residual pool counting zero padding on
odd grids, and a bias on the head's first linear. Its attention keeps the relative-position
index read from the checkpoint (a buffer) instead of recomputing it.
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
    STAGE_SPACES,
    ArchConfig,
    ConvStage,
    stage_grids,
)
from toolkit.supernet.layers import JointLayerNorm, check_layout, hard_sigmoid, init_weights

__all__ = ["StaticViT", "MBConv", "Attention", "FFN", "MBPoolHead", "attention_core",
           "relative_index", "residual_pool", "residual_pool_padded"]

_SCALE = HEAD_DIM ** -0.5


def relative_index(grid: int) -> torch.Tensor:
    """(N, N) index into a flattened (2g-1)² table of relative offsets, N = grid²."""
    ys, xs = torch.meshgrid(torch.arange(grid), torch.arange(grid), indexing="ij")
    ys, xs = ys.flatten(), xs.flatten()
    dy = ys[:, None] - ys[None, :] + grid - 1
    dx = xs[:, None] - xs[None, :] + grid - 1
    return dy * (2 * grid - 1) + dx


def attention_core(qkv: torch.Tensor, dw_weight: torch.Tensor, bias: torch.Tensor, heads: int,
                   vdim: int, grid: int, scale: float = _SCALE) -> torch.Tensor:
    """Multi-head attention on fused q|k|v tokens (B, N, ·) → Hardswish(attn·V) (B, N, heads·vdim).

    ``bias`` is the (heads, N, N) relative position bias; V goes through a depthwise 3x3 conv
    over the grid before use. ``scale`` multiplies q (an export folds it into the weights).
    Tokens are the grid's pixels in row-major order, so (B, N, C) is the NHWC map: V is
    permuted straight to NCHW for the conv and back, which a converter's own NHWC layout
    cancels; one transpose per head split/merge is all the graph keeps.
    """
    b, n, _ = qkv.shape
    q, k, v = qkv.split([HEAD_DIM * heads, HEAD_DIM * heads, vdim * heads], dim=-1)
    q = q.reshape(b, n, heads, HEAD_DIM).transpose(1, 2)
    k = k.reshape(b, n, heads, HEAD_DIM).permute(0, 2, 3, 1)  # (B, heads, 16, N)
    v = v.reshape(b, grid, grid, heads * vdim).permute(0, 3, 1, 2)
    v = F.conv2d(v, dw_weight, padding=1, groups=heads * vdim).permute(0, 2, 3, 1)
    v = v.reshape(b, n, heads, vdim).transpose(1, 2)
    attn = (q * scale if scale != 1.0 else q) @ k + bias
    out = attn.softmax(dim=-1) @ v
    return F.hardswish(out.transpose(1, 2).reshape(b, n, heads * vdim))


def residual_pool(x: torch.Tensor) -> torch.Tensor:
    """Stride-2 residual path: 2x2 average pool; odd sides are padded (ceil, like the conv)
    and each window averages its real pixels only.

    Written as a depthwise 2x2 conv of 1/4s (zero padding) times a constant 4/count map:
    ``avg_pool2d(padding=1, count_include_pad=False)`` lowers to STABLEHLO_REDUCE_WINDOW,
    which XNNPACK does not run, and PAD + AVERAGE_POOL gets fused by XNNPACK into a pool that
    excludes the padding from its count (so the correction would apply twice).
    """
    h, w = x.shape[-2:]
    if h % 2 == 0 and w % 2 == 0:
        return F.avg_pool2d(x, 2, 2)
    c = x.shape[1]
    quarter = torch.full((c, 1, 2, 2), 0.25, dtype=x.dtype, device=x.device)
    ones = torch.ones(1, 1, h, w, dtype=x.dtype, device=x.device)
    count = F.conv2d(ones, quarter[:1], stride=2, padding=1)  # (real pixels) / 4
    return F.conv2d(x, quarter, stride=2, padding=1, groups=c) / count


def residual_pool_padded(x: torch.Tensor) -> torch.Tensor:
    """The release's stride-2 residual: ``avg_pool2d(2, padding=1)`` on odd sides with the zero
    padding counted (count_include_pad). Written as a depthwise 2x2 conv of 1/4s with zero
    padding, which XNNPACK runs (``avg_pool2d(padding=1)`` lowers to REDUCE_WINDOW)."""
    h, w = x.shape[-2:]
    if h % 2 == 0 and w % 2 == 0:
        return F.avg_pool2d(x, 2, 2)
    quarter = torch.full((x.shape[1], 1, 2, 2), 0.25, dtype=x.dtype, device=x.device)
    return F.conv2d(x, quarter, stride=2, padding=1, groups=x.shape[1])


class SqueezeExcite(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.reduce = nn.Conv2d(channels, channels // SE_REDUCTION, 1)
        self.expand = nn.Conv2d(channels // SE_REDUCTION, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = F.relu(self.reduce(x.mean((2, 3), keepdim=True)))
        return x * hard_sigmoid(self.expand(s))


class MBConv(nn.Module):
    def __init__(self, cin: int, cout: int, expand: int, kernel: int, stride: int, se: bool,
                 padded_pool: bool = False):
        super().__init__()
        inner = cin * expand
        self.stride = stride
        self.pool = residual_pool_padded if padded_pool else residual_pool
        if expand != 1:
            self.pw = nn.Conv2d(cin, inner, 1, bias=False)
            self.pw_bn = nn.BatchNorm2d(inner)
        self.dw = nn.Conv2d(inner, inner, kernel, stride, kernel // 2, groups=inner, bias=False)
        self.dw_bn = nn.BatchNorm2d(inner)
        if se:
            self.se = SqueezeExcite(inner)
        self.pwl = nn.Conv2d(inner, cout, 1, bias=False)
        self.pwl_bn = nn.BatchNorm2d(cout)
        if cin != cout:
            self.shortcut = nn.Conv2d(cin, cout, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.hardswish(self.pw_bn(self.pw(x))) if hasattr(self, "pw") else x
        h = F.hardswish(self.dw_bn(self.dw(h)))
        if hasattr(self, "se"):
            h = self.se(h)
        h = self.pwl_bn(self.pwl(h))
        r = self.pool(x) if self.stride == 2 else x
        if hasattr(self, "shortcut"):
            r = self.shortcut(r)
        return h + r


class Attention(nn.Module):
    """x + Attn(LN(x)) on (B, N, C) tokens of a ``grid x grid`` map.

    ``release=True``: joint LayerNorm, and the position bias is a (heads, T) table with a
    stored (N, N) index into it (a checkpoint's index is kept as it is, never recomputed).
    """

    def __init__(self, dim: int, v_scale: int, grid: int, release: bool = False):
        super().__init__()
        self.heads, self.vdim, self.grid = dim // HEAD_DIM, HEAD_DIM * v_scale, grid
        hv = self.heads * self.vdim
        self.norm = JointLayerNorm(dim) if release else nn.LayerNorm(dim)
        self.q_scale = _SCALE  # 1.0 once an export folds it into qkv's q rows
        self.qkv = nn.Linear(dim, 2 * HEAD_DIM * self.heads + hv, bias=False)
        self.dw_v = nn.Conv2d(hv, hv, 3, 1, 1, groups=hv, bias=False)
        self.proj = nn.Linear(hv, dim)
        t = 2 * grid - 1
        if release:
            self.rel_bias = nn.Parameter(torch.zeros(self.heads, t * t))
        else:
            self.rel_bias = nn.Parameter(torch.zeros(self.heads, t, t))
        self.register_buffer("rel_index", relative_index(grid), persistent=release)

    def resize_position_table(self, entries: int) -> None:
        """Make room for a table of ``entries`` offsets (a stored index may use more or fewer
        than the (2g-1)² of a fresh one)."""
        self.rel_bias = nn.Parameter(torch.zeros(self.heads, entries))

    def position_bias(self) -> torch.Tensor:
        if hasattr(self, "pos_bias"):  # frozen for export: a constant, no gather
            return self.pos_bias
        return self.rel_bias.flatten(1)[:, self.rel_index]

    @torch.no_grad()
    def freeze_position_bias(self) -> None:
        """Replace the table + gather by the precomputed (heads, N, N) bias constant."""
        bias = self.position_bias().detach().clone()
        del self.rel_bias
        self.register_buffer("pos_bias", bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = attention_core(self.qkv(self.norm(x)), self.dw_v.weight, self.position_bias(),
                             self.heads, self.vdim, self.grid, self.q_scale)
        return x + self.proj(out)


class FFN(nn.Module):
    def __init__(self, dim: int, mlp_ratio: int, release: bool = False):
        super().__init__()
        self.norm = JointLayerNorm(dim) if release else nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, dim * mlp_ratio)
        self.fc2 = nn.Linear(dim * mlp_ratio, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.fc2(F.hardswish(self.fc1(self.norm(x))))


class ConvStageModule(nn.Module):
    def __init__(self, cin: int, st: ConvStage, stride: int, se: bool, release: bool = False):
        super().__init__()
        self.blocks = nn.ModuleList(
            MBConv(cin if i == 0 else st.width, st.width, st.expand, st.kernel,
                   stride if i == 0 else 1, se, padded_pool=release) for i in range(st.depth))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for b in self.blocks:
            x = b(x)
        return x


class TransformerStageModule(nn.Module):
    def __init__(self, cin: int, width: int, depth: int, mlp_ratio: int, v_scale: int,
                 stride: int, grid: int, release: bool = False):
        super().__init__()
        self.reduction = MBConv(cin, width, REDUCTION_EXPAND, REDUCTION_KERNEL, stride, se=True,
                                padded_pool=release)
        self.attns = nn.ModuleList(Attention(width, v_scale, grid, release)
                                   for _ in range(depth))
        self.ffns = nn.ModuleList(FFN(width, mlp_ratio, release) for _ in range(depth))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.reduction(x)
        b, c, h, w = x.shape
        t = x.permute(0, 2, 3, 1).reshape(b, h * w, c)  # every pixel is a token (NHWC order)
        for attn, ffn in zip(self.attns, self.ffns):
            t = ffn(attn(t))
        return t.reshape(b, h, w, c).permute(0, 3, 1, 2)


class MBPoolHead(nn.Module):
    def __init__(self, dim: int, num_classes: int, pre0_bias: bool = False):
        super().__init__()
        hid = HEAD_EXPAND * dim
        self.pre0 = nn.Linear(dim, hid, bias=pre0_bias)
        self.bn = nn.BatchNorm1d(hid)
        self.pre1 = nn.Linear(hid, HEAD_WIDTH)
        self.classifier = nn.Linear(HEAD_WIDTH, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = self.pre0(x.permute(0, 2, 3, 1).flatten(1, 2))  # (B, N, 6C)
        b, n, c = t.shape
        t = F.hardswish(self.bn(t.reshape(b * n, c))).reshape(b, n, c).mean(1)
        return self.classifier(F.hardswish(self.pre1(t)))


class StaticViT(nn.Module):
    """One ElasticViT subnet as a plain network. Input: (B, 3, H, W) images, resized (bicubic)
    to ``arch.resolution`` when they are not already that size."""

    def __init__(self, arch: ArchConfig, num_classes: int = 1000, layout: str = "evit"):
        super().__init__()
        if not isinstance(arch, ArchConfig):
            raise TypeError(f"arch must be an ArchConfig, got {type(arch).__name__}")
        self.arch, self.num_classes, self.layout = arch, num_classes, check_layout(layout)
        release = layout == "release"
        grids = stage_grids(arch.resolution)
        self.first_conv = nn.Conv2d(3, arch.stem_width, 3, 2, 1, bias=False)
        self.first_bn = nn.BatchNorm2d(arch.stem_width)
        stages: list[nn.Module] = []
        cin = arch.stem_width
        for sp, st in zip(STAGE_SPACES, arch.stages):
            if sp.kind == "conv":
                stages.append(ConvStageModule(cin, st, sp.stride, sp.se, release))
            else:
                stages.append(TransformerStageModule(cin, st.width, st.depth, st.mlp_ratio,
                                                     st.v_scale, sp.stride, grids[sp.name],
                                                     release))
            cin = st.width
        self.stages = nn.ModuleList(stages)
        self.head = MBPoolHead(cin, num_classes, pre0_bias=release)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        r = self.arch.resolution
        if x.shape[-2:] != (r, r):
            x = F.interpolate(x, size=(r, r), mode="bicubic", align_corners=False)
        x = F.hardswish(self.first_bn(self.first_conv(x)))
        for s in self.stages:
            x = s(x)
        return self.head(x)
