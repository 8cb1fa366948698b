"""Fitness of a subnet: top-1 with inherited supernet weights after BN recalibration.

BN statistics are re-estimated for each subnet as an exact (cumulative) average over a fixed
calibration slice of the training data; top-1 is measured on the search split (never the
reporting validation set). Both slices are resized once per resolution and cached, results are
cached per subnet, and the supernet's BN buffers are restored afterwards.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from toolkit.space import ArchConfig
from toolkit.train.evaluate import recalibrate_bn


class AccuracyEvaluator:
    def __init__(self, supernet: torch.nn.Module, calib: torch.Tensor, images: torch.Tensor,
                 labels: torch.Tensor, batch_size: int = 256, calib_batch: int = 64,
                 device: str | torch.device = "cpu"):
        self.net = supernet.to(device).eval()
        self.device = torch.device(device)
        self.calib, self.images, self.labels = calib, images, labels
        self.batch_size, self.calib_batch = batch_size, calib_batch
        self._resized: dict[int, tuple[list[torch.Tensor], list[torch.Tensor]]] = {}
        self.cache: dict[str, float] = {}
        self.evaluated = 0  # subnets actually evaluated (cache misses)

    @classmethod
    def from_datasets(cls, supernet, data: str | Path | None, calib_images: int = 256,
                      search_images: int = 512, seed: int = 0, image_size: int = 224,
                      device: str = "cpu", **kw) -> AccuracyEvaluator:
        """Calibration and search slices: the digits' fixed 'search' split, or for a folder a
        fixed slice of its training images (calibration and search slices disjoint)."""
        from toolkit.train.data import DigitsDataset, build_datasets

        if data is None:
            search = DigitsDataset("search", seed, augment=False)
            train = DigitsDataset("train", seed, augment=False)
            in_search = {x.numpy().tobytes() for x in search.x}
            rng = np.random.default_rng(4321)
            pool = [int(i) for i in rng.permutation(len(train.x))
                    if train.x[int(i)].numpy().tobytes() not in in_search]
            calib = train.x[pool[:calib_images]]  # calibration never sees the search images
            n = min(search_images, len(search.x))
            xs, ys = list(search.x[:n]), search.y[:n].tolist()
        else:
            ds = build_datasets(data, image_size, seed)
            train = ds.train
            if hasattr(train, "augment"):
                train.augment = False
            rng = np.random.default_rng(4321)
            order = rng.permutation(len(train))
            calib = torch.stack([train[int(i)][0] for i in order[:calib_images]])
            picked = order[calib_images:calib_images + search_images]
            xs, ys = zip(*(train[int(i)] for i in picked))
        images = torch.stack(list(xs))
        labels = torch.as_tensor([int(y) for y in ys])
        return cls(supernet, calib, images, labels, device=device, **kw)

    def _batches(self, r: int):
        if r not in self._resized:
            def resize(x):
                if x.shape[-1] == r:
                    return x
                return F.interpolate(x, size=(r, r), mode="bicubic", align_corners=False)

            calib = [resize(self.calib[i:i + self.calib_batch]).to(self.device)
                     for i in range(0, len(self.calib), self.calib_batch)]
            imgs = [resize(self.images[i:i + self.batch_size]).to(self.device)
                    for i in range(0, len(self.images), self.batch_size)]
            self._resized[r] = (calib, imgs)
        return self._resized[r]

    @torch.no_grad()
    def evaluate(self, archs: Sequence[ArchConfig]) -> list[float]:
        """Top-1 (0..1) of each subnet; duplicates and repeats are served from the cache."""
        todo = list(dict.fromkeys(a.to_json() for a in archs if a.to_json() not in self.cache))
        rank, world = 0, 1
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            rank, world = torch.distributed.get_rank(), torch.distributed.get_world_size()
        mine = todo[rank::world]  # under torchrun each rank evaluates its share
        bn_state = {k: v.clone() for k, v in self.net.state_dict().items()
                    if "running_" in k or "num_batches_tracked" in k}
        local: dict[str, float] = {}
        try:
            for key in mine:
                a = ArchConfig.from_json(key)
                calib, imgs = self._batches(a.resolution)
                recalibrate_bn(self.net, a, calib)
                self.net.eval()
                correct = 0
                for x, y in zip(imgs, self.labels.split(self.batch_size)):
                    correct += int((self.net(x, a).argmax(1).cpu() == y).sum())
                local[key] = correct / len(self.labels)
                self.evaluated += 1
        finally:
            self.net.load_state_dict(bn_state, strict=False)
        if world > 1:
            gathered: list = [None] * world
            torch.distributed.all_gather_object(gathered, local)
            for part in gathered:
                self.cache.update(part)
        else:
            self.cache.update(local)
        return [self.cache[a.to_json()] for a in archs]
