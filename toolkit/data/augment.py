"""The release's training augmentation, with timm's semantics (timm is not a dependency: it
needs a torchvision built for another torch than the pinned one).

The release builds its transform with timm's ``create_transform(224,
auto_augment="rand-n1-m1-mstd0.5-inc1", interpolation="bicubic", re_prob=0.01,
re_mode="pixel")``. The pieces, as timm (``timm/data/auto_augment.py``, ``transforms.py``,
``random_erasing.py``) defines them:

* RandAugment ``rand-n1-m1-mstd0.5-inc1``: 1 op per image, chosen uniformly from the 15
  "increasing" ops; the op is applied with probability 0.5 (timm's ``AugmentOp`` default); its
  magnitude is ``clip(gauss(1, 0.5), 0, 10)`` on a 0-10 scale; signed ops are negated with
  probability 1/2; geometric ops fill with the mean colour (124, 116, 104) and resample
  bicubic (``interpolation="bicubic"``).
* RandomResizedCrop (scale 0.08-1, ratio 3/4-4/3, 10 tries, then timm's centre fallback),
  horizontal flip 0.5, random erasing (p 0.01, area 0.02-1/3, aspect 0.3-3.3, per-pixel
  normal noise, 10 tries).

Every draw comes from the numpy ``Generator`` passed in (seeded per sample by the caller), so
batches do not depend on worker count. Levels below follow timm's ``*_level_to_arg``.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from PIL import Image, ImageEnhance, ImageOps

__all__ = ["RAND_INCREASING_OPS", "rand_augment", "apply_op", "random_resized_crop",
           "random_erasing", "IMAGENET_FILL"]

IMAGENET_FILL = (124, 116, 104)  # timm: round(255 * ImageNet mean)
LEVEL_DENOM = 10.0
RAND_INCREASING_OPS = ("AutoContrast", "Equalize", "Invert", "Rotate", "PosterizeIncreasing",
                       "SolarizeIncreasing", "SolarizeAdd", "ColorIncreasing",
                       "ContrastIncreasing", "BrightnessIncreasing", "SharpnessIncreasing",
                       "ShearX", "ShearY", "TranslateXRel", "TranslateYRel")


def _negate(v: float, rng: np.random.Generator) -> float:
    return -v if rng.random() > 0.5 else v  # timm's _randomly_negate


def apply_op(img: Image.Image, name: str, magnitude: float, rng: np.random.Generator,
             fill: tuple[int, int, int] = IMAGENET_FILL,
             resample: int = Image.BICUBIC) -> Image.Image:
    """One RandAugment op at ``magnitude`` (0-10), with timm's level-to-argument rules."""
    level = magnitude / LEVEL_DENOM
    geo = {"fillcolor": fill, "resample": resample}
    if name == "AutoContrast":
        return ImageOps.autocontrast(img)
    if name == "Equalize":
        return ImageOps.equalize(img)
    if name == "Invert":
        return ImageOps.invert(img)
    if name == "Rotate":
        return img.rotate(_negate(level * 30.0, rng), **geo)
    if name == "PosterizeIncreasing":
        bits = 4 - int(level * 4)  # keep 4 bits at m < 2.5, down to 0 at m = 10
        if bits <= 0:  # 0 bits: black (older Pillow did this; Pillow 11+ refuses bits=0)
            return img.point([0] * 256 * len(img.getbands()))
        return img if bits >= 8 else ImageOps.posterize(img, bits)
    if name == "SolarizeIncreasing":
        return ImageOps.solarize(img, 256 - int(level * 256))
    if name == "SolarizeAdd":
        add = int(level * 110)
        lut = [min(255, i + add) if i < 128 else i for i in range(256)]
        if img.mode not in ("L", "RGB"):
            return img
        return img.point(lut * (3 if img.mode == "RGB" else 1))
    if name in ("ColorIncreasing", "ContrastIncreasing", "BrightnessIncreasing",
                "SharpnessIncreasing"):
        factor = max(0.1, 1.0 + _negate(level * 0.9, rng))
        enh = {"ColorIncreasing": ImageEnhance.Color, "ContrastIncreasing": ImageEnhance.Contrast,
               "BrightnessIncreasing": ImageEnhance.Brightness,
               "SharpnessIncreasing": ImageEnhance.Sharpness}[name]
        return enh(img).enhance(factor)
    if name in ("ShearX", "ShearY"):
        s = _negate(level * 0.3, rng)
        coef = (1, s, 0, 0, 1, 0) if name == "ShearX" else (1, 0, 0, s, 1, 0)
        return img.transform(img.size, Image.AFFINE, coef, **geo)
    if name in ("TranslateXRel", "TranslateYRel"):
        pct = _negate(level * 0.45, rng)
        coef = ((1, 0, pct * img.size[0], 0, 1, 0) if name == "TranslateXRel"
                else (1, 0, 0, 0, 1, pct * img.size[1]))
        return img.transform(img.size, Image.AFFINE, coef, **geo)
    raise ValueError(f"unknown RandAugment op {name!r}; known: {', '.join(RAND_INCREASING_OPS)}")


