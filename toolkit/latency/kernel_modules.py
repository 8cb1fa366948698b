"""A kernel as a PyTorch module: the network's own block for one ``Kernel``, ready to convert.

Each block is built from ``toolkit.supernet.static`` (the classes ``evit-export`` exports),
put in eval mode, with its BatchNorms folded by ``toolkit.export.fold_bn`` and its relative
position bias frozen, and comes with an input of the kernel's real shape.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from toolkit.space import STEM_KERNEL, STEM_STRIDE

from .kernels import Kernel

__all__ = ["FirstConv", "kernel_module"]

# (conv, its BatchNorm) attribute pairs of an MBConv block
MBCONV_BN = (("pw", "pw_bn"), ("dw", "dw_bn"), ("pwl", "pwl_bn"))


class FirstConv(nn.Module):
    """The stem alone: conv, BatchNorm, Hardswish."""

    def __init__(self, cout: int):
        super().__init__()
        self.first_conv = nn.Conv2d(3, cout, STEM_KERNEL, STEM_STRIDE, STEM_KERNEL // 2,
                                    bias=False)
        self.first_bn = nn.BatchNorm2d(cout)

    def forward(self, x):
        return F.hardswish(self.first_bn(self.first_conv(x)))


def _block(k: Kernel, num_classes: int) -> tuple[nn.Module, torch.Tensor]:
    from toolkit.supernet.static import FFN, Attention, MBConv, MBPoolHead

    if k.kind == "firstconv":
        return FirstConv(k.cout), torch.randn(1, 3, k.hw, k.hw)
    if k.kind in ("mbconv", "transds"):
        return (MBConv(k.cin, k.cout, k.expand, k.kernel, k.stride, bool(k.se)),
                torch.randn(1, k.cin, k.hw, k.hw))
    if k.kind == "attn":
        return Attention(k.cout, k.v, k.hw), torch.randn(1, k.hw * k.hw, k.cout)
    if k.kind == "ffn":
        return FFN(k.cout, k.mlp), torch.randn(1, k.hw * k.hw, k.cout)
    return MBPoolHead(k.cin, num_classes), torch.randn(1, k.cin, k.hw, k.hw)


def _fold(m: nn.Module) -> None:
    """Fold each BatchNorm into its conv (``fold_bn``); freeze attention's position bias."""
    from toolkit.export import fold_bn
    from toolkit.supernet.static import Attention, MBConv, MBPoolHead

    pairs = {FirstConv: (("first_conv", "first_bn"),), MBConv: MBCONV_BN,
             MBPoolHead: (("pre0", "bn"),)}.get(type(m), ())
    for conv, bn in pairs:
        if hasattr(m, conv):
            setattr(m, conv, fold_bn(getattr(m, conv), getattr(m, bn)))
            setattr(m, bn, nn.Identity())
    if isinstance(m, Attention):
        m.freeze_position_bias()


def kernel_module(k: Kernel, num_classes: int = 1000) -> tuple[nn.Module, torch.Tensor]:
    """The block for one kernel (eval mode, BN folded) and an input of its real shape."""
    from toolkit.supernet.layers import init_weights

    torch.manual_seed(0)
    m, x = _block(k, num_classes)
    init_weights(m)
    m.eval()
    _fold(m)
    return m, x
