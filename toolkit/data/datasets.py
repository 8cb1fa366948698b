"""Data: ImageFolder (ImageNet layout) with the release's transforms, and embedded digits.

Every random choice is seeded by ``(seed, epoch, index)`` (samples) or ``(seed, step)``
(mixup), so batches do not depend on the number of workers and a resumed run sees exactly
the batches an uninterrupted one would.

* ``--data DIR``: ``DIR/train/<class>/*.jpg`` and ``DIR/val/<class>/*.jpg`` (any PIL format).
  Train: RandomResizedCrop (bicubic), horizontal flip, RandAugment
  ``rand-n1-m1-mstd0.5-inc1``, random erasing (p=0.01, per-pixel noise), each with timm's
  semantics (``toolkit/data/augment.py``). Eval: resize to size/0.875 (bicubic), centre
  crop. ImageNet mean/std.
* no ``--data``: scikit-learn's 8x8 handwritten digits (1,797 images shipped inside
  scikit-learn, no download), upscaled to 32x32; a fixed stratified 20% is held out for
  evaluation; training images are randomly shifted by up to 2 px.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps

from toolkit.data.augment import rand_augment, random_erasing, random_resized_crop

__all__ = ["DataError", "build_datasets", "BatchStream", "DigitsDataset",
           "ImageFolderDataset", "IMAGENET_MEAN", "IMAGENET_STD"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
IMG_EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp", ".gif"}


class DataError(ValueError):
    """Unusable training data; the message says what is wrong and the expected layout."""


# --------------------------------------------------------------------------- digits


class DigitsDataset(torch.utils.data.Dataset):
    """scikit-learn digits as 3x32x32 float tensors; split 'train' / 'val' / 'search'.

    'search' (287 images) is a fixed 20% of the non-validation images, held out from 'train'
    (1,151) and 'val' (359, the reporting set): search fitness is measured on images the
    supernet never trained on, as the release measures it on its own ``search`` folder.
    """

    num_classes = 10
    image_size = 32

    def __init__(self, split: str = "train", seed: int = 0, augment: bool | None = None):
        from sklearn.datasets import load_digits

        d = load_digits()
        x = torch.tensor(d.images, dtype=torch.float32) / 16.0
        y = torch.tensor(d.target, dtype=torch.int64)
        rng = np.random.default_rng(12345)  # the split is fixed, independent of the run seed
        val_idx, search_idx = [], []
        for c in range(10):
            idx = rng.permutation(np.flatnonzero(d.target == c))
            n_val = round(len(idx) * 0.2)
            val_idx += list(idx[:n_val])
            search_idx += list(idx[n_val:n_val + round((len(idx) - n_val) * 0.2)])
        val = np.sort(val_idx)
        train = np.setdiff1d(np.setdiff1d(np.arange(len(y)), val), search_idx)
        keep = {"train": train, "val": val, "search": np.sort(search_idx)}.get(split)
        if keep is None:
            raise DataError(f"split = {split!r}; choose train, val or search")
        x = F.interpolate(x[keep, None], size=(32, 32), mode="bilinear", align_corners=False)
        self.x = ((x - 0.5) / 0.5).expand(-1, 3, -1, -1).contiguous()
        self.y = y[keep]
        self.targets = self.y.tolist()
        self.seed, self.epoch = seed, 0
        self.augment = split == "train" if augment is None else augment

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        x = self.x[i]
        if self.augment:
            dx, dy = np.random.default_rng((self.seed, self.epoch, i)).integers(-2, 3, size=2)
            x = torch.roll(F.pad(x, (2, 2, 2, 2), value=-1.0), (int(dy), int(dx)), (1, 2))
            x = x[:, 2:-2, 2:-2]
        return x, int(self.y[i])


# --------------------------------------------------------------------------- image folders


def _to_tensor(img: Image.Image) -> torch.Tensor:
    a = torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0).permute(2, 0, 1)
    mean = torch.tensor(IMAGENET_MEAN)[:, None, None]
    return (a - mean) / torch.tensor(IMAGENET_STD)[:, None, None]


class ImageFolderDataset(torch.utils.data.Dataset):
    """``root/<class>/<image>``; classes are the sorted sub-folder names."""

    def __init__(self, root: str | Path, image_size: int = 224, train: bool = True,
                 seed: int = 0, classes: list[str] | None = None, re_prob: float = 0.01):
        root = Path(root)
        if not root.is_dir():
            raise DataError(f"{str(root)!r} is not a folder; expected <data>/train/<class>/*.jpg "
                            "and <data>/val/<class>/*.jpg (the ImageNet layout)")
        found = sorted(p.name for p in root.iterdir() if p.is_dir())
        self.classes = classes if classes is not None else found
        if not self.classes:
            raise DataError(f"{str(root)!r} has no class sub-folders; put each class's images in "
                            f"{root}/<class name>/")
        extra = set(found) - set(self.classes)
        if extra:
            raise DataError(f"{str(root)!r} has classes the training split lacks: {sorted(extra)}")
        self.samples: list[tuple[Path, int]] = []
        for ci, c in enumerate(self.classes):
            d = root / c
            files = sorted(p for p in d.rglob("*") if p.suffix.lower() in IMG_EXTS) \
                if d.is_dir() else []
            self.samples += [(p, ci) for p in files]
        if not self.samples:
            raise DataError(f"no images ({', '.join(sorted(IMG_EXTS))}) under {str(root)!r}")
        self.targets = [c for _, c in self.samples]
        self.num_classes = len(self.classes)
        self.image_size, self.train, self.seed, self.epoch = image_size, train, seed, 0
        self.re_prob = re_prob

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        path, label = self.samples[i]
        try:
            with Image.open(path) as im:
                img = im.convert("RGB")
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
            raise DataError(f"cannot read image {str(path)!r}: {e}") from None
        s = self.image_size
        if self.train:
            rng = np.random.default_rng((self.seed, self.epoch, i))
            img = random_resized_crop(img, s, rng)
            if rng.random() < 0.5:
                img = ImageOps.mirror(img)
            x = _to_tensor(rand_augment(img, rng, n=1, m=1.0, mstd=0.5))
            return random_erasing(x, rng, self.re_prob), label
        short = round(s / 0.875)
        w, h = img.size
        sc = short / min(w, h)
        img = img.resize((max(short, round(w * sc)), max(short, round(h * sc))), Image.BICUBIC)
        w, h = img.size
        left, top = (w - s) // 2, (h - s) // 2
        return _to_tensor(img.crop((left, top, left + s, top + s))), label


@dataclass
class Datasets:
    train: torch.utils.data.Dataset
    val: torch.utils.data.Dataset
    num_classes: int
    image_size: int
    name: str


def build_datasets(data: str | Path | None, image_size: int = 224, seed: int = 0) -> Datasets:
    """``data=None`` → the embedded digits; else an ImageNet-layout folder."""
    if data is None:
        return Datasets(DigitsDataset("train", seed), DigitsDataset("val", seed), 10, 32,
                        "digits")
    root = Path(data)
    if not root.is_dir():
        raise DataError(f"data folder {str(root)!r} does not exist")
    for split in ("train", "val"):
        if not (root / split).is_dir():
            raise DataError(f"{str(root)!r} has no '{split}' sub-folder; expected "
                            f"{root}/train/<class>/*.jpg and {root}/val/<class>/*.jpg")
    train = ImageFolderDataset(root / "train", image_size, True, seed)
    val = ImageFolderDataset(root / "val", image_size, False, seed, classes=train.classes)
    return Datasets(train, val, train.num_classes, image_size, str(root))


def calibration_images(data: str | Path | None, n: int, image_size: int = 224,
                       seed: int = 0) -> torch.Tensor:
    """``n`` fixed training images (or all, if fewer) with the evaluation preprocessing: what
    quantization ranges are calibrated on. Augmented crops and shifts would calibrate for
    images the deployed model never sees."""
    if data is None:
        train = DigitsDataset("train", seed, augment=False)
    else:
        train = ImageFolderDataset(Path(data) / "train", image_size, False, seed)
    idx = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))[:n]
    return torch.stack([train[int(i)][0] for i in idx])


# --------------------------------------------------------------------------- batches


class BatchStream:
    """Deterministic training batches by global step (resume-safe, DDP-sharded).

    Epoch ``e`` visits ``default_rng((seed, e)).permutation(n)`` in global batches of
    ``batch_size * world``; rank ``r`` takes positions ``r::world`` of each.
    """

    def __init__(self, dataset: torch.utils.data.Dataset, batch_size: int, seed: int = 0,
                 rank: int = 0, world: int = 1, workers: int = 0):
        self.ds, self.bs, self.seed, self.rank, self.world = dataset, batch_size, seed, rank, world
        self.workers = workers
        self.global_bs = batch_size * world
        self.steps_per_epoch = len(dataset) // self.global_bs
        if self.steps_per_epoch == 0:
            raise DataError(f"the training set has {len(dataset)} images, fewer than one global "
                            f"batch ({self.global_bs}); lower --batch-size")

    def _indices(self, epoch: int, start: int) -> list[list[int]]:
        perm = np.random.default_rng((self.seed, epoch)).permutation(len(self.ds))
        out = []
        for s in range(start, self.steps_per_epoch):
            g = perm[s * self.global_bs:(s + 1) * self.global_bs]
            out.append([int(i) for i in g[self.rank::self.world]])
        return out

    def iterate(self, start_step: int) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
        """Yield (global step, images, labels) forever from ``start_step``."""
        step = start_step
        while True:
            epoch, pos = divmod(step, self.steps_per_epoch)
            if hasattr(self.ds, "set_epoch"):
                self.ds.set_epoch(epoch)
            loader = torch.utils.data.DataLoader(self.ds, batch_sampler=self._indices(epoch, pos),
                                                 num_workers=self.workers)
            for x, y in loader:
                yield step, x, y
                step += 1
