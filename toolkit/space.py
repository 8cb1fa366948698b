"""The ElasticViT search space (Table 1 of the paper) as data, and the subnet config type.

An :class:`ArchConfig` picks one value per dimension of each stage (the release samples one
kernel/expansion per conv stage and one mlp_ratio/v_scale per transformer stage, and so do we):

=========  ======  =====================  ======================  ==============  ======
stage      depth   width                  kernel / v_scale        expand / mlp    stride
=========  ======  =====================  ======================  ==============  ======
first conv 1       {16, 24}               3                       -               2
mbv2_1     1-2     {16, 24}               {3, 5}                  1               1
mbv2       2-5     16-32 step 8           {3, 5}                  {3, 4, 5, 6}    2
mbv3 (SE)  2-6     16-48 step 8           {3, 5}                  {3, 4, 5, 6}    2
t1         1-5     48-96 step 16          v {2, 3, 4}             mlp {2..5}      2
t2         1-6     80-160 step 16         v {2, 3, 4}             mlp {2..5}      1
t3         1-6     144-288 step 16        v {2, 3, 4}             mlp {2..5}      2
t4         1-6     160-320 step 16        v {2, 3, 4}             mlp {2..5}      2
head       MBPool to 1984 (6x expansion)
resolution {128, 160, 176, 192, 224, 256}
=========  ======  =====================  ======================  ==============  ======

Every combination is a valid network (widths need not grow from stage to stage: channel changes
go through shortcut convs and the downsample block), so the space has exactly
``prod(choices) = 1.09e17`` members, the paper's figure.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

import numpy as np

from toolkit.choices import (
    _COLUMNS,
    COLUMNS,
    HEAD_DIM,
    HEAD_EXPAND,
    HEAD_WIDTH,
    REDUCTION_EXPAND,
    REDUCTION_KERNEL,
    RESOLUTIONS,
    SE_REDUCTION,
    STAGE_NAMES,
    STAGE_SPACES,
    STEM_KERNEL,
    STEM_STRIDE,
    STEM_WIDTHS,
    ConvStageSpace,
    StageSpace,
    TransformerStageSpace,
    stage_grids,
)

__all__ = [
    "ArchConfig",
    "ConvStage",
    "TransformerStage",
    "ConvStageSpace",
    "TransformerStageSpace",
    "SearchSpace",
    "SPACE",
    "ArchError",
    "STAGE_NAMES",
    "HEAD_DIM",
    "HEAD_WIDTH",
    "HEAD_EXPAND",
    "STEM_KERNEL",
    "STEM_STRIDE",
    "REDUCTION_EXPAND",
    "REDUCTION_KERNEL",
    "SE_REDUCTION",
    "STAGE_SPACES",
    "StageSpace",
    "RESOLUTIONS",
    "STEM_WIDTHS",
    "COLUMNS",
    "stage_grids",
]

class ArchError(ValueError):
    """An architecture config that is not a member of the search space."""


def _fmt(values: Iterable[int]) -> str:
    return ", ".join(str(v) for v in values)




# --------------------------------------------------------------------------- configs


def _check(field_name: str, value: Any, allowed: Sequence[int]) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value not in allowed:
        raise ArchError(f"{field_name} = {value!r} is not allowed; choose one of {_fmt(allowed)}")


@dataclass(frozen=True)
class ConvStage:
    """One MBConv stage of a subnet: ``depth`` blocks of ``width`` channels."""

    depth: int
    width: int
    kernel: int
    expand: int = 1


@dataclass(frozen=True)
class TransformerStage:
    """One transformer stage of a subnet: ``depth`` (attention, FFN) pairs of ``width``."""

    depth: int
    width: int
    mlp_ratio: int
    v_scale: int

    @property
    def heads(self) -> int:
        return self.width // HEAD_DIM


Stage = Union[ConvStage, TransformerStage]


@dataclass(frozen=True)
class ArchConfig:
    """A member of the search space. Frozen, hashable, validated, JSON round-trippable.

    The JSON shape is the one of ``reference/named_models.json``::

        {"resolution": 224, "stem_width": 16,
         "stages": [{"name": "mbv2_1", "depth": 1, "width": 16, "kernel": 3},
                    {"name": "mbv2", "depth": 3, "width": 24, "kernel": 3, "expand": 3}, ...,
                    {"name": "t4", "depth": 2, "width": 256, "mlp_ratio": 4, "v_scale": 2}]}
    """

    resolution: int
    stem_width: int
    stages: tuple[Stage, ...]

    def __post_init__(self) -> None:
        if not isinstance(self.stages, tuple):
            object.__setattr__(self, "stages", tuple(self.stages))
        _check("resolution", self.resolution, RESOLUTIONS)
        _check("stem_width", self.stem_width, STEM_WIDTHS)
        if len(self.stages) != len(STAGE_SPACES):
            raise ArchError(f"stages has {len(self.stages)} entries; it needs exactly "
                            f"{len(STAGE_SPACES)}: {', '.join(STAGE_NAMES)}")
        for i, (st, sp) in enumerate(zip(self.stages, STAGE_SPACES)):
            want = ConvStage if sp.kind == "conv" else TransformerStage
            if not isinstance(st, want):
                raise ArchError(f"stages[{i}] ({sp.name}) must be a {want.__name__}, "
                                f"got {type(st).__name__}")
            for dim in sp.dims:
                _check(f"stages[{i}] ({sp.name}).{dim}", getattr(st, dim), sp.choices(dim))

    # -- access
    @property
    def conv_stages(self) -> tuple[ConvStage, ...]:
        return self.stages[:3]  # type: ignore[return-value]

    @property
    def transformer_stages(self) -> tuple[TransformerStage, ...]:
        return self.stages[3:]  # type: ignore[return-value]

    def stage(self, name: str) -> Stage:
        return self.stages[STAGE_NAMES.index(name)]

    def replace(self, **changes: Any) -> ArchConfig:
        """A copy with fields or whole stages replaced: ``replace(t4=TransformerStage(...))``."""
        stages = list(self.stages)
        for name in list(changes):
            if name in STAGE_NAMES:
                stages[STAGE_NAMES.index(name)] = changes.pop(name)
        return ArchConfig(changes.pop("resolution", self.resolution),
                          changes.pop("stem_width", self.stem_width), tuple(stages), **changes)

    # -- JSON
    def to_dict(self) -> dict[str, Any]:
        out: list[dict[str, Any]] = []
        for sp, st in zip(STAGE_SPACES, self.stages):
            d: dict[str, Any] = {"name": sp.name}
            for dim in sp.dims:
                if not (dim == "expand" and len(sp.expands) == 1):
                    d[dim] = int(getattr(st, dim))
            out.append(d)
        return {"resolution": int(self.resolution), "stem_width": int(self.stem_width),
                "stages": out}

    def to_json(self, **kw: Any) -> str:
        return json.dumps(self.to_dict(), **kw)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ArchConfig:
        """Parse the named_models.json shape; extra top-level keys (MFLOPs, notes) are ignored."""
        if not isinstance(d, dict):
            raise ArchError(f"an arch config must be a JSON object, got {type(d).__name__}")
        for key in ("resolution", "stem_width", "stages"):
            if key not in d:
                raise ArchError(f"arch config is missing '{key}'; expected keys resolution, "
                                "stem_width and stages (see `evit models --json` for examples)")
        stages_in = d["stages"]
        if not isinstance(stages_in, list) or len(stages_in) != len(STAGE_SPACES):
            raise ArchError(f"'stages' must be a list of {len(STAGE_SPACES)} stage objects "
                            f"({', '.join(STAGE_NAMES)})")
        stages: list[Stage] = []
        for i, (sp, sd) in enumerate(zip(STAGE_SPACES, stages_in)):
            if not isinstance(sd, dict):
                raise ArchError(f"stages[{i}] must be an object, got {type(sd).__name__}")
            if sd.get("name", sp.name) != sp.name:
                raise ArchError(f"stages[{i}].name = {sd['name']!r}; stage {i} must be "
                                f"'{sp.name}' (order: {', '.join(STAGE_NAMES)})")
            extra = set(sd) - set(sp.dims) - {"name"}
            if extra:
                raise ArchError(f"stages[{i}] ({sp.name}) has unknown keys {sorted(extra)}; "
                                f"allowed: {', '.join(sp.dims)}")
            vals = {}
            for dim in sp.dims:
                if dim not in sd:
                    if dim == "expand" and len(sp.expands) == 1:
                        vals[dim] = sp.expands[0]
                        continue
                    raise ArchError(f"stages[{i}] ({sp.name}) is missing '{dim}'")
                vals[dim] = sd[dim]
            stages.append(ConvStage(**vals) if sp.kind == "conv" else TransformerStage(**vals))
        return cls(d["resolution"], d["stem_width"], tuple(stages))

    @classmethod
    def from_json(cls, text: str) -> ArchConfig:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise ArchError(f"arch config is not valid JSON: {e}") from None
        return cls.from_dict(data)

    @classmethod
    def load(cls, path: str | Path) -> ArchConfig:
        """Read an arch JSON file (either the bare config or an object with an 'arch' key)."""
        p = Path(path)
        if not p.is_file():
            raise ArchError(f"arch file {str(p)!r} does not exist")
        try:
            text = p.read_text()
            data = json.loads(text)
            return cls.from_dict(data.get("arch", data) if isinstance(data, dict) else data)
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ArchError(f"arch file {str(p)!r} cannot be read as JSON ({e}); give the JSON "
                            "evit-search or `evit arch` writes") from None
        except ArchError as e:
            raise ArchError(f"arch file {str(p)!r}: {e}") from None

    def save(self, path: str | Path) -> None:
        from toolkit.fileio import atomic_write

        atomic_write(path, self.to_json(indent=1) + "\n")

    def short(self) -> str:
        """A compact one-line description, e.g. for logs and file names."""
        parts = [f"r{self.resolution}", f"s{self.stem_width}"]
        for sp, st in zip(STAGE_SPACES, self.stages):
            if isinstance(st, ConvStage):
                parts.append(f"{sp.name}:{st.depth}x{st.width}k{st.kernel}e{st.expand}")
            else:
                parts.append(f"{sp.name}:{st.depth}x{st.width}m{st.mlp_ratio}v{st.v_scale}")
        return "_".join(parts)


# --------------------------------------------------------------------------- the space



def _column_choices() -> list[tuple[int, ...]]:
    out: list[tuple[int, ...]] = []
    for name, i, dim in _COLUMNS:
        if i is None:
            out.append(RESOLUTIONS if name == "resolution" else STEM_WIDTHS)
        else:
            out.append(STAGE_SPACES[i].choices(dim))
    return out


RngLike = Union[np.random.Generator, int, None]

# Sub-space rules a space may keep (``SearchSpace(rules=...)``): "release" = the channel rules
# of the release's sampler (toolkit/release/arch.py; `arch_sampling_engine` in its
# models/model.py): conv stem as wide as the first conv (``equal_channels=True``), no stage
# narrower than the one before it.
RULES = ("none", "release")
_WIDTH_COLS = ["stem_width"] + [f"{sp.name}.width" for sp in STAGE_SPACES]
_WIDTH_IDX = [COLUMNS.index(c) for c in _WIDTH_COLS]
_DEPTH_IDX = [j for j, c in enumerate(COLUMNS) if c.endswith(".depth")]
# the release's crossover groups: each kind of choice comes whole from one parent
_GROUPS = ("resolution", "width", "depth", "kernel", "expand", "mlp_ratio", "v_scale")
_GROUP_OF = np.array([_GROUPS.index("width" if c == "stem_width" else c.split(".")[-1])
                      for c in COLUMNS])


def _release_mask(enc: np.ndarray) -> np.ndarray:
    w = enc[:, _WIDTH_IDX]
    return (w[:, 0] == w[:, 1]) & np.all(w[:, 1:] >= w[:, :-1], axis=1)


class SearchSpace:
    """Table 1 as data: sampling, mutation, crossover, encoding.

    Randomness comes from ``self.rng`` (seeded by ``seed``) unless a call passes its own ``rng``.
    ``rules="release"`` keeps every draw, mutation and crossover inside the subnets the
    release's sampler could have trained. ``floors`` ({column: minimum value}, columns as in
    :attr:`columns`) keeps each listed dimension at or above its minimum: a hierarchical
    sub-space (``toolkit/train/subspace.py``). Draws are uniform over the allowed subnets.
    """

    resolutions = RESOLUTIONS
    stem_widths = STEM_WIDTHS
    stages = STAGE_SPACES
    columns = COLUMNS

    def __init__(self, seed: int | None = 0, rules: str = "none",
                 floors: dict[str, int] | None = None):
        if rules not in RULES:
            raise ArchError(f"rules = {rules!r} is not allowed; choose one of {', '.join(RULES)}")
        self.rules = rules
        self.floors = {str(k): int(v) for k, v in (floors or {}).items()}
        self.rng = np.random.default_rng(seed)
        full = _column_choices()
        self._floor_row = np.array([full[j][0] for j in range(len(COLUMNS))], dtype=np.int64)
        for name, v in self.floors.items():
            if name not in COLUMNS:
                raise ArchError(f"floors: {name!r} is not a column; choose from "
                                f"{', '.join(COLUMNS)}")
            j = COLUMNS.index(name)
            if v > full[j][-1]:
                raise ArchError(f"floors: {name} = {v} is above every choice "
                                f"({_fmt(full[j])})")
            self._floor_row[j] = v
        self.choices = [tuple(c for c in full[j] if c >= self._floor_row[j])
                        for j in range(len(COLUMNS))]
        self._choice_arrays = [np.asarray(c, dtype=np.int64) for c in self.choices]
        # the allowed width columns as one table (uniform rows = uniform over the rule's set)
        self._widths: np.ndarray | None = None
        if rules == "release":
            grids = np.meshgrid(*[self._choice_arrays[j] for j in _WIDTH_IDX], indexing="ij")
            table = np.stack([g.ravel() for g in grids], axis=1)
            self._widths = table[(table[:, 0] == table[:, 1])
                                 & np.all(table[:, 1:] >= table[:, :-1], axis=1)]
            if not len(self._widths):
                raise ArchError(f"floors {self.floors} leave no widths that keep the release's "
                                "channel rules (each stage at least as wide as the one before)")
        # accepted-but-unused draws per FLOPs window, with the generator that drew them
        self._window_buffers: dict[tuple[float, float, int], tuple[np.random.Generator, list]] = {}
        self._strata: dict[tuple, tuple[list[int], np.ndarray]] = {}

    def _rng(self, rng: RngLike) -> np.random.Generator:
        if rng is None:
            return self.rng
        if isinstance(rng, np.random.Generator):
            return rng
        return np.random.default_rng(rng)

    # -- size and extremes
    def size(self) -> int:
        """Number of distinct allowed subnets (the full space: the product of all per-stage
        choice counts, 1.09e17)."""
        if self._widths is None:
            return math.prod(len(c) for c in self.choices)
        return len(self._widths) * math.prod(len(c) for j, c in enumerate(self.choices)
                                             if j not in _WIDTH_IDX)

    def min(self) -> ArchConfig:
        row = np.array([c[0] for c in self.choices])
        if self._widths is not None:  # the column-wise minimum of allowed widths is allowed
            row[_WIDTH_IDX] = self._widths.min(axis=0)
        return self.decode(row)

    def max(self) -> ArchConfig:
        row = np.array([c[-1] for c in self.choices])
        if self._widths is not None:
            row[_WIDTH_IDX] = self._widths.max(axis=0)
        return self.decode(row)

    def mflops_range(self, num_classes: int = 1000) -> tuple[float, float]:
        """MFLOPs of the smallest and the largest allowed subnet (the full space: 37.4 and
        3191.5, the paper's figures)."""
        from toolkit.flops import flops_encoded

        lo, hi = flops_encoded(self.encode_many([self.min(), self.max()]), num_classes)
        return float(lo), float(hi)

    # -- encoding
    def encode(self, arch: ArchConfig) -> np.ndarray:
        """Integer vector (actual values) in the order of :attr:`columns`."""
        row = [arch.resolution, arch.stem_width]
        for _name, i, dim in _COLUMNS[2:]:
            row.append(getattr(arch.stages[i], dim))
        return np.asarray(row, dtype=np.int64)

    def encode_many(self, archs: Sequence[ArchConfig]) -> np.ndarray:
        if not archs:
            return np.zeros((0, len(COLUMNS)), dtype=np.int64)
        return np.stack([self.encode(a) for a in archs])

    def decode(self, row: Sequence[int] | np.ndarray) -> ArchConfig:
        row = [int(v) for v in row]
        if len(row) != len(COLUMNS):
            raise ArchError(f"an encoded arch has {len(COLUMNS)} values ({', '.join(COLUMNS)}), "
                            f"got {len(row)}")
        vals: list[dict[str, int]] = [dict() for _ in STAGE_SPACES]
        for v, (_name, i, dim) in zip(row[2:], _COLUMNS[2:]):
            vals[i][dim] = v
        stages: list[Stage] = []
        for sp, v in zip(STAGE_SPACES, vals):
            stages.append(ConvStage(**v) if sp.kind == "conv" else TransformerStage(**v))
        return ArchConfig(row[0], row[1], tuple(stages))

    # -- uniform sampling
    def allowed_encoded(self, enc: np.ndarray) -> np.ndarray:
        """Boolean mask: which encoded subnets keep this space's rules."""
        enc = np.atleast_2d(enc)
        ok = np.all(enc >= self._floor_row, axis=1)
        if self.rules == "release":
            ok &= _release_mask(enc)
        return ok

    def allows(self, arch: ArchConfig) -> bool:
        return bool(self.allowed_encoded(self.encode(arch)[None])[0])

    def sample_encoded(self, n: int, rng: RngLike = None) -> np.ndarray:
        """``n`` uniform samples as an (n, len(columns)) int64 array (fast, vectorized):
        each free column uniform over its choices, the widths a uniform row of the rule's
        width table, so the draw is uniform over the allowed subnets without rejection."""
        g = self._rng(rng)
        enc = np.stack([c[g.integers(0, len(c), size=n)] for c in self._choice_arrays], axis=1)
        if self._widths is not None:
            enc[:, _WIDTH_IDX] = self._widths[g.integers(0, len(self._widths), size=n)]
        return enc

    def sample(self, rng: RngLike = None) -> ArchConfig:
        """One subnet, each dimension of each stage drawn uniformly."""
        return self.decode(self.sample_encoded(1, rng)[0])

    def sample_at(self, lo: float, hi: float, rng: RngLike = None, max_draws: int = 2_000_000,
                  num_classes: int = 1000) -> ArchConfig:
        """A subnet drawn uniformly among those with MFLOPs in ``[lo, hi]``.

        Vectorized rejection sampling: batches of uniform subnets are scored with the exact
        analytic formula and the accepted ones buffered per window, so repeated calls for the
        same level cost microseconds. Raises :class:`ArchError` when the window is outside the
        space or nothing is found within ``max_draws`` draws.
        """
        from toolkit.flops import flops_encoded  # local import: flops depends on this module

        if not lo <= hi:
            raise ArchError(f"sample_at needs lo <= hi, got lo={lo}, hi={hi}")
        g = self._rng(rng)
        key = (float(lo), float(hi), num_classes)
        owner, buf = self._window_buffers.get(key, (None, []))
        if owner is not g:  # draws from another generator must not leak into this stream
            buf = []
            self._window_buffers[key] = (g, buf)
        if buf:
            return self.decode(buf.pop())
        fmin, fmax = self.mflops_range(num_classes)
        if hi < fmin or lo > fmax:
            raise ArchError(f"no subnet has MFLOPs in [{lo}, {hi}]: the space spans "
                            f"[{fmin:.2f}, {fmax:.2f}] MFLOPs")
        strata = self._window_strata(lo, hi, num_classes)

        def draw(n: int, g: np.random.Generator) -> np.ndarray:
            enc = self.sample_encoded(n, g)
            if strata is not None:  # a stratum uniform among those that can hit the window
                cols, rows = strata
                enc[:, cols] = rows[g.integers(0, len(rows), size=n)]
            return enc

        hit = self.sample_window(lambda enc: flops_encoded(enc, num_classes), lo, hi, 1, g,
                                 max_draws, batch=8192, draw=draw, truncate=False)
        if not len(hit):
            raise ArchError(f"no subnet with MFLOPs in [{lo}, {hi}] found in {max_draws} "
                            "uniform draws; widen the window")
        buf.extend(hit[::-1])  # the rest of the batch serves the next calls for this window
        return self.decode(buf.pop())

    def sample_window(self, cost: Callable[[np.ndarray], np.ndarray], lo: float, hi: float,
                      n: int, rng: RngLike = None, max_draws: int = 2_000_000,
                      batch: int = 4096, distinct: bool = False,
                      draw: Callable[[int, np.random.Generator], np.ndarray] | None = None,
                      truncate: bool = True) -> np.ndarray:
        """Encoded subnets drawn uniformly among the allowed ones whose ``cost`` (vectorized
        over encoded rows: MFLOPs, a latency predictor, ...) lies in ``[lo, hi]``: the one
        rejection sampler every "a subnet in a cost window" goes through. Batches of
        ``batch`` uniform draws (or ``draw(batch, rng)``) until ``n`` hits or ``max_draws``
        draws; returns up to ``n`` rows in draw order (fewer when the window is that rare;
        ``truncate=False``: every hit of the batches drawn). ``distinct``: each subnet once."""
        g = self._rng(rng)
        draw = draw or self.sample_encoded
        parts, seen, have, drawn = [], set(), 0, 0
        while have < n and drawn < max_draws:
            enc = draw(batch, g)
            drawn += batch
            c = np.asarray(cost(enc))
            hit = enc[(c >= lo) & (c <= hi)]
            if distinct:
                keep = np.zeros(len(hit), dtype=bool)
                for i, row in enumerate(hit):
                    key = row.tobytes()
                    keep[i] = key not in seen
                    seen.add(key)
                hit = hit[keep]
            parts.append(hit)
            have += len(hit)
        out = (np.concatenate(parts) if parts
               else np.zeros((0, len(COLUMNS)), dtype=np.int64))
        return out[:n] if truncate else out

    def _window_strata(self, lo: float, hi: float, num_classes: int
                       ) -> tuple[list[int], np.ndarray] | None:
        """Columns and rows (resolution, widths[, t3/t4 depths]) whose subnets can have
        MFLOPs in [lo, hi].

        FLOPs grow with every dimension, so a stratum (some columns fixed) spans the FLOPs of
        its smallest and largest completion; strata that miss the window are dropped. Every
        stratum has the same number of completions, so drawing a stratum uniformly, then the
        rest, then rejecting by FLOPs is still exactly uniform over space ∩ window. Only for
        spaces with a width table (rules="release"); cached per window."""
        from toolkit.flops import flops_encoded

        if self._widths is None:
            return None
        key = ("strata", float(lo), float(hi), num_classes)
        if key in self._strata:
            return self._strata[key]
        lo_row = np.array([c[0] for c in self.choices])
        hi_row = np.array([c[-1] for c in self.choices])

        def prune(cols: list[int], rows: np.ndarray) -> np.ndarray:
            bounds = []
            for base in (lo_row, hi_row):
                enc = np.repeat(base[None], len(rows), axis=0)
                enc[:, cols] = rows
                bounds.append(flops_encoded(enc, num_classes))
            keep = (bounds[0] <= hi) & (bounds[1] >= lo)
            return rows[keep] if keep.any() else rows

        res = self._choice_arrays[0]
        cols = [0] + _WIDTH_IDX
        rows = prune(cols, np.concatenate([np.column_stack([np.full(len(self._widths), r),
                                                            self._widths]) for r in res]))
        # finer strata (the two costliest depths) where the table stays small
        extra = [COLUMNS.index("t3.depth"), COLUMNS.index("t4.depth")]
        grid = np.stack(np.meshgrid(*[self._choice_arrays[j] for j in extra],
                                    indexing="ij"), -1).reshape(-1, len(extra))
        if len(rows) * len(grid) <= 600_000:
            fine = np.concatenate([np.repeat(rows, len(grid), axis=0),
                                   np.tile(grid, (len(rows), 1))], axis=1)
            cols, rows = cols + extra, prune(cols + extra, fine)
        self._strata[key] = (cols, rows.astype(np.int16))  # values ≤ 320: a quarter the memory
        return self._strata[key]

    # -- evolution operators
    def mutate(self, arch: ArchConfig, prob: float = 0.2, rng: RngLike = None,
               tries: int = 100, uniform_prob: float = 1.0,
               depth_prob: float | None = None) -> ArchConfig:
        """Re-draw each dimension with probability ``prob``; always a valid config (within
        the space's rules: re-drawn up to ``tries`` times, else ``arch`` itself).

        A re-drawn value is uniform over its choices with probability ``uniform_prob``, else
        the smallest allowed choice (the release's ``mutate_dims`` bias toward small
        subnets: ``uniform_prob=0.45``). ``depth_prob`` (the release's 0.4): re-draw every
        stage's depth together with that probability instead of each with ``prob``.
        Resolution is always re-drawn uniformly (the release does not bias it). Under the
        release's channel rules each re-drawn width keeps to the widths at least as wide
        as the stage before (the release re-draws until it does), and the conv stem and
        the first conv stay equal."""
        g = self._rng(rng)
        base = self.encode(arch)
        for _ in range(tries):
            row = base.copy()
            flip = g.random(len(row)) < prob
            if depth_prob is not None:
                flip[_DEPTH_IDX] = g.random() < depth_prob
            for j in np.flatnonzero(flip):
                choices = self._choice_arrays[j]
                if self._widths is not None and j in _WIDTH_IDX[2:]:
                    choices = choices[choices >= row[_WIDTH_IDX[_WIDTH_IDX.index(j) - 1]]]
                    if not len(choices):
                        break
                if j == 0 or uniform_prob >= 1 or g.random() < uniform_prob:
                    row[j] = choices[g.integers(len(choices))]
                else:
                    row[j] = choices[0]
                if self._widths is not None and j in _WIDTH_IDX[:2]:  # stem = first conv
                    row[_WIDTH_IDX[:2]] = row[j]
            if self.allowed_encoded(row)[0]:
                return self.decode(row)
        return arch

    def crossover(self, a: ArchConfig, b: ArchConfig, rng: RngLike = None,
                  tries: int = 100, groups: bool = False) -> ArchConfig:
        """Uniform crossover: each dimension comes from ``a`` or ``b`` with equal chance;
        ``groups=True`` (the release's ``get_crossover``): each kind of choice (resolution,
        all widths, all depths, kernels, expansions, MLP ratios, V scales) comes whole from
        one parent. Within the space's rules: re-drawn up to ``tries`` times, else ``a``."""
        g = self._rng(rng)
        ra, rb = self.encode(a), self.encode(b)
        for _ in range(tries):
            if groups:
                pick = (g.random(len(_GROUPS)) < 0.5)[_GROUP_OF]
            else:
                pick = g.random(len(ra)) < 0.5
            row = np.where(pick, ra, rb)
            if self.allowed_encoded(row)[0]:
                return self.decode(row)
        return a

    def __iter__(self) -> Iterator[StageSpace]:
        return iter(STAGE_SPACES)

    def describe(self) -> str:
        lines = [f"resolution {_fmt(RESOLUTIONS)}; first conv width {_fmt(STEM_WIDTHS)}"]
        for sp in STAGE_SPACES:
            dims = "; ".join(f"{d} {_fmt(sp.choices(d))}" for d in sp.dims)
            lines.append(f"{sp.name}: {dims}; stride {sp.stride}")
        lines.append(f"head: MBPool {HEAD_EXPAND}x -> {HEAD_WIDTH}; size {self.size():.3g}")
        return "\n".join(lines)


SPACE = SearchSpace()
