"""Fitness of a subnet: top-1 with inherited supernet weights after BN recalibration.

BN statistics are re-estimated for each subnet as an exact (cumulative) average over a fixed
calibration slice of the training data; top-1 is measured on the search split (held out from
training, and never the reporting validation set). In-memory slices are resized once per
resolution and kept (image folders stream), results are cached per subnet, and the
supernet's BN buffers are restored afterwards.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from toolkit.evaluate import recalibrate_bn
from toolkit.space import ArchConfig

Subset = torch.utils.data.Subset
_WORKERS = min(4, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1)


# The release's search recalibrates BN on 65 batches of 96 training images and measures top-1 on
# its search folder; 10,000 fitness images keep the standard error of a top-1 estimate <= 0.5%
# at any accuracy. The digits have 1,151 training and 287 search images: 128 calibration
# images and the whole search split (standard error 1.8% at 90% top-1) are the scaled-down
# defaults.
RELEASE_CALIB_IMAGES = 65 * 96
FOLDER_SEARCH_IMAGES = 10_000
DIGITS_CALIB_IMAGES = 128
DIGITS_SEARCH_IMAGES = 287


def default_sizes(data: str | Path | None) -> tuple[int, int]:
    """(calibration images, fitness images) for ``data`` (None = the embedded digits)."""
    if data is None:
        return DIGITS_CALIB_IMAGES, DIGITS_SEARCH_IMAGES
    return RELEASE_CALIB_IMAGES, FOLDER_SEARCH_IMAGES


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
    def from_datasets(cls, supernet, data: str | Path | None, calib_images: int | None = None,
                      search_images: int | None = None, seed: int = 0, image_size: int = 224,
                      device: str = "cpu", warn=None, **kw) -> AccuracyEvaluator:
        """Calibration images from the training split, fitness images from a search split
        the supernet never trained on: the digits' held-out 'search' split, or a folder's
        ``search/<class>/`` (the release's layout). A folder without one falls back to a
        fixed slice of its training images (``warn`` is told). ``None`` sizes: see
        :func:`default_sizes`."""
        from toolkit.data.datasets import DigitsDataset, ImageFolderDataset, build_datasets

        calib_default, search_default = default_sizes(data)
        calib_images = calib_default if calib_images is None else calib_images
        search_images = search_default if search_images is None else search_images
        for name, v in (("calib_images", calib_images), ("search_images", search_images)):
            if type(v) is not int or v < 1:
                raise ValueError(f"{name} = {v!r}; must be a whole number >= 1")
        rng = np.random.default_rng(4321)
        if data is None:
            search = DigitsDataset("search", seed, augment=False)
            train = DigitsDataset("train", seed, augment=False)
            calib = train.x[rng.permutation(len(train.x))[:calib_images]]
            n = min(search_images, len(search.x))
            images, labels = search.x[:n], search.y[:n]
        else:
            ds = build_datasets(data, image_size, seed)
            train = ds.train
            if hasattr(train, "augment"):
                train.augment = False
            order = rng.permutation(len(train))
            # folders stream from disk (10,000 images at 224 px would be 6 GB in memory)
            calib = Subset(train, [int(i) for i in order[:calib_images]])
            folder = Path(data) / "search"
            if folder.is_dir():
                search = ImageFolderDataset(folder, image_size, False, seed,
                                            classes=train.classes)
                picked = rng.permutation(len(search))[:search_images]
            else:
                if warn is not None:
                    warn(f"{data} has no search/ folder: fitness is measured on "
                         f"{min(search_images, len(train) - calib_images)} of its training "
                         "images, which the supernet has seen (optimistic, and less able to "
                         "tell subnets apart). Move a few images per class from train/ to "
                         "search/<class>/ (the release reads <imagenet>/search)")
                search = ImageFolderDataset(Path(data) / "train", image_size, False, seed,
                                            classes=train.classes)  # centre crops
                picked = order[calib_images:calib_images + search_images]
            images = Subset(search, [int(i) for i in picked])
            labels = [search.targets[i] for i in images.indices]
        return cls(supernet, calib, images, torch.as_tensor(labels), device=device, **kw)

    @property
    def standard_error(self) -> float:
        """The worst-case standard error of one top-1 estimate (at 50% accuracy)."""
        return 0.5 / float(np.sqrt(len(self.labels)))

    def _batches(self, r: int):
        """(calibration batches, fitness batches) at resolution ``r``: in-memory tensors are
        resized once and kept; datasets (image folders) stream, resized batch by batch."""
        def resize(x):
            if x.shape[-1] == r:
                return x
            return F.interpolate(x, size=(r, r), mode="bicubic", align_corners=False)

        def stream(ds, bs):
            loader = torch.utils.data.DataLoader(ds, batch_size=bs, num_workers=_WORKERS)
            return (resize(x).to(self.device) for x, _ in loader)

        if isinstance(self.calib, torch.Tensor) and isinstance(self.images, torch.Tensor):
            if r not in self._resized:
                calib = [resize(self.calib[i:i + self.calib_batch]).to(self.device)
                         for i in range(0, len(self.calib), self.calib_batch)]
                imgs = [resize(self.images[i:i + self.batch_size]).to(self.device)
                        for i in range(0, len(self.images), self.batch_size)]
                self._resized[r] = (calib, imgs)
            return self._resized[r]
        return stream(self.calib, self.calib_batch), stream(self.images, self.batch_size)

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
