import json

import numpy as np
import pytest

from toolkit.flops import flops
from toolkit.space import SPACE
from toolkit.train.samplers import (
    LEVELS,
    ComplexitySampler,
    ConflictAwareSampler,
    MemoryBank,
    SandwichSampler,
    hss_for_level,
    make_sampler,
)
from toolkit.zoo import hss_archs


def test_sandwich_is_max_min_and_two_random():
    s = SandwichSampler(seed=0)
    p = s.plan(0)
    assert [d.role for d in p.subnets] == ["max", "min", "random", "random"]
    assert p.subnets[0].arch == SPACE.max() and p.subnets[1].arch == SPACE.min()
    assert p.subnets[2].arch != p.subnets[3].arch


def test_hss_choice_follows_the_release():
    assert [hss_for_level(f) for f in LEVELS] == ["min_1", "min_1", "min_2", "min_2", "min_3",
                                                  "min_3", "min_3", "min_3"]
    assert hss_for_level(220) == "min_1" and hss_for_level(221) == "min_2"
    assert hss_for_level(420) == "min_2" and hss_for_level(421) == "min_3"


def test_complexity_adjacent_levels_windows_hss_and_no_max():
    s = ComplexitySampler(seed=0)
    hss = hss_archs()
    levels, stays = [], {0: [], len(LEVELS) - 1: []}
    for t in range(600):
        prev = s.level
        p = s.plan(t)
        levels.append(p.level)
        if prev is not None:
            assert abs(p.level - prev) <= 1
            if prev in stays:
                stays[prev].append(p.level == prev)
        f = LEVELS[p.level]
        uni = [d for d in p.subnets if d.role == "uniform"]
        assert len(uni) == 3 and all(f <= flops(d.arch) <= f + 20 for d in uni)
        assert p.subnets[-1].role == "min" and p.subnets[-1].arch == hss[hss_for_level(f)]
        assert all(d.arch != SPACE.max() for d in p.subnets)
    assert set(levels) == set(range(len(LEVELS)))  # the walk visits every level
    for end, st in stays.items():  # at either end: stay with probability 2/3
        assert len(st) > 30 and abs(np.mean(st) - 2 / 3) < 0.2, end


def test_bank_capacity_replacement_and_softmax_sampling():
    s = ConflictAwareSampler(seed=0)
    assert [b.capacity for b in s.banks] == [150, 150, 150, 150, 50, 50, 50, 50]
    b = MemoryBank(3)
    archs = [SPACE.sample(rng=i) for i in range(5)]
    assert b.offer(archs[0], -2.0) and b.offer(archs[1], -1.0) and b.offer(archs[2], -3.0)
    assert not b.offer(archs[3], -3.5)  # worse than the worst: rejected
    assert b.offer(archs[4], -0.5)  # replaces the worst (archs[2])
    assert archs[2] not in b.archs and len(b) == 3 and b.best() == archs[4]
    assert b.offer(archs[0], -0.1) and len(b) == 3 and b.best() == archs[0]  # refresh, no dup
    rng = np.random.default_rng(0)
    draws = [b.sample(rng) for _ in range(3000)]
    freq = {a: draws.count(a) / 3000 for a in b.archs}
    p = np.exp(np.array(b.scores) - max(b.scores))
    for a, want in zip(b.archs, p / p.sum()):
        assert abs(freq[a] - want) < 0.04


def test_observe_keeps_only_in_window_and_subspace_subnets():
    s = ConflictAwareSampler(seed=0)
    assert not s.observe(0, SPACE.max(), 0.0)
    rng = np.random.default_rng(1)
    outside = next(a for a in (SPACE.sample_at(100, 120, rng=rng) for _ in range(200))
                   if not s.level_spaces[0].allows(a))
    assert not s.observe(0, outside, -1.0) and len(s.banks[0]) == 0  # in window, not sub-space
    a = s.level_spaces[0].sample_at(100, 120, rng=1)
    assert s.observe(0, a, -1.0) and len(s.banks[0]) == 1
    off = ConflictAwareSampler(seed=0, subspace="off")
    assert off.observe(0, outside, -1.0)  # --subspace off: the window only


