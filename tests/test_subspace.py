"""HSS sub-spaces (paper Sec. 3.2; the release's ``arch_sampling_engine(min_arch=...)``).

Membership is checked here by an independent reading of the rules (not the library's mask),
and the release mode against the release's own sampler.
"""

from __future__ import annotations

import hashlib
import random
from collections import Counter

import numpy as np
import pytest
import release_oracle as ro

from toolkit.flops import flops, flops_encoded
from toolkit.space import SPACE, ArchConfig, ArchError, SearchSpace
from toolkit.train.samplers import (
    LEVELS,
    ComplexitySampler,
    ConflictAwareSampler,
    hss_for_level,
)
from toolkit.train.subspace import hss_floors, in_subspace, level_space
from toolkit.zoo import hss_archs

HSS = hss_archs()


def inside(arch: ArchConfig, hss: ArchConfig, mlp_floor: bool = True) -> list[str]:
    """What keeps ``arch`` out of ``hss``'s sub-space (empty: inside), read off the rules."""
    why = []
    if arch.resolution < hss.resolution:
        why.append("resolution")
    widths = [arch.stem_width] + [s.width for s in arch.stages]
    if widths[0] != widths[1]:
        why.append("first conv != mbv2_1 width")
    if any(b < a for a, b in zip(widths[1:], widths[2:])):
        why.append("a stage narrower than the one before")
    for st, h in zip(arch.stages, hss.stages):
        for dim in ("depth", "width", "kernel", "expand", "mlp_ratio", "v_scale"):
            if dim == "mlp_ratio" and not mlp_floor:
                continue
            if hasattr(st, dim) and getattr(st, dim) < getattr(h, dim):
                why.append(dim)
    return why


