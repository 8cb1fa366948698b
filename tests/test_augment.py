"""The training augmentation against hand-computed cases of timm's semantics
(``rand-n1-m1-mstd0.5-inc1``, RandomResizedCrop, RandomErasing)."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch
from PIL import Image

import toolkit.data.augment as aug

FILL = (124, 116, 104)


def _const(value, size=(8, 8)) -> Image.Image:
    return Image.new("RGB", size, (value, value, value))


def _px(img: Image.Image) -> int:
    return img.getpixel((0, 0))[0]


def test_posterize_increasing_keeps_4_bits_at_m1():
    # timm: bits = 4 - int(m / 10 * 4). 183 = 0b10110111
    for m, want in ((1.0, 0b10110000), (2.4, 0b10110000), (2.5, 0b10100000), (5.0, 0b10000000),
                    (10.0, 0)):
        out = aug.apply_op(_const(183), "PosterizeIncreasing", m, np.random.default_rng(0))
        assert _px(out) == want, m


def test_solarize_increasing_and_solarize_add_thresholds():
    rng = np.random.default_rng(0)
    # threshold 256 - int(m / 10 * 256): m = 1 -> 231
    assert _px(aug.apply_op(_const(240), "SolarizeIncreasing", 1.0, rng)) == 255 - 240
    assert _px(aug.apply_op(_const(230), "SolarizeIncreasing", 1.0, rng)) == 230
    assert _px(aug.apply_op(_const(230), "SolarizeIncreasing", 0.0, rng)) == 230  # 256: none
    # add int(m / 10 * 110) below 128: m = 1 -> +11
    for v, want in ((100, 111), (127, 138), (128, 128), (250, 250), (0, 11)):
        assert _px(aug.apply_op(_const(v), "SolarizeAdd", 1.0, rng)) == want
    assert _px(aug.apply_op(_const(120), "SolarizeAdd", 10.0, rng)) == 230


def test_enhance_factor_is_one_plus_or_minus_0_09_at_m1():
    seen = set()
    for seed in range(20):
        out = aug.apply_op(_const(100), "BrightnessIncreasing", 1.0, np.random.default_rng(seed))
        seen.add(_px(out))
    assert seen == {109, 91}  # 100 x (1 ± 0.09)
    # m = 10 and the negative sign: max(0.1, 1 - 0.9) = 0.1
    outs = {_px(aug.apply_op(_const(100), "BrightnessIncreasing", 10.0,
                             np.random.default_rng(s))) for s in range(20)}
    assert outs == {190, 10}


def test_rotate_and_translate_magnitudes_and_fill():
    img = Image.new("RGB", (200, 40), (0, 0, 0))
    for y in range(40):
        img.putpixel((50, y), (255, 255, 255))
    shifts = set()
    for seed in range(12):
        out = np.asarray(aug.apply_op(img, "TranslateXRel", 1.0, np.random.default_rng(seed)))
        cols = np.flatnonzero(out[20, :, 0] > 128)
        shifts.add(int(cols.mean()) - 50)
        edge = out[20, -1] if 50 - cols.mean() > 0 else out[20, 0]
        assert tuple(edge) == FILL  # the uncovered border is the mean colour
    assert shifts == {-9, 9}  # 0.045 x 200 pixels
    sq = Image.fromarray(np.random.default_rng(1).integers(0, 255, (32, 32, 3), np.uint8))
    got = aug.apply_op(sq, "Rotate", 1.0, np.random.default_rng(3))
    cands = [sq.rotate(a, resample=Image.BICUBIC, fillcolor=FILL) for a in (3.0, -3.0)]
    assert any(np.array_equal(np.asarray(got), np.asarray(c)) for c in cands)  # ±3 degrees


def test_each_op_is_applied_with_probability_one_half(monkeypatch):
    calls: list[tuple[str, float]] = []
    real = aug.apply_op

    def spy(img, name, m, rng, *a):
        calls.append((name, m))
        return real(img, name, m, rng, *a)

    monkeypatch.setattr(aug, "apply_op", spy)
    img = Image.fromarray(np.random.default_rng(0).integers(10, 250, (16, 16, 3), np.uint8))
    rng = np.random.default_rng(5)
    n, same = 3000, 0
    for _ in range(n):
        out = aug.rand_augment(img, rng)
        same += out is img
    assert 0.46 < len(calls) / n < 0.54  # timm's AugmentOp prob 0.5
    assert same == n - len(calls)  # a skipped op returns the image itself
    names = Counter(c[0] for c in calls)
    assert set(names) == set(aug.RAND_INCREASING_OPS)
    assert all(abs(v / len(calls) - 1 / 15) < 0.025 for v in names.values())
    mags = np.array([c[1] for c in calls])
    assert mags.min() >= 0 and abs(mags.mean() - 1.0) < 0.06 and abs(mags.std() - 0.5) < 0.06


def test_random_resized_crop_fallback_is_timms_centre_crop():
    img = Image.fromarray(np.random.default_rng(0).integers(0, 255, (10, 1000, 3), np.uint8))
    # no try can fit (crops of >= 800 px area need a height > 10): w = round(10 x 4/3) = 13
    got = aug.random_resized_crop(img, 16, np.random.default_rng(0))
    want = img.resize((16, 16), Image.BICUBIC, box=(493, 0, 506, 10))
    assert np.array_equal(np.asarray(got), np.asarray(want))


def test_random_erasing_probability_and_patch():
    x = torch.zeros(3, 32, 32)
    hits = [not torch.equal(aug.random_erasing(x, np.random.default_rng(s), prob=0.01), x)
            for s in range(3000)]
    assert 10 <= sum(hits) <= 55  # p = 0.01
    y = aug.random_erasing(x, np.random.default_rng(0), prob=1.0)
    rows, cols = torch.nonzero(y[0]).unbind(1)
    h, w = int(rows.max() - rows.min() + 1), int(cols.max() - cols.min() + 1)
    assert 0.02 * 1024 * 0.8 <= h * w <= 1024 / 3 * 1.2 and h < 32 and w < 32
    assert x.abs().sum() == 0  # the input is not modified in place


def test_unknown_op_is_an_error():
    with pytest.raises(ValueError, match="unknown RandAugment op 'Cutout'"):
        aug.apply_op(_const(1), "Cutout", 1.0, np.random.default_rng(0))
