"""The ElasticViT supernet: one set of weights for the whole search space.

``Supernet.forward(x, arch)`` runs subnet ``arch`` with sliced weights; it keeps no state
about which subnet is "active". ``Supernet.extract(arch)`` returns a plain
:class:`~toolkit.supernet.static.StaticViT` holding copies of those slices that computes the
same function (eval mode) and has exactly ``params(arch, layout=...)`` parameters (release
layout: unless the checkpoint's stored position index differs from a fresh one, as an EMA
checkpoint's can; its tables then hold the entries that index uses).

``layout`` picks how the weights are laid out and computed: ``"evit"`` (per-role q/k/v,
per-token LayerNorm; what evit trains by default) or ``"release"`` (the ElasticViT release's
own layout and numerics, so the authors' ImageNet supernet loads: ``evit import-release``).
Every subnet of the space runs in either; they differ in the function a given set of weights
computes, not in the architectures.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from toolkit.space import (
    RESOLUTIONS,
    STAGE_SPACES,
    STEM_WIDTHS,
    ArchConfig,
    ConvStageSpace,
    stage_grids,
)
from toolkit.supernet.blocks import ElasticConvStage, ElasticHead, ElasticTransformerStage
from toolkit.supernet.layers import ElasticBatchNorm, check_layout, init_weights
from toolkit.supernet.static import StaticViT

__all__ = ["Supernet"]


def _max_grids() -> dict[str, int]:
    grids = [stage_grids(r) for r in RESOLUTIONS]
    return {k: max(g[k] for g in grids) for k in grids[0]}


class Supernet(nn.Module):
    def __init__(self, num_classes: int = 1000, layout: str = "evit"):
        super().__init__()
        self.num_classes, self.layout = num_classes, check_layout(layout)
        release = layout == "release"
        max_grid = _max_grids()
        c0 = max(STEM_WIDTHS)
        self.first_conv = nn.Conv2d(3, c0, 3, 2, 1, bias=False)
        self.first_bn = ElasticBatchNorm(c0)
        stages: list[nn.Module] = []
        cin = c0
        for sp in STAGE_SPACES:
            w, d = max(sp.widths), max(sp.depths)
            if isinstance(sp, ConvStageSpace):
                stages.append(ElasticConvStage(cin, w, d, max(sp.expands), max(sp.kernels),
                                               sp.stride, sp.se, release))
            else:
                stages.append(ElasticTransformerStage(cin, w, d, max(sp.mlp_ratios),
                                                      max(sp.v_scales), max_grid[sp.name],
                                                      sp.stride, release))
            cin = w
        self.stages = nn.ModuleList(stages)
        self.head = ElasticHead(cin, num_classes, pre0_bias=release)
        init_weights(self)  # conv/linear/norm; attention tensors initialise themselves
        for m in self.modules():
            if getattr(m, "zero_init_last_bn", False):
                nn.init.zeros_(m.pwl_bn.weight)

    @property
    def subnet_rules(self) -> str:
        """The sub-space rules of the subnets this supernet's weights were trained for
        (``SearchSpace(rules=...)``): a release-layout supernet (the authors' weights) knows
        only the subnets the release's sampler draws."""
        return "release" if self.layout == "release" else "none"

    def forward(self, x: torch.Tensor, arch: ArchConfig) -> torch.Tensor:
        if not isinstance(arch, ArchConfig):
            raise TypeError(f"arch must be an ArchConfig, got {type(arch).__name__}; build one "
                            "with ArchConfig.from_dict(...) or toolkit.SPACE.sample()")
        r = arch.resolution
        if x.shape[-2:] != (r, r):
            x = F.interpolate(x, size=(r, r), mode="bicubic", align_corners=False)
        if self.training:  # channels-last convs train faster on CPU; eval stays bit-exact
            x = x.contiguous(memory_format=torch.channels_last)
        c0 = arch.stem_width
        x = F.conv2d(x, self.first_conv.weight[:c0], None, 2, 1)
        x = F.hardswish(self.first_bn(x))
        for stage, st in zip(self.stages, arch.stages):
            x = stage(x, st)
        return self.head(x)

    def state_for(self, arch: ArchConfig) -> dict[str, torch.Tensor]:
        """The sliced tensors of ``arch``, keyed like ``StaticViT(arch).state_dict()``."""
        grids = stage_grids(arch.resolution)
        c0 = arch.stem_width
        d: dict[str, torch.Tensor] = {"first_conv.weight": self.first_conv.weight[:c0]}
        d.update(self.first_bn.state_for(c0, "first_bn."))
        cin = c0
        for i, (sp, stage, st) in enumerate(zip(STAGE_SPACES, self.stages, arch.stages)):
            if isinstance(stage, ElasticConvStage):
                d.update(stage.state_for(cin, st, f"stages.{i}."))
            else:
                d.update(stage.state_for(cin, st, grids[sp.name], f"stages.{i}."))
            cin = st.width
        d.update(self.head.state_for(cin, "head."))
        return d

    @torch.no_grad()
    def extract(self, arch: ArchConfig) -> StaticViT:
        """A standalone static subnet with copies of this supernet's weights for ``arch``."""
        net = StaticViT(arch, self.num_classes, self.layout)
        state = {k: v.detach().clone() for k, v in self.state_for(arch).items()}
        for name, m in net.named_modules():  # a stored position index may use any table size
            key = f"{name}.rel_bias"
            if key in state and state[key].shape != m.rel_bias.shape:
                m.resize_position_table(state[key].shape[-1])
        net.load_state_dict(state, strict=True)
        net.to(self.first_conv.weight.device)
        return net.train(self.training)
