"""Which subnets each training step trains: sandwich, complexity-aware, conflict-aware.

All randomness of step ``t`` comes from ``np.random.default_rng((seed, t))``, so every DDP
rank draws the same subnets without communicating, and a resumed run draws exactly what an
uninterrupted one would have. The rest of the state (current level, memory banks) is in
:meth:`state_dict`, a JSON-compatible dict stored in training checkpoints.

* ``sandwich`` (baseline): the max subnet, the min subnet and 2 uniform random subnets.
* ``complexity``: one complexity level per step, moving to an adjacent level (−1, 0, +1; at
  the ends stay with probability 2/3); 3 subnets with FLOPs in [F, F+20] plus the nearest
  hierarchical smallest subnet (HSS: F ≤ 220 → min_1, ≤ 420 → min_2, else min_3); no max.
  The 3 are drawn uniformly from the HSS's sub-space ∩ the window (``subspace``, see
  ``toolkit/train/subspace.py``; "off" = the window only).
* ``conflict-aware``: ``complexity`` plus performance-aware sampling. Each level has a memory
  bank (150 entries below 500 MFLOPs, 50 above) of explored subnets scored by −CE; with
  probability q (0.2, +0.15 at each sixth of training, as in the release) a subnet is drawn
  from the bank by softmax of scores once it is more than half full; otherwise up to 5
  candidates are drawn and the path-preference rule keeps the one with the smallest
  Φa − Φb (anchor: best subnet of the lowest level's bank).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from toolkit.flops import flops
from toolkit.space import SPACE, ArchConfig, SearchSpace
from toolkit.train.subspace import SUBSPACES, level_space
from toolkit.zoo import hss_archs

__all__ = ["LEVELS", "SubnetDraw", "StepPlan", "MemoryBank", "SandwichSampler",
           "ComplexitySampler", "ConflictAwareSampler", "make_sampler", "hss_for_level",
           "SAMPLERS"]

LEVELS = (100, 200, 300, 400, 500, 700, 900, 1200)
SAMPLERS = ("conflict-aware", "complexity", "sandwich")


def hss_for_level(level: float) -> str:
    """Name of the HSS subnet trained alongside level ``level`` (release: select_min_arch)."""
    return "min_1" if level <= 220 else "min_2" if level <= 420 else "min_3"


def step_rng(seed: int, step: int) -> np.random.Generator:
    return np.random.default_rng((seed, step))


@dataclass(frozen=True)
class SubnetDraw:
    arch: ArchConfig
    role: str  # "uniform" | "random" | "max" | "min"
    explored: bool = False  # a fresh draw (scored into the memory bank), not a bank replay


@dataclass
class StepPlan:
    subnets: list[SubnetDraw]
    level: int | None = None  # index into the sampler's levels
    q: float | None = None


@dataclass
class MemoryBank:
    """The best explored subnets of one level, scored by −CE (higher is better)."""

    capacity: int
    archs: list[ArchConfig] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.archs)

    def offer(self, arch: ArchConfig, score: float) -> bool:
        """Insert if not full, else replace the worst entry if ``score`` beats it."""
        if arch in self.archs:  # the same subnet again: refresh its score
            self.scores[self.archs.index(arch)] = float(score)
            return True
        if len(self.archs) < self.capacity:
            self.archs.append(arch)
            self.scores.append(float(score))
            return True
        worst = int(np.argmin(self.scores))
        if score > self.scores[worst]:
            self.archs[worst], self.scores[worst] = arch, float(score)
            return True
        return False

    def sample(self, rng: np.random.Generator) -> ArchConfig:
        s = np.asarray(self.scores, dtype=np.float64)
        p = np.exp(s - s.max())
        return self.archs[int(rng.choice(len(s), p=p / p.sum()))]

    def best(self) -> ArchConfig:
        return self.archs[int(np.argmax(self.scores))]

    def state_dict(self) -> dict[str, Any]:
        return {"capacity": self.capacity, "archs": [a.to_dict() for a in self.archs],
                "scores": list(self.scores)}

    @classmethod
    def from_state(cls, d: dict[str, Any]) -> MemoryBank:
        return cls(int(d["capacity"]), [ArchConfig.from_dict(a) for a in d["archs"]],
                   [float(s) for s in d["scores"]])


class SandwichSampler:
    name = "sandwich"

    def __init__(self, seed: int = 0, num_random: int = 2, space: SearchSpace = SPACE):
        self.seed, self.num_random, self.space = seed, num_random, space

    def plan(self, step: int, progress: float = 0.0) -> StepPlan:
        rng = step_rng(self.seed, step)
        subs = [SubnetDraw(self.space.max(), "max"), SubnetDraw(self.space.min(), "min")]
        subs += [SubnetDraw(self.space.sample(rng), "random") for _ in range(self.num_random)]
        return StepPlan(subs)

    def state_dict(self) -> dict[str, Any]:
        return {"name": self.name}

    def load_state_dict(self, d: dict[str, Any]) -> None:
        _check_name(self.name, d)


def _check_name(name: str, d: dict[str, Any]) -> None:
    if d.get("name") != name:
        raise ValueError(f"checkpoint sampler state is for {d.get('name')!r}, not {name!r}; "
                         f"resume with --sampler {d.get('name')}")


class ComplexitySampler:
    name = "complexity"

    def __init__(self, seed: int = 0, levels: tuple[float, ...] = LEVELS, window: float = 20.0,
                 num_uniform: int = 3, space: SearchSpace = SPACE, subspace: str = "hss"):
        if not levels or list(levels) != sorted(levels):
            raise ValueError(f"levels must be a non-empty increasing list, got {list(levels)}")
        if subspace not in SUBSPACES:
            raise ValueError(f"subspace = {subspace!r} is not known; choose one of "
                             f"{', '.join(SUBSPACES)}")
        self.seed, self.levels, self.window = seed, tuple(levels), window
        self.num_uniform, self.space, self.subspace = num_uniform, space, subspace
        self.hss = hss_archs()
        # where each level's subnets come from: its HSS's sub-space (or the whole space)
        self.level_spaces = [level_space(self.hss[hss_for_level(f)], subspace, space)
                             for f in self.levels]
        self.level: int | None = None  # index of the last step's level

    def next_level(self, rng: np.random.Generator) -> int:
        """Adjacent-step rule: −1, 0 or +1; at either end stay with probability 2/3."""
        if self.level is None:
            return 0
        last = len(self.levels) - 1
        if last == 0:
            return 0
        moves = [0, 0, 1] if self.level == 0 else [-1, 0, 0] if self.level == last else [-1, 0, 1]
        return self.level + int(moves[rng.integers(3)])

    def window_of(self, level: int) -> tuple[float, float]:
        f = self.levels[level]
        return f, f + self.window

    def sample_level(self, level: int, rng: np.random.Generator) -> ArchConfig:
        """A subnet uniform over level ``level``'s sub-space ∩ FLOPs window."""
        return self.level_spaces[level].sample_at(*self.window_of(level), rng=rng)

    def draw_uniform(self, level: int, rng: np.random.Generator, progress: float) -> SubnetDraw:
        return SubnetDraw(self.sample_level(level, rng), "uniform", True)

    def plan(self, step: int, progress: float = 0.0) -> StepPlan:
        rng = step_rng(self.seed, step)
        self.level = self.next_level(rng)
        subs = [self.draw_uniform(self.level, rng, progress) for _ in range(self.num_uniform)]
        hss = self.hss[hss_for_level(self.levels[self.level])]
        return StepPlan(subs + [SubnetDraw(hss, "min")], level=self.level)

    def state_dict(self) -> dict[str, Any]:
        return {"name": self.name, "level": self.level, "levels": list(self.levels),
                "subspace": self.subspace}

    def load_state_dict(self, d: dict[str, Any]) -> None:
        _check_name(self.name, d)
        if list(d["levels"]) != list(self.levels):
            raise ValueError(f"checkpoint levels {d['levels']} differ from {list(self.levels)}")
        saved = d.get("subspace", "off")  # states from before sub-spaces drew without them
        if saved != self.subspace:
            raise ValueError(f"checkpoint sampler drew with subspace {saved!r}, this run has "
                             f"{self.subspace!r}; resume with --subspace {saved}")
        self.level = d["level"]