def _draw_many(sampler, level: int, n: int, seed: int) -> list:
    """``n`` uniform-role draws of one level, scoring explored ones into the bank (so bank
    replays and path preference are exercised once a bank is half full)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        d = sampler.draw_uniform(level, rng, progress=0.9)
        out.append(d)
        if d.explored and hasattr(sampler, "observe"):
            sampler.observe(level, d.arch, -float(rng.random()))
    return out


@pytest.mark.parametrize("name", ["complexity", "conflict-aware"])
def test_every_draw_is_inside_the_nearest_hss_subspace_and_the_window(name):
    kw = dict(bank_small=40, bank_big=20) if name == "conflict-aware" else {}
    cls = ConflictAwareSampler if name == "conflict-aware" else ComplexitySampler
    s = cls(seed=3, levels=LEVELS, **kw)
    for li, f in enumerate(LEVELS):
        hss = HSS[hss_for_level(f)]
        draws = _draw_many(s, li, 2000, seed=li)
        bad = [(d.arch.short(), inside(d.arch, hss)) for d in draws
               if inside(d.arch, hss) or not f <= flops(d.arch) <= f + 20]
        assert not bad, (f, len(bad), bad[:3])
        if name == "conflict-aware":  # both paths ran: bank replays and explored draws
            roles = Counter(d.explored for d in draws)
            assert roles[True] > 100 and roles[False] > 100, roles
            assert all(not inside(a, hss) for a in s.banks[li].archs)
    # and whole steps: the HSS subnet plus three in its sub-space
    for t in range(200):
        p = s.plan(t, t / 200)
        hss = HSS[hss_for_level(LEVELS[p.level])]
        assert p.subnets[-1].arch == hss
        assert all(not inside(d.arch, hss) for d in p.subnets[:-1])


def test_subspace_off_reproduces_the_draws_of_before():
    """`--subspace off` is the sampler evit had before sub-spaces: the same subnets, step by
    step (this digest is what the code of commit 53ce26f draws), and few of them are inside."""
    h = hashlib.sha256()
    for cls in (ComplexitySampler, ConflictAwareSampler):
        extra = {} if cls is ComplexitySampler else dict(bank_small=4, bank_big=4)
        s = cls(seed=7, levels=(100.0, 300.0, 500.0), subspace="off", **extra)
        for t in range(60):
            p = s.plan(t, t / 60)
            for d in p.subnets:
                h.update(d.arch.short().encode())
                if d.explored and hasattr(s, "observe"):
                    s.observe(p.level, d.arch, -flops(d.arch) / 1000)
    assert h.hexdigest() == "1030bd0658bf42d1f0a1953a6f4a69b7e2bdd1ced752827a4516c4b1564b8b92"
    s = ComplexitySampler(seed=0, subspace="off")
    for li, f in ((0, 100), (2, 300), (4, 500)):
        draws = _draw_many(s, li, 400, seed=li)
        share = np.mean([not inside(d.arch, HSS[hss_for_level(f)]) for d in draws])
        assert share < 0.35, (f, share)  # the issue measured 0-23%


def test_draws_are_uniform_over_subspace_and_window():
    """The stratified draw equals plain rejection (uniform over the sub-space, then the
    window) in distribution: marginals of resolution, widths and depths agree."""
    for f, hss in ((200.0, HSS["min_1"]), (900.0, HSS["min_3"])):
        sp = level_space(hss, "hss", SPACE)
        g = np.random.default_rng(0)
        fast = sp.encode_many([sp.sample_at(f, f + 20, rng=g) for _ in range(6000)])
        naive, have = [], 0
        while have < 6000:
            enc = sp.sample_encoded(65536, g)
            fl = flops_encoded(enc, 1000)
            hit = enc[(fl >= f) & (fl <= f + 20)]
            naive.append(hit)
            have += len(hit)
        naive = np.concatenate(naive)[:6000]
        for col in ("resolution", "stem_width", "mbv3.width", "t1.width", "t3.width",
                    "t4.width", "t3.depth", "t4.depth", "t2.mlp_ratio"):
            j = sp.columns.index(col)
            vals = sorted(set(fast[:, j]) | set(naive[:, j]))
            p = np.array([np.mean(fast[:, j] == v) for v in vals])
            q = np.array([np.mean(naive[:, j] == v) for v in vals])
            assert 0.5 * np.abs(p - q).sum() < 0.045, (f, col, dict(zip(vals, p - q)))


def test_floors_and_rules_of_a_space():
    sp = level_space(HSS["min_2"], "hss", SPACE)
    assert sp.min() == HSS["min_2"]  # the HSS is its sub-space's smallest member
    assert sp.allows(HSS["min_2"]) and not sp.allows(HSS["min_1"])
    assert sp.allows(SearchSpace(rules="release").max())
    assert not in_subspace(HSS["min_2"], HSS["min_3"])
    # min_3's t2 MLP ratio (2) is below min_2's (3): the sub-spaces nest only without that floor
    assert not in_subspace(HSS["min_3"], HSS["min_2"])
    assert in_subspace(HSS["min_3"], HSS["min_2"], "release")
    assert 0 < sp.size() < SearchSpace(rules="release").size() < SPACE.size()
    enc = sp.sample_encoded(5000, 1)
    assert sp.allowed_encoded(enc).all()
    m = sp.mutate(HSS["min_2"], prob=0.5, rng=2)
    assert sp.allows(m)
    with pytest.raises(ArchError, match="floors: 't9.depth' is not a column"):
        SearchSpace(floors={"t9.depth": 2})
    with pytest.raises(ArchError, match="above every choice"):
        SearchSpace(floors={"t1.depth": 9})
    with pytest.raises(ArchError, match="choose one of hss, release, off"):
        level_space(HSS["min_1"], "strict", SPACE)
    with pytest.raises(ValueError, match="choose one of hss, release, off"):
        ComplexitySampler(subspace="all")


def test_resume_refuses_another_subspace():
    a = ConflictAwareSampler(seed=1, levels=(100.0, 300.0))
    b = ConflictAwareSampler(seed=1, levels=(100.0, 300.0), subspace="off")
    with pytest.raises(ValueError, match="resume with --subspace hss"):
        b.load_state_dict(a.state_dict())
    old = a.state_dict()
    del old["subspace"]  # a state from before sub-spaces
    with pytest.raises(ValueError, match="resume with --subspace off"):
        a.load_state_dict(old)
    b.load_state_dict(old)


@pytest.mark.skipif(not ro.available(), reason="the release's source is not beside the checkout")
def test_release_mode_is_what_the_release_sampler_draws():
    """The release's own ``arch_sampling_engine(mode='uniform', min_arch=HSS)``: every draw
    lies in evit's ``release`` sub-space and every value the floors allow is drawn (the
    floors are neither looser nor tighter); ``hss`` differs only by the MLP floor."""
    from toolkit.release.arch import from_release, to_release

    net = ro.build_release_supernet(10)
    random.seed(0)
    for name, hss in HSS.items():
        draws = [from_release(net.arch_sampling_engine(mode="uniform", min_arch=to_release(hss)))
                 for _ in range(1200)]
        assert all(in_subspace(a, hss, "release") for a in draws), name
        assert all(not inside(a, hss, mlp_floor=False) for a in draws), name
        sp = SearchSpace(rules="release", floors=hss_floors(hss, "release"))
        enc = SPACE.encode_many(draws)
        for j, col in enumerate(SPACE.columns):
            assert sorted(set(enc[:, j])) == list(sp.choices[j]), (name, col)
        strict = sum(in_subspace(a, hss, "hss") for a in draws)
        if name == "min_2":  # its t2 has MLP ratio 3; the release draws 2 as well
            assert 0.6 < strict / len(draws) < 0.9
            assert {a.stage("t2").mlp_ratio for a in draws} == {2, 3, 4, 5}
        else:
            assert strict == len(draws)
