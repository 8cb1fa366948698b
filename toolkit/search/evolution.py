"""Constrained evolutionary search (the release's algorithm, made runnable and resumable).

Population of ``population`` feasible subnets; each generation keeps the ``parents`` best by
fitness and adds ``mutations`` mutants and ``crossovers`` crossovers, every child re-drawn
until it satisfies the constraint (``max_retries`` per child). ``operators="release"`` (the
default) mutates as the release's ``get_mutation``: each dimension re-drawn with
``mutation_prob``, all depths together with ``depth_mutation_prob``, a re-drawn value uniform
with ``dim_mutation_prob`` and otherwise the smallest choice; crossover takes each kind of
choice whole from one parent. ``operators="uniform"``: uniform re-draws, per-dimension
crossover. Feasible = cost in ``[lower_frac * budget, budget]`` (so the answer
uses the budget); the cost is predicted latency (ms) or MFLOPs. Randomness comes from
(seed, generation), the state is saved after every generation, so a run interrupted at any
point resumes and a given seed always gives the same result.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from toolkit.fileio import atomic_write_json
from toolkit.space import SPACE, ArchConfig, SearchSpace


class SearchError(ValueError):
    pass


OPERATORS = ("release", "uniform")


@dataclass
class SearchConfig:
    population: int = 512
    generations: int = 40
    parents: int = 256
    mutations: int = 128
    crossovers: int = 128
    mutation_prob: float = 0.2
    lower_frac: float = 0.85
    max_retries: int = 200
    seed: int = 0
    operators: str = "release"
    dim_mutation_prob: float = 0.45  # the release's searching_mutation_prob
    depth_mutation_prob: float = 0.4  # the release's s_prob

    def validate(self) -> None:
        for name in ("population", "parents"):
            if getattr(self, name) < 1:
                raise SearchError(f"{name} = {getattr(self, name)}; must be >= 1")
        for name in ("generations", "mutations", "crossovers"):
            if getattr(self, name) < 0:
                raise SearchError(f"{name} = {getattr(self, name)}; must be >= 0")
        for name in ("mutation_prob", "dim_mutation_prob", "depth_mutation_prob"):
            if not 0 <= getattr(self, name) <= 1:
                raise SearchError(f"{name} = {getattr(self, name)}; must be in [0, 1]")
        if self.operators not in OPERATORS:
            raise SearchError(f"operators = {self.operators!r}; choose one of "
                              f"{', '.join(OPERATORS)}")
        if not 0 <= self.lower_frac < 1:
            raise SearchError(f"lower_frac = {self.lower_frac}; must be in [0, 1)")


class Cost:
    """Vectorized cost of encoded subnets: predicted latency (ms) or MFLOPs."""

    def __init__(self, kind: str, predictor=None, num_classes: int = 1000):
        if kind not in ("latency", "mflops"):
            raise SearchError(f"cost = {kind!r}; choose latency or mflops")
        if kind == "latency" and predictor is None:
            raise SearchError("a latency budget needs a device predictor")
        self.kind, self.predictor, self.num_classes = kind, predictor, num_classes
        self.unit = "ms" if kind == "latency" else "MFLOPs"

    def __call__(self, enc: np.ndarray) -> np.ndarray:
        enc = np.atleast_2d(enc)
        if self.kind == "latency":
            return self.predictor.predict_encoded(enc)
        from toolkit.flops import flops_encoded

        return np.asarray(flops_encoded(enc, self.num_classes), dtype=np.float64)

    def of(self, arch: ArchConfig) -> float:
        return float(self(SPACE.encode(arch)[None])[0])

    def cheapest(self, seed: int = 0, n: int = 20000,
                 space: SearchSpace = SPACE) -> tuple[float, ArchConfig]:
        """The lowest cost found: the space's min subnet and n random subnets."""
        rng = np.random.default_rng(seed)
        enc = np.concatenate([space.encode(space.min())[None], space.sample_encoded(n, rng)])
        c = self(enc)
        i = int(np.argmin(c))
        return float(c[i]), space.decode(enc[i])


