"""Elastic primitives: one max-size parameter, functional prefix slicing at call time.

Each primitive has ``weight_for(...)``-style helpers that return the (view of the) slice that a
given width uses. The supernet's forward and :meth:`Supernet.extract` both go through them, so
the static subnet gets exactly the tensors the supernet computes with.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["ElasticBatchNorm", "ElasticLinear", "ElasticLayerNorm", "ElasticJointLayerNorm",
           "JointLayerNorm", "hard_sigmoid", "center_crop_kernel", "init_weights", "LAYOUTS",
           "check_layout"]

# Weight layouts: evit's own (per-role q/k/v, per-token LayerNorm), and the release's
# (checkpoint-compatible with the authors' supernet; see toolkit/supernet/release.py).
LAYOUTS = ("evit", "release")


def check_layout(layout: str) -> str:
    if layout not in LAYOUTS:
        raise ValueError(f"layout = {layout!r} is not allowed; choose one of "
                         f"{', '.join(LAYOUTS)}")
    return layout


def hard_sigmoid(x: torch.Tensor) -> torch.Tensor:
    """relu6(x + 3) / 6: lowers to ops XNNPACK runs (no RELU_0_TO_1, see conversion_trial.md)."""
    return F.relu6(x + 3.0) * (1.0 / 6.0)


def center_crop_kernel(w: torch.Tensor, k: int) -> torch.Tensor:
    """Kernel elasticity: a k x k kernel is the centre of the largest one (no transform matrix)."""
    kmax = w.shape[-1]
    s = (kmax - k) // 2
    return w[..., s:s + k, s:s + k]


class ElasticBatchNorm(nn.BatchNorm2d):
    """BatchNorm over the first C channels of its buffers (works for (B,C,...) inputs of any rank).

    Sliced running stats are views, so training updates the shared buffers in place.
    """

    def _check_input_dim(self, input: torch.Tensor) -> None:  # accept 2-D, 3-D and 4-D
        if input.dim() < 2:
            raise ValueError(f"expected at least 2-D input, got {input.dim()}-D")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = x.shape[1]
        momentum = 0.0
        if self.training:
            self.num_batches_tracked.add_(1)
            # momentum None = cumulative average, as used by BN recalibration
            momentum = (1.0 / float(self.num_batches_tracked) if self.momentum is None
                        else self.momentum)
        return F.batch_norm(x, self.running_mean[:c], self.running_var[:c], self.weight[:c],
                            self.bias[:c], self.training, momentum, self.eps)

    def state_for(self, c: int, prefix: str) -> dict[str, torch.Tensor]:
        return {f"{prefix}weight": self.weight[:c], f"{prefix}bias": self.bias[:c],
                f"{prefix}running_mean": self.running_mean[:c],
                f"{prefix}running_var": self.running_var[:c],
                f"{prefix}num_batches_tracked": self.num_batches_tracked}


class ElasticLinear(nn.Linear):
    """Linear whose active weight is ``weight[:out, :in]``."""

    def weight_for(self, out: int, inp: int) -> torch.Tensor:
        return self.weight[:out, :inp]

    def bias_for(self, out: int) -> torch.Tensor | None:
        return None if self.bias is None else self.bias[:out]

    def forward(self, x: torch.Tensor, out: int | None = None) -> torch.Tensor:  # type: ignore[override]
        out = self.out_features if out is None else out
        return F.linear(x, self.weight_for(out, x.shape[-1]), self.bias_for(out))

    def state_for(self, out: int, inp: int, prefix: str) -> dict[str, torch.Tensor]:
        d = {f"{prefix}weight": self.weight_for(out, inp)}
        if self.bias is not None:
            d[f"{prefix}bias"] = self.bias[:out]
        return d


class ElasticLayerNorm(nn.LayerNorm):
    """Per-token LayerNorm over the first C features (C read from the input)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = x.shape[-1]
        return F.layer_norm(x, (c,), self.weight[:c], self.bias[:c], self.eps)

    def state_for(self, c: int, prefix: str) -> dict[str, torch.Tensor]:
        return {f"{prefix}weight": self.weight[:c], f"{prefix}bias": self.bias[:c]}


def _joint_layer_norm(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor,
                      eps: float) -> torch.Tensor:
    shape = x.shape[1:]
    return F.layer_norm(x, shape, w.expand(shape), b.expand(shape), eps)


class ElasticJointLayerNorm(nn.LayerNorm):
    """The release's ``LNSuper``: each sample normalised over tokens x channels jointly (like
    GroupNorm with one group), then a per-channel affine over the first C features."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = x.shape[-1]
        return _joint_layer_norm(x, self.weight[:c], self.bias[:c], self.eps)

    def state_for(self, c: int, prefix: str) -> dict[str, torch.Tensor]:
        return {f"{prefix}weight": self.weight[:c], f"{prefix}bias": self.bias[:c]}


class JointLayerNorm(nn.LayerNorm):
    """Static form of :class:`ElasticJointLayerNorm` on (B, N, C) tokens."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _joint_layer_norm(x, self.weight, self.bias, self.eps)


def init_weights(module: nn.Module) -> None:
    """MobileNet-style conv init, ViT-style linear init, BN/LN to identity."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            fan_out = m.out_channels * m.kernel_size[0] * m.kernel_size[1] // m.groups
            nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / fan_out))
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d, nn.LayerNorm)) and m.weight is not None:
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
