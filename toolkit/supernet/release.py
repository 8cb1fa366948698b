"""The release's attention, weight for weight: the elastic block of ``layout="release"``.

It computes what ``SuperAttention`` of the ElasticViT release computes, with its parameters
stored the way the release's checkpoint stores them, so the authors' supernet loads as is:

* one fused q/k/v weight of ``(2 + max_v)·Cmax`` rows: a Q block (rows ``0:Cmax``), a K block
  (``Cmax:2Cmax``) and a V block (``2Cmax:``). A subnet of width C and V scale v takes
  ``[Q[:C] | K[:C] | V[:v·C]]`` and splits that per head into 16 + 16 + 16·v rows (LeViT's
  interleaved layout), so which rows act as a head's q, k or v changes with C and v;
* the relative position bias as a ``((2M-1)², max_heads)`` table and an ``(M², M²)`` index
  buffer for the stage's largest token grid M; a smaller grid g uses the index cropped to
  ``[:g, :g, :g, :g]``. The index is read from the checkpoint, never recomputed: an EMA over
  integer buffers (timm's ``ModelEma``) can change it, and the weights were trained with it;
* LayerNorm over tokens x channels jointly (``LNSuper``);
* the attention scale applied after ``q @ k^T``, Hardswish before the output projection.

``state_for`` re-lays q/k/v into the per-role layout of the static
:class:`~toolkit.supernet.static.Attention` (the arch is fixed there) and compacts the position
table to the entries the cropped index uses.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from toolkit.space import HEAD_DIM
from toolkit.supernet.layers import ElasticJointLayerNorm
from toolkit.supernet.static import relative_index

__all__ = ["ReleaseElasticAttention", "release_residual_pool"]


def release_residual_pool(x: torch.Tensor) -> torch.Tensor:
    """The release's stride-2 residual: 2x2 average pool, padding 1 on odd sides, the zero
    padding counted in each window's mean."""
    return F.avg_pool2d(x, 2, padding=0 if x.shape[-1] % 2 == 0 else 1)


class ReleaseElasticAttention(nn.Module):
    """Pre-norm attention of any width <= max_dim (heads = width // 16), V scale <= max_v."""

    def __init__(self, max_dim: int, max_v: int, max_grid: int):
        super().__init__()
        self.max_dim, self.max_grid = max_dim, max_grid
        vmax = max_v * max_dim
        self.norm = ElasticJointLayerNorm(max_dim)
        self.qkv = nn.Parameter(torch.empty(2 * max_dim + vmax, max_dim))
        self.dw_v = nn.Parameter(torch.empty(vmax, 1, 3, 3))
        self.proj_weight = nn.Parameter(torch.empty(max_dim, vmax))
        self.proj_bias = nn.Parameter(torch.zeros(max_dim))
        t = (2 * max_grid - 1) ** 2
        self.rel_bias = nn.Parameter(torch.empty(t, max_dim // HEAD_DIM))
        self.register_buffer("rel_index", relative_index(max_grid))  # = the release's attn_pos_idx
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for p in (self.qkv, self.proj_weight, self.rel_bias):
            nn.init.trunc_normal_(p, std=0.02)
        nn.init.normal_(self.dw_v, 0.0, (2.0 / 9.0) ** 0.5)
        nn.init.zeros_(self.proj_bias)

    def _qkv_weight(self, dim: int, v_scale: int) -> torch.Tensor:
        m = self.max_dim
        return torch.cat([self.qkv[:dim, :dim], self.qkv[m:m + dim, :dim],
                          self.qkv[2 * m:2 * m + v_scale * dim, :dim]])

    def _index(self, grid: int) -> torch.Tensor:
        if grid > self.max_grid:
            raise ValueError(f"token grid {grid}x{grid} exceeds this stage's maximum "
                             f"{self.max_grid}x{self.max_grid}")
        m = self.max_grid
        return self.rel_index.view(m, m, m, m)[:grid, :grid, :grid, :grid].reshape(
            grid * grid, grid * grid)

    def forward(self, x: torch.Tensor, v_scale: int, grid: int) -> torch.Tensor:
        b, n, dim = x.shape
        h, vd = dim // HEAD_DIM, HEAD_DIM * v_scale
        qkv = F.linear(self.norm(x), self._qkv_weight(dim, v_scale))
        q, k, v = qkv.view(b, n, h, -1).split([HEAD_DIM, HEAD_DIM, vd], dim=3)
        q, k = q.permute(0, 2, 1, 3), k.permute(0, 2, 1, 3)
        hv = h * vd
        v = v.reshape(b, n, hv).transpose(1, 2).reshape(b, hv, grid, grid)
        v = F.conv2d(v, self.dw_v[:hv], None, 1, 1, 1, hv)
        v = v.flatten(2).transpose(1, 2).view(b, n, h, vd).permute(0, 2, 1, 3)
        attn = (q @ k.transpose(-2, -1)) * (HEAD_DIM ** -0.5)
        bias = self.rel_bias[self._index(grid).reshape(-1)].view(n, n, -1)
        attn = (attn + bias.permute(2, 0, 1)[:h].unsqueeze(0)).softmax(dim=-1)
        out = F.hardswish((attn @ v).transpose(1, 2).reshape(b, n, hv))
        return x + F.linear(out, self.proj_weight[:dim, :hv], self.proj_bias[:dim])

    def state_for(self, dim: int, v_scale: int, grid: int, prefix: str) -> dict[str, torch.Tensor]:
        """Keyed like the static ``Attention(dim, v_scale, grid, release=True)``."""
        h, vd = dim // HEAD_DIM, HEAD_DIM * v_scale
        per_head = self._qkv_weight(dim, v_scale).view(h, 2 * HEAD_DIM + vd, dim)
        q, k, v = per_head.split([HEAD_DIM, HEAD_DIM, vd], dim=1)
        hv = h * vd
        index = self._index(grid)
        used, compact = torch.unique(index, sorted=True, return_inverse=True)
        return {
            f"{prefix}qkv.weight": torch.cat([q.reshape(-1, dim), k.reshape(-1, dim),
                                              v.reshape(-1, dim)]),
            f"{prefix}dw_v.weight": self.dw_v[:hv],
            f"{prefix}proj.weight": self.proj_weight[:dim, :hv],
            f"{prefix}proj.bias": self.proj_bias[:dim],
            f"{prefix}rel_bias": self.rel_bias[used, :h].t(),
            f"{prefix}rel_index": compact.reshape(index.shape),
            **self.norm.state_for(dim, f"{prefix}norm."),
        }