def _feasible_samples(cost: Cost, lo: float, hi: float, n: int, rng, max_draws: int,
                      space: SearchSpace = SPACE) -> list[ArchConfig]:
    """Up to ``n`` distinct subnets with cost in [lo, hi] (fewer when that window is rare)."""
    enc = space.sample_window(cost, lo, hi, n, rng, max_draws, batch=4096, distinct=True)
    return [space.decode(row) for row in enc]


def search(budget: float, cost: Cost, fitness: Callable[[Sequence[ArchConfig]], list[float]],
           cfg: SearchConfig | None = None, state_path: str | Path | None = None,
           progress: Callable[[str], None] = lambda s: None, save: bool = True,
           space: SearchSpace = SPACE, seeds: Sequence[ArchConfig] = (),
           on_generation: Callable[[int, int, float, int], None] | None = None) -> dict:
    """Best subnet with cost <= budget (and >= lower_frac * budget when such subnets exist),
    drawn, mutated and crossed within ``space`` (and its rules). The first population starts
    with the ``seeds`` that are feasible (the release seeds it from the supernet's memory
    banks), then uniform draws. ``on_generation(generation, generations, best fitness,
    subnets evaluated)`` is called after the first population (generation 0) and after each
    generation (a progress bar)."""
    cfg = cfg or SearchConfig()
    cfg.validate()
    fastest, cheapest_arch = cost.cheapest(cfg.seed, space=space)
    if budget < fastest:
        raise SearchError(
            f"budget {budget:g} {cost.unit} is infeasible: the cheapest subnet found costs "
            f"{fastest:.2f} {cost.unit}; raise the budget to at least that")
    hi, lo = budget, max(cfg.lower_frac * budget, fastest)
    state = _load_state(state_path, budget, cost, cfg, space, len(seeds))
    write_to = state_path if save else None  # under torchrun only rank 0 writes
    scores: dict[str, float] = state["scores"]

    def evaluate(archs: list[ArchConfig]) -> list[float]:
        todo = list(dict.fromkeys(a.to_json() for a in archs if a.to_json() not in scores))
        if todo:
            for k, v in zip(todo, fitness([ArchConfig.from_json(k) for k in todo])):
                scores[k] = float(v)
        return [scores[a.to_json()] for a in archs]

    if state["population"] is None:
        rng = np.random.default_rng((cfg.seed, 0))
        seeded = _feasible_seeds(seeds, cost, lo, hi, space, cfg.population)
        if seeded:
            progress(f"budget {budget:g} {cost.unit}: {len(seeded)} of the first population "
                     "from the supernet's memory banks")
        pop = seeded + [a for a in _feasible_samples(
            cost, lo, hi, cfg.population, rng, 4096 * cfg.max_retries, space)
            if a not in seeded][:cfg.population - len(seeded)]
        if not pop:  # nothing in [lo, hi]: drop the lower bound
            progress(f"no subnet found in [{lo:.2f}, {hi:.2f}] {cost.unit}; searching below")
            lo = fastest
            pop = _feasible_samples(cost, lo, hi, cfg.population, rng, 4096 * cfg.max_retries,
                                    space)
        if not pop:  # tight budgets: random subnets are too slow; grow from the cheapest one
            pop, seen = [cheapest_arch], {cheapest_arch.to_json()}
            for _ in range(cfg.max_retries * cfg.population):
                if len(pop) >= cfg.population:
                    break
                child = space.mutate(pop[int(rng.integers(len(pop)))], cfg.mutation_prob, rng)
                if child.to_json() not in seen and lo <= cost.of(child) <= hi:
                    seen.add(child.to_json())
                    pop.append(child)
        evaluate(pop)
        state.update(population=[a.to_json() for a in pop], generation=0, lo=lo)
        _save_state(write_to, state)
    lo = state["lo"]
    if on_generation is not None:
        on_generation(state["generation"], cfg.generations,
                      max(scores[k] for k in state["population"]), len(scores))
    for gen in range(state["generation"] + 1, cfg.generations + 1):
        rng = np.random.default_rng((cfg.seed, gen))
        pop = [ArchConfig.from_json(k) for k in state["population"]]
        ranked = sorted(pop, key=lambda a: -scores[a.to_json()])
        parents = ranked[:cfg.parents]
        children: list[ArchConfig] = []
        seen = {a.to_json() for a in parents}

        mutate, cross = _operators(space, cfg)
        for _ in range(cfg.mutations):
            p = parents[int(rng.integers(len(parents)))]
            _admit(lambda p=p, g=rng, m=mutate: m(p, g), cost, lo, hi, seen, children,
                   cfg.max_retries)
        for _ in range(cfg.crossovers):
            a, b = (parents[int(i)] for i in rng.integers(len(parents), size=2))
            _admit(lambda a=a, b=b, g=rng, x=cross: x(a, b, g), cost, lo, hi, seen, children,
                   cfg.max_retries)
        evaluate(children)
        state["population"] = [a.to_json() for a in parents + children]
        state["generation"] = gen
        best = max(state["population"], key=lambda k: scores[k])
        progress(f"budget {budget:g} {cost.unit}: generation {gen}/{cfg.generations}, best "
                 f"fitness {100 * scores[best]:.1f}%, {len(scores)} subnets evaluated")
        if on_generation is not None:
            on_generation(gen, cfg.generations, scores[best], len(scores))
        _save_state(write_to, state)
    feasible = [k for k in scores if lo - 1e-9 <= cost.of(ArchConfig.from_json(k)) <= hi]
    best = max(feasible, key=lambda k: (scores[k], k))
    arch = ArchConfig.from_json(best)
    return {"budget": budget, "unit": cost.unit, "arch": arch, "accuracy": scores[best],
            "cost": cost.of(arch), "evaluated": dict(scores), "lower_bound": lo}