class ConflictAwareSampler(ComplexitySampler):
    name = "conflict-aware"

    def __init__(self, seed: int = 0, levels: tuple[float, ...] = LEVELS, window: float = 20.0,
                 num_uniform: int = 3, bank_small: int = 150, bank_big: int = 50,
                 bank_big_from: float = 500.0, q_start: float = 0.2, q_increment: float = 0.15,
                 q_stages: int = 6, candidates: int = 5, space: SearchSpace = SPACE,
                 subspace: str = "hss"):
        super().__init__(seed, levels, window, num_uniform, space, subspace)
        self.banks = [MemoryBank(bank_big if f >= bank_big_from else bank_small)
                      for f in self.levels]
        self.q_start, self.q_increment, self.q_stages = q_start, q_increment, q_stages
        self.candidates = candidates

    def q(self, progress: float) -> float:
        """Exploit probability: q_start + q_increment per completed 1/q_stages of training."""
        return self.q_start + self.q_increment * math.floor(min(progress, 1.0) * self.q_stages)

    def anchor(self, level: int) -> ArchConfig:
        if level > 0 and len(self.banks[0]):
            return self.banks[0].best()
        return self.space.min()

    def preference_score(self, cand: ArchConfig, anchor: ArchConfig) -> float:
        """Φa − Φb: FLOPs with the anchor's transformer widths minus with its depths."""
        t_names = ("t1", "t2", "t3", "t4")
        widths = {n: type(cand.stage(n))(cand.stage(n).depth, anchor.stage(n).width,
                                         cand.stage(n).mlp_ratio, cand.stage(n).v_scale)
                  for n in t_names}
        depths = {n: type(cand.stage(n))(anchor.stage(n).depth, cand.stage(n).width,
                                         cand.stage(n).mlp_ratio, cand.stage(n).v_scale)
                  for n in t_names}
        return flops(cand.replace(**widths)) - flops(cand.replace(**depths))

    def prefer(self, level: int, rng: np.random.Generator) -> ArchConfig:
        bank = self.banks[level]
        first = self.sample_level(level, rng)
        if len(bank) < bank.capacity // 2:
            return first
        cands = [first] + [self.sample_level(level, rng) for _ in range(self.candidates - 1)]
        anchor = self.anchor(level)
        return min(cands, key=lambda c: self.preference_score(c, anchor))

    def draw_uniform(self, level: int, rng: np.random.Generator, progress: float) -> SubnetDraw:
        bank = self.banks[level]
        exploit = rng.random() < self.q(progress)
        if exploit and len(bank) > bank.capacity // 2:
            return SubnetDraw(bank.sample(rng), "uniform", explored=False)
        return SubnetDraw(self.prefer(level, rng), "uniform", explored=True)

    def plan(self, step: int, progress: float = 0.0) -> StepPlan:
        p = super().plan(step, progress)
        p.q = self.q(progress)
        return p

    def observe(self, level: int, arch: ArchConfig, score: float) -> bool:
        """Offer an explored subnet's score (−CE on the un-mixed batch) to its level's bank
        (only a subnet of the level's window and sub-space)."""
        lo, hi = self.window_of(level)
        if not lo <= flops(arch) <= hi or not self.level_spaces[level].allows(arch):
            return False
        return self.banks[level].offer(arch, score)

    def rescore(self, score_fn: Callable[[ArchConfig], float], level: int | None = None) -> int:
        """Re-score bank entries on the current batch (scores from other batches do not
        compare); all banks when ``level`` is None. Returns how many were scored."""
        n = 0
        for i, bank in enumerate(self.banks):
            if level is not None and i != level:
                continue
            bank.scores = [float(score_fn(a)) for a in bank.archs]
            n += len(bank)
        return n

    def state_dict(self) -> dict[str, Any]:
        d = super().state_dict()
        d["banks"] = [b.state_dict() for b in self.banks]
        return d

    def load_state_dict(self, d: dict[str, Any]) -> None:
        super().load_state_dict(d)
        self.banks = [MemoryBank.from_state(b) for b in d["banks"]]
        if len(self.banks) != len(self.levels):
            raise ValueError(f"checkpoint has {len(self.banks)} memory banks for "
                             f"{len(self.levels)} levels")


def make_sampler(name: str, seed: int = 0, levels: tuple[float, ...] = LEVELS,
                 window: float = 20.0, **kwargs: Any):
    if name == "sandwich":  # no levels, so no sub-spaces
        return SandwichSampler(seed, space=kwargs.get("space", SPACE))
    if name == "complexity":
        return ComplexitySampler(seed, levels, window, space=kwargs.get("space", SPACE),
                                 subspace=kwargs.get("subspace", "hss"))
    if name == "conflict-aware":
        return ConflictAwareSampler(seed, levels, window, **kwargs)
    raise ValueError(f"sampler = {name!r} is not known; choose one of {', '.join(SAMPLERS)}")
