"""Kernels: the blocks a subnet's latency is the sum of (same granularity as the phone tables).

    kernels(arch)              -> [Kernel(kind="firstconv", key="firstconv_192_3_16_2_3", ...), ...]
    kernel_codes(enc, conv)    -> (codes[N, S], active[N, S]) for N encoded subnets at once

Kinds: ``firstconv``, ``mbconv`` (the CNN stages' blocks), ``transds`` (the fixed MBv3 block
that opens each transformer stage), ``attn``, ``ffn``, ``head`` (MBPool). Each kernel has
numeric features (hw, cin, cout, expand, kernel, stride, se, C, mlp_ratio, v_scale, MACs,
params, bytes moved). Keys follow the phone tables' format (data/elasticvit_block_lut/README.md).

Two grid conventions: ``table`` floors every stride-2 halving (the phone tables' keys);
``network`` rounds transformer-stage grids up like the real network (a stride-2 3x3 conv with
padding 1 on 7x7 gives 4x4). Look phone tables up with ``table``; key kernels you measure
yourself by their real shapes with ``network``.

The scalar ``kernels`` runs the vectorized code on one row, so the two cannot disagree.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from toolkit.space import (
    COLUMNS,
    HEAD_EXPAND,
    HEAD_WIDTH,
    REDUCTION_EXPAND,
    REDUCTION_KERNEL,
    SE_REDUCTION,
    SPACE,
    STAGE_SPACES,
    STEM_KERNEL,
    STEM_STRIDE,
    ArchConfig,
)

KINDS = ("firstconv", "mbconv", "transds", "attn", "ffn", "head")
FIELDS = ("kind", "hw", "cin", "cout", "expand", "kernel", "stride", "se", "mlp", "v")
RADIX = (8, 512, 512, 2048, 8, 8, 4, 2, 8, 8)
CONVENTIONS = ("table", "network")
CONV_STAGES = tuple((s.name, s.stride, s.se) for s in STAGE_SPACES if s.kind == "conv")
T_STAGES = tuple((s.name, s.stride) for s in STAGE_SPACES if s.kind == "transformer")


_MAX_DEPTH = {c.split(".")[0]: max(ch) for c, ch in zip(COLUMNS, SPACE.choices)
              if c.endswith(".depth")}
# code = sum(field value x the product of the radices after it): mixed-radix digits
_FIELD_MULT = tuple((f, int(np.prod(RADIX[i + 1:], dtype=np.int64)))
                    for i, f in enumerate(FIELDS))


def encode_code(t: dict) -> np.ndarray:
    code = np.zeros(np.shape(t["hw"]), dtype=np.int64)
    for f, r in zip(FIELDS, RADIX):
        v = np.asarray(t.get(f, 0), dtype=np.int64)
        code = code * r + v
    return code


def decode_code(code: int) -> dict:
    out = {}
    for f, r in reversed(list(zip(FIELDS, RADIX))):
        out[f] = int(code % r)
        code //= r
    return out


def _half(hw, conv: str, ceil: bool):
    return (hw + 1) // 2 if (ceil and conv == "network") else hw // 2


def kernel_slots(enc: np.ndarray, convention: str = "table") -> list[tuple[dict, np.ndarray]]:
    """For N encoded subnets: one (fields dict of arrays, active mask) per kernel slot."""
    if convention not in CONVENTIONS:
        raise ValueError(f"convention = {convention!r}; choose one of {', '.join(CONVENTIONS)}")
    enc = np.atleast_2d(np.asarray(enc, dtype=np.int64))
    col = {name: enc[:, j] for j, name in enumerate(COLUMNS)}
    n = len(enc)
    return _slots(col, np.zeros(n, dtype=np.int64), np.ones(n, dtype=bool), convention)


def kernel_codes_one(row, convention: str = "table") -> list[int]:
    """The active kernels' codes of one encoded subnet, in plain Python (no numpy: a single
    prediction costs microseconds, not the milliseconds of the vectorized path on one row);
    the same ``_slots`` code as :func:`kernel_codes`, so the two cannot disagree."""
    if convention not in CONVENTIONS:
        raise ValueError(f"convention = {convention!r}; choose one of {', '.join(CONVENTIONS)}")
    col = dict(zip(COLUMNS, (int(v) for v in row)))
    return [sum(t.get(f, 0) * m for f, m in _FIELD_MULT)
            for t, _ in _slots(col, 0, True, convention, active_only=True)]


def _slots(col: dict, z, one, convention: str,
           active_only: bool = False) -> list[tuple[dict, object]]:
    """Kernel slots over columns that are arrays (z, one: zeros and ones of their length) or
    Python ints (z = 0, one = True; ``active_only``: the subnet's own layers only)."""
    slots: list[tuple[dict, object]] = []
    res = col["resolution"]
    slots.append(({"kind": z + 0, "hw": res, "cin": z + 3, "cout": col["stem_width"],
                   "kernel": z + STEM_KERNEL, "stride": z + STEM_STRIDE}, one))
    hw, cin = res // STEM_STRIDE, col["stem_width"]
    for name, stride, se in CONV_STAGES:
        depth, width = col[f"{name}.depth"], col[f"{name}.width"]
        expand = col.get(f"{name}.expand", z + 1)
        kernel = col[f"{name}.kernel"]
        for j in range(depth if active_only else _MAX_DEPTH[name]):
            s = stride if j == 0 else 1
            slots.append(({"kind": z + 1, "hw": hw, "cin": cin if j == 0 else width,
                           "cout": width, "expand": expand, "kernel": kernel, "stride": z + s,
                           "se": z + int(se)}, depth > j))
            if j == 0 and s == 2:
                hw = hw // 2  # conv stages floor in both conventions
        cin = width
    for name, stride in T_STAGES:
        depth, width = col[f"{name}.depth"], col[f"{name}.width"]
        mlp, v = col[f"{name}.mlp_ratio"], col[f"{name}.v_scale"]
        slots.append(({"kind": z + 2, "hw": hw, "cin": cin, "cout": width,
                       "expand": z + REDUCTION_EXPAND, "kernel": z + REDUCTION_KERNEL,
                       "stride": z + stride, "se": z + 1}, one))
        if stride == 2:
            hw = _half(hw, convention, ceil=True)
        for j in range(depth if active_only else _MAX_DEPTH[name]):
            active = depth > j
            slots.append(({"kind": z + 3, "hw": hw, "cin": width, "cout": width, "v": v}, active))
            slots.append(({"kind": z + 4, "hw": hw, "cin": width, "cout": width, "mlp": mlp},
                          active))
        cin = width
    slots.append(({"kind": z + 5, "hw": hw, "cin": cin, "cout": z + HEAD_WIDTH,
                   "expand": z + HEAD_EXPAND}, one))
    return slots


def kernel_codes(enc: np.ndarray, convention: str = "table") -> tuple[np.ndarray, np.ndarray]:
    """(codes[N, S], active[N, S]) for N encoded subnets."""
    slots = kernel_slots(enc, convention)
    codes = np.stack([encode_code(t) for t, _ in slots], axis=1)
    active = np.stack([a for _, a in slots], axis=1)
    return codes, active


@dataclass(frozen=True)
class Kernel:
    kind: str
    hw: int
    cin: int = 0
    cout: int = 0
    expand: int = 0
    kernel: int = 0
    stride: int = 0  # 0 for attention, FFN and head (no stride of their own)
    se: int = 0
    mlp: int = 0
    v: int = 0

    @classmethod
    def from_code(cls, code: int) -> Kernel:
        d = decode_code(int(code))
        return cls(kind=KINDS[d.pop("kind")], **d)

    @property
    def code(self) -> int:
        d = {f: getattr(self, f) for f in FIELDS[1:]}
        d["kind"] = KINDS.index(self.kind)
        return int(encode_code(d))

    @property
    def out_hw(self) -> int:
        """Output side; transformer stride-2 blocks round up like the network."""
        if self.stride == 2:
            return (self.hw + 1) // 2 if self.kind in ("transds", "firstconv") else self.hw // 2
        return self.hw

    @property
    def key(self) -> str:
        """The phone tables' key for this kernel."""
        k = self
        if k.kind == "firstconv":
            return f"firstconv_{k.hw}_3_{k.cout}_2_3"
        if k.kind == "mbconv":
            se = "se" if k.se else "nose"
            return f"conv_{k.hw}_{k.cin}_{k.cout}_{k.expand}_{k.stride}_hard_swish_{k.kernel}_{se}"
        if k.kind == "transds":
            return f"transds_{k.hw}_{k.cin}_{k.cout}_{k.stride}_{k.expand}"
        if k.kind == "attn":
            return f"transattn_{k.hw}_{k.cout}_hard_swish_{k.v}_ln"
        if k.kind == "ffn":
            return f"transffn_{k.hw}_{k.cout}_{k.mlp}_hard_swish_ln"
        return f"mbpool_{k.hw}_{k.cin}_{HEAD_WIDTH}_{HEAD_EXPAND}_hard_swish"

    def features(self) -> dict[str, float]:
        return kernel_features(np.array([self.code]))[self.kind][0]


def parse_key(key: str) -> Kernel:
    """A phone-table key back into a Kernel (raises ValueError on an unknown key)."""
    p = key.split("_")
    try:
        if p[0] == "firstconv":
            return Kernel("firstconv", hw=int(p[1]), cin=3, cout=int(p[3]), kernel=STEM_KERNEL,
                          stride=STEM_STRIDE)
        if p[0] == "conv":
            return Kernel("mbconv", hw=int(p[1]), cin=int(p[2]), cout=int(p[3]),
                          expand=int(p[4]), stride=int(p[5]), kernel=int(p[8]),
                          se=int(p[9] == "se"))
        if p[0] == "transds":
            return Kernel("transds", hw=int(p[1]), cin=int(p[2]), cout=int(p[3]),
                          expand=int(p[5]), kernel=REDUCTION_KERNEL, stride=int(p[4]), se=1)
        if p[0] == "transattn":
            return Kernel("attn", hw=int(p[1]), cin=int(p[2]), cout=int(p[2]), v=int(p[5]))
        if p[0] == "transffn":
            return Kernel("ffn", hw=int(p[1]), cin=int(p[2]), cout=int(p[2]), mlp=int(p[3]))
        if p[0] == "mbpool":
            return Kernel("head", hw=int(p[1]), cin=int(p[2]), cout=int(p[3]), expand=HEAD_EXPAND)
    except (IndexError, ValueError) as e:
        raise ValueError(f"malformed kernel key {key!r}") from e
    raise ValueError(f"unknown kernel key {key!r} (kinds: firstconv, conv, transds, transattn, "
                     "transffn, mbpool)")


def kernels(arch: ArchConfig, convention: str = "table") -> list[Kernel]:
    codes, active = kernel_codes(SPACE.encode(arch)[None], convention)
    return [Kernel.from_code(c) for c, a in zip(codes[0], active[0]) if a]


# -- features ------------------------------------------------------------------------------

FEATURES = {
    "firstconv": ("hw", "cout", "macs"),
    "mbconv": ("hw", "cin", "cout", "expand", "kernel", "stride", "se", "macs", "params",
               "bytes"),
    "transds": ("hw", "cin", "cout", "stride", "macs", "params", "bytes"),
    "attn": ("hw", "C", "v", "macs", "params", "bytes"),
    "ffn": ("hw", "C", "mlp", "macs", "params", "bytes"),
    "head": ("hw", "C", "macs", "params", "bytes"),
}
# +1: latency must not fall when this feature grows (monotone constraints of the GBDT)
MONOTONE = {"hw": 1, "cin": 1, "cout": 1, "expand": 1, "kernel": 1, "C": 1, "v": 1, "mlp": 1,
            "macs": 1, "params": 1, "bytes": 1, "se": 1, "stride": 0}


def kernel_features(codes: np.ndarray) -> dict[str, list[dict]]:
    """Features per kind (as dicts) for an array of kernel codes."""
    out: dict[str, list[dict]] = {k: [] for k in KINDS}
    for c in np.asarray(codes).ravel():
        k = Kernel.from_code(int(c))
        out[k.kind].append(_features(k))
    return out


def feature_matrix(kind: str, codes: np.ndarray) -> np.ndarray:
    """[len(codes), len(FEATURES[kind])] float matrix, vectorized."""
    d = {f: np.zeros(len(codes), dtype=np.int64) for f in FIELDS}
    rest = np.asarray(codes, dtype=np.int64).copy()
    for f, r in reversed(list(zip(FIELDS, RADIX))):
        d[f] = rest % r
        rest //= r
    return np.stack([_feature_value(kind, name, d) for name in FEATURES[kind]], axis=1).astype(
        np.float64)


def _feature_value(kind: str, name: str, d: dict) -> np.ndarray:
    hw, cin, cout = d["hw"].astype(np.float64), d["cin"].astype(np.float64), d["cout"]
    cout = cout.astype(np.float64)
    if name in ("hw", "cin", "cout", "expand", "kernel", "stride", "se", "v", "mlp"):
        return d[name].astype(np.float64)
    if name == "C":
        return cout
    o = np.where(d["stride"] == 2, np.floor(hw / 2), hw)
    if kind == "firstconv":
        o = np.floor(hw / 2)
        macs, params, bytes_ = o * o * 27 * cout, 27 * cout, 3 * hw * hw + o * o * cout
    elif kind in ("mbconv", "transds"):
        hid = cin * d["expand"]
        k2 = d["kernel"].astype(np.float64) ** 2
        expand = np.where(d["expand"] > 1, hw * hw * cin * hid, 0)
        se = d["se"] * 2 * hid * np.maximum(hid // SE_REDUCTION, 1)
        macs = expand + o * o * hid * k2 + o * o * hid * cout + se
        params = np.where(d["expand"] > 1, cin * hid, 0) + hid * k2 + hid * cout + se
        bytes_ = hw * hw * cin + 2 * hw * hw * hid + o * o * cout + params
    elif kind == "attn":
        n = hw * hw
        heads = cout / 16
        vd = 16 * d["v"] * heads
        macs = n * cout * (2 * cout + vd) + n * n * heads * 16 * (1 + d["v"]) + n * vd * cout + (
            9 * n * vd)
        params = cout * (2 * cout + vd) + vd * cout + 9 * vd
        bytes_ = 2 * n * cout + n * n * heads + n * vd + params
    elif kind == "ffn":
        n = hw * hw
        macs = 2 * n * cout * cout * d["mlp"]
        params = 2 * cout * cout * d["mlp"]
        bytes_ = 2 * n * cout + n * cout * d["mlp"] + params
    else:  # head
        hid = 6 * cin
        macs = hw * hw * cin * hid + hid * HEAD_WIDTH
        params = cin * hid + hid * HEAD_WIDTH
        bytes_ = hw * hw * (cin + hid) + params
    return {"macs": macs, "params": params, "bytes": bytes_}[name]


def _features(k: Kernel) -> dict:
    m = feature_matrix(k.kind, np.array([k.code]))[0]
    return dict(zip(FEATURES[k.kind], m.tolist()))