def _operators(space: SearchSpace, cfg: SearchConfig):
    """(mutate(arch, rng), crossover(a, b, rng)) for ``cfg.operators``."""
    if cfg.operators == "uniform":
        return (lambda a, g: space.mutate(a, cfg.mutation_prob, g),
                lambda a, b, g: space.crossover(a, b, g))
    return (lambda a, g: space.mutate(a, cfg.mutation_prob, g,
                                      uniform_prob=cfg.dim_mutation_prob,
                                      depth_prob=cfg.depth_mutation_prob),
            lambda a, b, g: space.crossover(a, b, g, groups=True))


def random_search(budget: float, cost: Cost,
                  fitness: Callable[[Sequence[ArchConfig]], list[float]], n: int,
                  seed: int = 0, lower_frac: float = 0.85, space: SearchSpace = SPACE,
                  state_path: str | Path | None = None, save: bool = True,
                  chunk: int = 8) -> dict:
    """The baseline evolution has to beat: ``n`` distinct uniform feasible subnets (cost in
    [lower_frac * budget, budget]), the fittest wins. The subnets are fixed by ``seed``; their
    scores are saved to ``state_path`` after every ``chunk`` of them, so an interrupted run
    resumes without measuring any subnet twice."""
    fastest, _ = cost.cheapest(seed, space=space)
    if budget < fastest:
        raise SearchError(f"budget {budget:g} {cost.unit} is infeasible: the cheapest subnet "
                          f"found costs {fastest:.2f} {cost.unit}")
    lo = max(lower_frac * budget, fastest)
    archs = _feasible_samples(cost, lo, budget, n, np.random.default_rng((seed, 7)),
                              4096 * 2000, space)
    if not archs:
        raise SearchError(f"no subnet found in [{lo:.2f}, {budget:.2f}] {cost.unit}")
    key = {"strategy": "random", "budget": budget, "cost": cost.kind,
           "device": getattr(cost.predictor, "device", None), "n": n, "seed": seed,
           "lower_frac": lower_frac, "rules": space.rules}
    state = _read_state(state_path, key) or {"key": key, "scores": {}}
    scores: dict[str, float] = state["scores"]
    todo = [a for a in archs if a.to_json() not in scores]
    for i in range(0, len(todo), chunk):
        part = todo[i:i + chunk]
        scores.update(zip((a.to_json() for a in part), map(float, fitness(part))))
        _save_state(state_path if save else None, state)
    scores = {a.to_json(): scores[a.to_json()] for a in archs}
    best = max(scores, key=lambda k: (scores[k], k))
    arch = ArchConfig.from_json(best)
    return {"budget": budget, "unit": cost.unit, "arch": arch, "accuracy": scores[best],
            "cost": cost.of(arch), "evaluated": scores, "lower_bound": lo}