def test_q_schedule_rises_in_sixths():
    s = ConflictAwareSampler(seed=0)
    assert [round(s.q(p), 2) for p in (0, 0.16, 1 / 6, 0.5, 0.99, 1.0)] == \
        [0.2, 0.2, 0.35, 0.65, 0.95, 1.1]


def _fill(s: ConflictAwareSampler, level: int, n: int, seed: int = 0) -> None:
    f = s.levels[level]
    rng = np.random.default_rng(seed)
    for i in range(n):
        s.observe(level, s.level_spaces[level].sample_at(f, f + 20, rng=rng), -float(i) / n)


def test_exploit_only_from_a_more_than_half_full_bank():
    s = ConflictAwareSampler(seed=0, levels=(300.0,), q_start=1.0, q_increment=0.0)
    assert all(d.explored for d in s.plan(0).subnets[:3])  # empty bank: explore
    _fill(s, 0, 75)  # exactly half of 150: still explore
    assert all(d.explored for d in s.plan(1).subnets[:3])
    _fill(s, 0, 1, seed=9)
    p = s.plan(2)
    assert not any(d.explored for d in p.subnets[:3])
    assert all(d.arch in s.banks[0].archs for d in p.subnets[:3])


def test_path_preference_picks_the_smallest_phi_difference():
    s = ConflictAwareSampler(seed=3, levels=(100.0, 300.0), q_start=0.0, q_increment=0.0)
    _fill(s, 0, 80)
    _fill(s, 1, 80, seed=1)
    anchor = s.anchor(1)
    assert anchor == s.banks[0].best()
    assert s.anchor(0) == SPACE.min()
    rng_a, rng_b = np.random.default_rng(5), np.random.default_rng(5)
    chosen = s.prefer(1, rng_a)
    cands = [s.level_spaces[1].sample_at(300, 320, rng=rng_b) for _ in range(5)]
    scores = [s.preference_score(c, anchor) for c in cands]
    assert chosen == cands[int(np.argmin(scores))]
    # below half full: the first candidate, no comparison
    t = ConflictAwareSampler(seed=3, levels=(300.0,))
    rng_c, rng_d = np.random.default_rng(7), np.random.default_rng(7)
    assert t.prefer(0, rng_c) == t.level_spaces[0].sample_at(300, 320, rng=rng_d)


def test_state_round_trips_through_json_and_continues_identically():
    a = ConflictAwareSampler(seed=11, levels=(100.0, 200.0, 300.0))
    b = ConflictAwareSampler(seed=11, levels=(100.0, 200.0, 300.0))
    for t in range(40):
        p = a.plan(t, t / 80)
        for d in p.subnets:
            if d.explored:
                a.observe(p.level, d.arch, -flops(d.arch) / 1000)
    state = json.loads(json.dumps(a.state_dict()))
    b.load_state_dict(state)
    for t in range(40, 60):
        pa, pb = a.plan(t, t / 80), b.plan(t, t / 80)
        assert pa.level == pb.level and [d.arch for d in pa.subnets] == \
            [d.arch for d in pb.subnets]
    with pytest.raises(ValueError, match="resume with --sampler complexity"):
        b.load_state_dict(ComplexitySampler(seed=1, levels=(100.0, 200.0, 300.0)).state_dict())


def test_same_seed_same_plans_and_make_sampler_errors():
    for name in ("sandwich", "complexity", "conflict-aware"):
        x, y = make_sampler(name, seed=4), make_sampler(name, seed=4)
        assert [[d.arch for d in x.plan(t).subnets] for t in range(5)] == \
            [[d.arch for d in y.plan(t).subnets] for t in range(5)]
    with pytest.raises(ValueError, match="choose one of conflict-aware, complexity, sandwich"):
        make_sampler("random")
