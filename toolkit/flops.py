"""Analytic multiply-adds and parameter counts: no forward pass, pure, fast.

``flops(arch)`` is the **official formula** of the ElasticViT release (``compute_flops`` in
``models/model.py``, ``cnn.py`` and ``transformer.py``; returns MACs / 1e6 and calls them
"MFLOPs"). It reproduces the paper's 37.37 MFLOPs (min subnet), 3191.46 (max) and the named
models. Every formula here is written once, on integer scalars *or* numpy arrays, so
``flops(arch)`` and the vectorized :func:`flops_encoded` cannot disagree.

How the official count differs from what actually runs
------------------------------------------------------
``torch.utils.flop_counter.FlopCounterMode`` counts 2 FLOPs per multiply-add of every conv,
linear and batched matmul of the static model. Half of its total equals the official count
plus exactly these terms (:func:`counted_macs_corrections`, checked in
``tests/test_flops.py``):

* **dw-conv on V**: the release counts 1 MAC per V element; the 3x3 depthwise conv does 9
  (``+8·N·vd·h`` per attention layer).
* **softmax**: the release counts ``h·N²`` for it; it is no multiply-add (``-h·N²``).
* **transformer downsample block**: its squeeze-excite (``+2·inner·inner/4``) and its shortcut
  1x1 conv (``+in·C·r²`` when the widths differ) are not counted; its expand conv is counted on a
  ``2r x 2r`` input even where the true grid is odd (7x7 at res 224 becomes 8x8).
* **MBConv shortcut**: a stride-2 block is charged ``in·C·r²`` for a shortcut conv even when
  ``in == C`` (then the shortcut is a plain average pool); the stride-1 shortcut conv of the
  first mbv2_1 block (only when its width differs from the first conv's) is not counted.
* **odd-grid residual pool**: on an odd grid the stride-2 shortcut average pool is a depthwise
  2x2 conv (so that XNNPACK runs it), 4 MACs per output plus 4 per output for its count map
  (a constant after conversion).
* Not counted by either: norms, activations, biases, even-grid pooling, the input resize.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from toolkit.choices import (
    COLUMNS,
    HEAD_DIM,
    HEAD_EXPAND,
    HEAD_WIDTH,
    REDUCTION_EXPAND,
    REDUCTION_KERNEL,
    SE_REDUCTION,
    STAGE_NAMES,
    STAGE_SPACES,
    ArchLike,
    stage_grids,
)

__all__ = [
    "flops",
    "params",
    "flops_breakdown",
    "flops_encoded",
    "params_encoded",
    "stage_grids",
    "counted_macs_corrections",
]

PARTS = ("first_conv",) + STAGE_NAMES + ("head",)


def _cols_of(arch: ArchLike) -> dict[str, Any]:
    c: dict[str, Any] = {"resolution": arch.resolution, "stem_width": arch.stem_width}
    for sp, st in zip(STAGE_SPACES, arch.stages):
        for dim in sp.dims:
            c[f"{sp.name}.{dim}"] = getattr(st, dim)
    return c


def _cols_of_encoded(enc: np.ndarray) -> dict[str, Any]:
    enc = np.asarray(enc, dtype=np.int64)
    c = {name: enc[:, j] for j, name in enumerate(COLUMNS)}
    c["mbv2_1.expand"] = 1
    return c


# --------------------------------------------------------------------------- official MACs


def _mbconv_macs(cin, cout, e, k, r, stride2: bool, se: bool, expand: bool = True):
    """Official MobileBlock.compute_flops (stride-2 input side always counted as 2r)."""
    inner = cin * e
    rin = 2 * r if stride2 else r
    t = cin * inner * rin * rin if expand else 0
    t = t + inner * k * k * r * r + inner * cout * r * r
    if se:
        t = t + 2 * inner * (inner // SE_REDUCTION)
    if stride2:
        t = t + cin * cout * r * r
    return t


def _attn_ffn_macs(C, m, v, r):
    """One transformer layer (attention + FFN), official formula."""
    n = r * r
    h = C // HEAD_DIM
    vd = HEAD_DIM * v
    qk = HEAD_DIM
    att = h * n * n * qk + h * n * n + h * vd * n * n + C * n * (qk * h * 2 + vd * h)
    att = att + n * vd * h * C + n * vd * h
    return att + 2 * C * (m * C) * n


def _parts_macs(c: dict[str, Any], num_classes: int) -> dict[str, Any]:
    g = stage_grids(c["resolution"])
    c0 = c["stem_width"]
    out: dict[str, Any] = {"first_conv": 3 * c0 * 9 * g["first_conv"] ** 2}
    cin = c0
    for sp in STAGE_SPACES:
        n = sp.name
        d, w, r = c[f"{n}.depth"], c[f"{n}.width"], g[n]
        if sp.kind == "conv":
            k, e = c[f"{n}.kernel"], c[f"{n}.expand"]
            has_pw = sp.expands != (1,)
            first = _mbconv_macs(cin, w, e, k, r, sp.stride == 2, sp.se, has_pw)
            rest = _mbconv_macs(w, w, e, k, r, False, sp.se, has_pw)
        else:
            m, v = c[f"{n}.mlp_ratio"], c[f"{n}.v_scale"]
            inner = cin * 6
            rin = 2 * r if sp.stride == 2 else r
            down = cin * inner * rin * rin + inner * 9 * r * r + inner * w * r * r
            rest = _attn_ffn_macs(w, m, v, r)
            first = down + rest
        out[n] = first + (d - 1) * rest
        cin = w
    r = g["t4"]
    out["head"] = (cin * cin * HEAD_EXPAND * r * r + cin * HEAD_EXPAND * HEAD_WIDTH
                   + HEAD_WIDTH * num_classes)
    return out


def flops_breakdown(arch: ArchLike, num_classes: int = 1000) -> dict[str, float]:
    """Official MFLOPs per part: first_conv, mbv2_1 ... t4, head."""
    return {k: v / 1e6 for k, v in _parts_macs(_cols_of(arch), num_classes).items()}


def flops(arch: ArchLike, num_classes: int = 1000) -> float:
    """Official MFLOPs (multiply-adds / 1e6) of a subnet."""
    return sum(_parts_macs(_cols_of(arch), num_classes).values()) / 1e6


def flops_encoded(enc: np.ndarray, num_classes: int = 1000) -> np.ndarray:
    """Vectorized :func:`flops` over rows of :meth:`SearchSpace.encode` (float64 MFLOPs)."""
    parts = _parts_macs(_cols_of_encoded(np.atleast_2d(enc)), num_classes)
    return sum(parts.values()).astype(np.float64) / 1e6


# --------------------------------------------------------------------------- parameters


def _bn(c):
    return 2 * c


def _mbconv_params(cin, cout, e, k, se: bool, expand: bool = True):
    inner = cin * e
    p = cin * inner + _bn(inner) if expand else 0
    p = p + inner * k * k + _bn(inner) + inner * cout + _bn(cout)
    if se:
        mid = inner // SE_REDUCTION
        p = p + inner * mid + mid + mid * inner + inner
    return p + (cin != cout) * cin * cout  # 1x1 shortcut conv, no bias


def _layer_params(C, m, v, r):
    h = C // HEAD_DIM
    vdim = HEAD_DIM * v * h
    attn = _bn(C) + C * (2 * HEAD_DIM * h + vdim) + vdim * 9 + vdim * C + C
    attn = attn + h * (2 * r - 1) ** 2  # relative position bias table
    ffn = _bn(C) + C * m * C + m * C + m * C * C + C
    return attn + ffn


def _parts_params(c: dict[str, Any], num_classes: int) -> dict[str, Any]:
    g = stage_grids(c["resolution"])
    c0 = c["stem_width"]
    out: dict[str, Any] = {"first_conv": 27 * c0 + _bn(c0)}
    cin = c0
    for sp in STAGE_SPACES:
        n = sp.name
        d, w = c[f"{n}.depth"], c[f"{n}.width"]
        if sp.kind == "conv":
            k, e = c[f"{n}.kernel"], c[f"{n}.expand"]
            has_pw = sp.expands != (1,)
            first = _mbconv_params(cin, w, e, k, sp.se, has_pw)
            rest = _mbconv_params(w, w, e, k, sp.se, has_pw)
        else:
            rest = _layer_params(w, c[f"{n}.mlp_ratio"], c[f"{n}.v_scale"], g[n])
            first = _mbconv_params(cin, w, REDUCTION_EXPAND, REDUCTION_KERNEL, True) + rest
        out[n] = first + (d - 1) * rest
        cin = w
    hid = HEAD_EXPAND * cin
    out["head"] = (cin * hid + _bn(hid) + hid * HEAD_WIDTH + HEAD_WIDTH
                   + HEAD_WIDTH * num_classes + num_classes)
    return out


def params(arch: ArchLike, num_classes: int = 1000, layout: str = "evit") -> int:
    """Exact parameter count of the static subnet (``extract(arch)``/``create_model``).

    ``layout="release"`` adds the bias of the head's first linear (6·C); its position tables
    have the same size as long as the checkpoint's index is the release's own."""
    n = int(sum(_parts_params(_cols_of(arch), num_classes).values()))
    return n + (HEAD_EXPAND * arch.stages[-1].width if layout == "release" else 0)


def params_encoded(enc: np.ndarray, num_classes: int = 1000) -> np.ndarray:
    return sum(_parts_params(_cols_of_encoded(np.atleast_2d(enc)), num_classes).values())


# --------------------------------------------------------------------------- cross-check


def counted_macs_corrections(arch: ArchLike) -> dict[str, int]:
    """What a real MAC counter sees minus the official formula, term by term (see module doc).

    ``FlopCounterMode`` total / 2 == official MACs + sum(these values), exactly.
    """
    g = stage_grids(arch.resolution)
    out = {"dw_v_conv_9x": 0, "softmax": 0, "downsample_se": 0, "downsample_shortcut": 0,
           "downsample_true_grid": 0, "mbconv_shortcut": 0, "odd_grid_pool": 0}
    c0 = arch.stem_width
    m1 = arch.stages[0]
    if c0 != m1.width:
        out["mbconv_shortcut"] += c0 * m1.width * g["mbv2_1"] ** 2
    cin = m1.width
    prev_grid = g["mbv2_1"]
    for sp, st in zip(STAGE_SPACES[1:], arch.stages[1:]):
        r = g[sp.name]
        if sp.kind == "conv":
            if cin == st.width:  # stride-2 block charged for a shortcut conv it does not have
                out["mbconv_shortcut"] -= cin * st.width * r * r
        else:
            inner = cin * 6
            out["downsample_se"] += 2 * inner * (inner // SE_REDUCTION)
            if cin != st.width:
                out["downsample_shortcut"] += cin * st.width * r * r
            if sp.stride == 2:
                out["downsample_true_grid"] += cin * inner * (prev_grid**2 - (2 * r) ** 2)
                if prev_grid % 2:
                    out["odd_grid_pool"] += (cin + 1) * 4 * r * r
            n, h, vd = r * r, st.heads, HEAD_DIM * st.v_scale
            out["dw_v_conv_9x"] += st.depth * 8 * n * vd * h
            out["softmax"] -= st.depth * h * n * n
        cin, prev_grid = st.width, r
    return out
