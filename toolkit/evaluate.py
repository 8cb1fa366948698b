"""BN recalibration and top-1 evaluation of subnets with inherited supernet weights."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
from torch import nn

from toolkit.space import ArchConfig

__all__ = ["recalibrate_bn", "top1", "evaluate_subnets"]


def _bns(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


@torch.no_grad()
def recalibrate_bn(model: nn.Module, arch: ArchConfig, batches: Iterable[torch.Tensor]) -> None:
    """Reset BN statistics and re-estimate them for ``arch`` as an exact average over
    ``batches`` (momentum=None), as the release does before evaluating a subnet."""
    bns = _bns(model)
    saved = [(m.momentum, m.training) for m in bns]
    was_training = model.training
    model.eval()
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
        m.train()
    for x in batches:
        model(x, arch)
    for m, (mom, _tr) in zip(bns, saved):
        m.momentum = mom
    model.train(was_training)
    if not was_training:
        for m in bns:
            m.eval()


@torch.no_grad()
def top1(model: nn.Module, arch: ArchConfig, loader: Iterable, device: torch.device) -> float:
    model.eval()
    correct = total = 0
    for x, y in loader:
        pred = model(x.to(device), arch).argmax(1).cpu()
        correct += int((pred == y).sum())
        total += len(y)
    return correct / max(total, 1)


def evaluate_subnets(model: nn.Module, archs: dict[str, ArchConfig],
                     calib_batches: Sequence[torch.Tensor], val_loader: Iterable,
                     device: torch.device) -> dict[str, float]:
    """Top-1 of each named subnet after BN recalibration; the BN state is restored after."""
    bn_state = {k: v.clone() for k, v in model.state_dict().items()
                if "running_" in k or "num_batches_tracked" in k}
    out = {}
    try:
        for name, arch in archs.items():
            recalibrate_bn(model, arch, (x.to(device) for x in calib_batches))
            out[name] = top1(model, arch, val_loader, device)
    finally:
        model.load_state_dict(bn_state, strict=False)
    return out
