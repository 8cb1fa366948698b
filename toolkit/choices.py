"""Table 1 of the paper as plain data: the stages' choices, the fixed blocks' facts, the
encoding's columns and the feature-map geometry. Imports nothing of evit, so ``space`` (the
config type, sampling) and ``flops`` (the cost formulas) both build on it without importing
each other."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, Union

__all__ = ["STAGE_NAMES", "HEAD_DIM", "HEAD_WIDTH", "HEAD_EXPAND", "STEM_KERNEL", "STEM_STRIDE",
           "REDUCTION_EXPAND", "REDUCTION_KERNEL", "SE_REDUCTION", "ConvStageSpace",
           "TransformerStageSpace", "StageSpace", "RESOLUTIONS", "STEM_WIDTHS", "STAGE_SPACES",
           "COLUMNS", "stage_grids", "ArchLike"]

STAGE_NAMES = ("mbv2_1", "mbv2", "mbv3", "t1", "t2", "t3", "t4")
HEAD_DIM = 16  # transformer head width; heads = C // 16
HEAD_WIDTH = 1984  # MBPool head hidden width
HEAD_EXPAND = 6  # MBPool per-token expansion C -> 6C
STEM_KERNEL, STEM_STRIDE = 3, 2  # the conv stem: 3x3, stride 2
REDUCTION_EXPAND, REDUCTION_KERNEL = 6, 3  # the fixed MBv3 block opening each transformer stage
SE_REDUCTION = 4  # squeeze-excitation hidden width = channels // 4


# --------------------------------------------------------------------------- stage spaces


@dataclass(frozen=True)
class ConvStageSpace:
    """Choices of one MBConv stage."""

    name: str
    depths: tuple[int, ...]
    widths: tuple[int, ...]
    kernels: tuple[int, ...]
    expands: tuple[int, ...]
    stride: int
    se: bool
    kind: str = field(default="conv", init=False)

    @property
    def dims(self) -> tuple[str, ...]:
        return ("depth", "width", "kernel", "expand")

    def choices(self, dim: str) -> tuple[int, ...]:
        return {"depth": self.depths, "width": self.widths, "kernel": self.kernels,
                "expand": self.expands}[dim]


@dataclass(frozen=True)
class TransformerStageSpace:
    """Choices of one transformer stage (it opens with a fixed MBv3 downsample block)."""

    name: str
    depths: tuple[int, ...]
    widths: tuple[int, ...]
    mlp_ratios: tuple[int, ...]
    v_scales: tuple[int, ...]
    stride: int
    kind: str = field(default="transformer", init=False)

    @property
    def dims(self) -> tuple[str, ...]:
        return ("depth", "width", "mlp_ratio", "v_scale")

    def choices(self, dim: str) -> tuple[int, ...]:
        return {"depth": self.depths, "width": self.widths, "mlp_ratio": self.mlp_ratios,
                "v_scale": self.v_scales}[dim]


StageSpace = Union[ConvStageSpace, TransformerStageSpace]

RESOLUTIONS = (128, 160, 176, 192, 224, 256)
STEM_WIDTHS = (16, 24)
_MLP = (2, 3, 4, 5)
_V = (2, 3, 4)
STAGE_SPACES: tuple[StageSpace, ...] = (
    ConvStageSpace("mbv2_1", (1, 2), (16, 24), (3, 5), (1,), stride=1, se=False),
    ConvStageSpace("mbv2", (2, 3, 4, 5), (16, 24, 32), (3, 5), (3, 4, 5, 6), stride=2, se=False),
    ConvStageSpace("mbv3", (2, 3, 4, 5, 6), (16, 24, 32, 40, 48), (3, 5), (3, 4, 5, 6), stride=2,
                   se=True),
    TransformerStageSpace("t1", (1, 2, 3, 4, 5), tuple(range(48, 97, 16)), _MLP, _V, stride=2),
    TransformerStageSpace("t2", (1, 2, 3, 4, 5, 6), tuple(range(80, 161, 16)), _MLP, _V, stride=1),
    TransformerStageSpace("t3", (1, 2, 3, 4, 5, 6), tuple(range(144, 289, 16)), _MLP, _V,
                          stride=2),
    TransformerStageSpace("t4", (1, 2, 3, 4, 5, 6), tuple(range(160, 321, 16)), _MLP, _V,
                          stride=2),
)
_STAGE_SPACE = {s.name: s for s in STAGE_SPACES}


# Column layout of the integer encoding (one row per subnet, actual values, not indices).
_COLUMNS: list[tuple[str, int | None, str]] = [("resolution", None, ""), ("stem_width", None, "")]
for _i, _sp in enumerate(STAGE_SPACES):
    for _dim in _sp.dims:
        if not (_dim == "expand" and len(getattr(_sp, "expands", (0, 0))) == 1):
            _COLUMNS.append((f"{_sp.name}.{_dim}", _i, _dim))
COLUMNS = tuple(c[0] for c in _COLUMNS)


def _ceil_half(r: Any) -> Any:
    return (r + 1) // 2


def stage_grids(resolution: Any) -> dict[str, Any]:
    """Feature-map side per stage (``resolution`` an int or an array): the stem and the conv
    stages floor-halve at stride 2, transformer stages ceil-halve (their reduction block is a
    3x3 stride-2 conv with padding 1: 7x7 gives 4x4)."""
    side = resolution // STEM_STRIDE
    out = {"first_conv": side}
    for sp in STAGE_SPACES:
        if sp.stride == 2:
            side = side // 2 if sp.kind == "conv" else _ceil_half(side)
        out[sp.name] = side
    return out


class ArchLike(Protocol):
    """What the cost formulas read of a subnet config (``toolkit.space.ArchConfig``)."""

    resolution: int
    stem_width: int
    stages: Sequence[Any]