def _feasible_seeds(seeds: Sequence[ArchConfig], cost: Cost, lo: float, hi: float,
                    space: SearchSpace, n: int) -> list[ArchConfig]:
    seeds = list(dict.fromkeys(seeds))  # banks may share subnets
    if not seeds:
        return []
    enc = space.encode_many(seeds)
    c = cost(enc)  # one vectorized call, not one per seed
    ok = space.allowed_encoded(enc) & (c >= lo) & (c <= hi)
    return [a for a, keep in zip(seeds, ok) if keep][:n]


def _admit(make: Callable[[], ArchConfig], cost: Cost, lo: float, hi: float, seen: set,
           children: list, retries: int) -> None:
    """Add one new feasible child (at most ``retries`` draws; none if all fail)."""
    for _ in range(retries):
        child = make()
        if child.to_json() not in seen and lo <= cost.of(child) <= hi:
            seen.add(child.to_json())
            children.append(child)
            return


def _key(budget: float, cost: Cost, cfg: SearchConfig, space: SearchSpace = SPACE,
         seeds: int = 0) -> dict:
    dev = getattr(cost.predictor, "device", None)
    key = {"budget": budget, "cost": cost.kind, "device": dev, "config": asdict(cfg)}
    if space.rules != "none":  # older state files (no rules, no seeds) still resume
        key["rules"] = space.rules
    if seeds:
        key["seeds"] = seeds
    return key


def _load_state(path, budget, cost, cfg, space: SearchSpace = SPACE, seeds: int = 0) -> dict:
    key = _key(budget, cost, cfg, space, seeds)
    return _read_state(path, key) or {"key": key, "population": None, "generation": 0,
                                      "scores": {}, "lo": None}


def _read_state(path, key: dict) -> dict | None:
    """The saved state of the search ``key`` describes, or None if there is none yet."""
    if path is None or not Path(path).is_file():
        return None
    try:
        st = json.loads(Path(path).read_text())
    except ValueError as e:
        raise SearchError(f"{path} is damaged ({e}); delete it to search this budget "
                          "again, or start over with --overwrite") from None
    if not isinstance(st, dict) or st.get("key") != key:
        raise SearchError(f"{path} belongs to a different search "
                          f"({st.get('key') if isinstance(st, dict) else st!r}); use another "
                          "--out, the same settings, or --overwrite")
    return st


def _save_state(path, state: dict) -> None:
    if path is None:
        return
    atomic_write_json(path, state)


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of (cost, accuracy) points that no other point beats on both (lower, higher)."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    front, best = [], -np.inf
    for i in order:
        if points[i][1] > best:
            front.append(i)
            best = points[i][1]
    return front


def rerank(result: dict, cost: Cost, fitness: Callable[[Sequence[ArchConfig]], list[float]],
           k: int = 10) -> dict:
    """A search run on predicted fitness, finished on real fitness: the ``k`` feasible
    subnets with the highest predicted fitness are evaluated for real and the best of
    those wins. Adds ``predicted`` (the winner's predicted fitness) and ``reranked``
    ({arch json: (predicted, real)})."""
    if k < 1:
        raise SearchError(f"top_k = {k}; must be >= 1")
    lo, hi = result["lower_bound"], result["budget"]
    pred = result["evaluated"]
    keys = list(pred)
    c = cost(SPACE.encode_many([ArchConfig.from_json(x) for x in keys]))
    ok = [x for x, v in zip(keys, c) if lo - 1e-9 <= v <= hi]
    top = sorted(ok, key=lambda x: (-pred[x], x))[:k]
    real = dict(zip(top, map(float, fitness([ArchConfig.from_json(x) for x in top]))))
    best = max(top, key=lambda x: (real[x], pred[x], x))
    arch = ArchConfig.from_json(best)
    return {**result, "arch": arch, "accuracy": real[best], "predicted": pred[best],
            "cost": cost.of(arch), "reranked": {x: (pred[x], real[x]) for x in top}}