def rand_augment(img: Image.Image, rng: np.random.Generator, n: int = 1, m: float = 1.0,
                 mstd: float = 0.5, prob: float = 0.5, fill: tuple[int, int, int] = IMAGENET_FILL,
                 resample: int = Image.BICUBIC) -> Image.Image:
    """timm's ``rand-n{n}-m{m}-mstd{mstd}-inc1`` (ops drawn with replacement)."""
    for _ in range(n):
        name = RAND_INCREASING_OPS[int(rng.integers(len(RAND_INCREASING_OPS)))]
        if prob < 1.0 and rng.random() > prob:
            continue  # this op is skipped (timm: probability 1 - prob)
        mag = rng.normal(m, mstd) if mstd > 0 else m
        img = apply_op(img, name, float(np.clip(mag, 0.0, LEVEL_DENOM)), rng, fill, resample)
    return img


def random_resized_crop(img: Image.Image, size: int, rng: np.random.Generator,
                        scale: tuple[float, float] = (0.08, 1.0),
                        ratio: tuple[float, float] = (3 / 4, 4 / 3)) -> Image.Image:
    """timm's RandomResizedCropAndInterpolation (bicubic)."""
    w, h = img.size
    area = w * h
    for _ in range(10):
        target = area * rng.uniform(*scale)
        ar = math.exp(rng.uniform(math.log(ratio[0]), math.log(ratio[1])))
        cw, ch = int(round(math.sqrt(target * ar))), int(round(math.sqrt(target / ar)))
        if 0 < cw <= w and 0 < ch <= h:
            x0, y0 = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
            return img.resize((size, size), Image.BICUBIC, box=(x0, y0, x0 + cw, y0 + ch))
    in_ratio = w / h  # fallback: the centre crop of the nearest allowed aspect ratio
    if in_ratio < min(ratio):
        cw, ch = w, int(round(w / min(ratio)))
    elif in_ratio > max(ratio):
        cw, ch = int(round(h * max(ratio))), h
    else:
        cw, ch = w, h
    x0, y0 = (w - cw) // 2, (h - ch) // 2
    return img.resize((size, size), Image.BICUBIC, box=(x0, y0, x0 + cw, y0 + ch))


def random_erasing(x: torch.Tensor, rng: np.random.Generator, prob: float = 0.01,
                   min_area: float = 0.02, max_area: float = 1 / 3,
                   min_aspect: float = 0.3) -> torch.Tensor:
    """timm's RandomErasing(mode="pixel", max_count=1) on a normalised CHW tensor."""
    if rng.random() > prob:
        return x
    c, ih, iw = x.shape
    log_ar = (math.log(min_aspect), math.log(1 / min_aspect))
    for _ in range(10):
        target = rng.uniform(min_area, max_area) * ih * iw
        ar = math.exp(rng.uniform(*log_ar))
        eh, ew = int(round(math.sqrt(target * ar))), int(round(math.sqrt(target / ar)))
        if ew < iw and eh < ih:
            y0, x0 = int(rng.integers(0, ih - eh + 1)), int(rng.integers(0, iw - ew + 1))
            x = x.clone()
            x[:, y0:y0 + eh, x0:x0 + ew] = torch.from_numpy(
                rng.standard_normal((c, eh, ew)).astype(np.float32))
            break
    return x
