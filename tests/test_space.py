import json
import math

import numpy as np
import pytest

from toolkit.flops import flops
from toolkit.space import (
    SPACE,
    ArchConfig,
    ArchError,
    ConvStage,
    SearchSpace,
    TransformerStage,
)

LEVELS = (100, 200, 300, 400, 500, 700, 900, 1200)


def test_size_is_the_papers_1_09e17():
    # product of the per-stage choice counts of Table 1
    expected = 6 * 2 * (2 * 2 * 2) * (4 * 3 * 2 * 4) * (5 * 5 * 2 * 4) * (5 * 4 * 4 * 3) \
        * (6 * 6 * 4 * 3) * (6 * 10 * 4 * 3) * (6 * 11 * 4 * 3)
    assert SPACE.size() == expected == 108_974_561_034_240_000
    assert f"{SPACE.size():.3g}" == "1.09e+17"


def test_min_and_max_subnets():
    lo, hi = SPACE.min(), SPACE.max()
    assert lo.resolution == 128 and hi.resolution == 256
    assert [s.width for s in lo.stages] == [16, 16, 16, 48, 80, 144, 160]
    assert [s.width for s in hi.stages] == [24, 32, 48, 96, 160, 288, 320]
    assert [s.depth for s in hi.stages] == [2, 5, 6, 5, 6, 6, 6]


def test_named_models_round_trip_in_reference_shape(reference_models):
    for name, d in list(reference_models["models"].items()) + list(reference_models["hss"].items()):
        a = ArchConfig.from_dict(d)
        out = a.to_dict()
        assert out["stages"] == d["stages"], name
        assert (out["resolution"], out["stem_width"]) == (d["resolution"], d["stem_width"])
        assert ArchConfig.from_json(a.to_json()) == a
        assert hash(ArchConfig.from_dict(json.loads(json.dumps(out)))) == hash(a)


def test_load_and_save(tmp_path):
    a = SPACE.sample(rng=3)
    a.save(tmp_path / "a.json")
    assert ArchConfig.load(tmp_path / "a.json") == a
    (tmp_path / "wrapped.json").write_text(json.dumps({"arch": a.to_dict(), "mflops": 1}))
    assert ArchConfig.load(tmp_path / "wrapped.json") == a
    with pytest.raises(ArchError, match="does not exist"):
        ArchConfig.load(tmp_path / "missing.json")


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d.update(resolution=200), r"resolution = 200 is not allowed; choose one of "
                                         r"128, 160, 176, 192, 224, 256"),
    (lambda d: d.update(stem_width=20), r"stem_width = 20 .* 16, 24"),
    (lambda d: d["stages"][2].update(width=50), r"stages\[2\] \(mbv3\)\.width = 50 .*"
                                                r"16, 24, 32, 40, 48"),
    (lambda d: d["stages"][1].update(expand=2), r"stages\[1\] \(mbv2\)\.expand = 2 .* 3, 4, 5, 6"),
    (lambda d: d["stages"][6].update(v_scale=5), r"stages\[6\] \(t4\)\.v_scale = 5 .* 2, 3, 4"),
    (lambda d: d["stages"][3].update(depth=6), r"stages\[3\] \(t1\)\.depth = 6 .* 1, 2, 3, 4, 5"),
    (lambda d: d["stages"][4].update(mlp_ratio=2.5), r"mlp_ratio = 2\.5"),
    (lambda d: d["stages"][0].update(expand=3), r"mbv2_1\)\.expand = 3 .* 1$"),
    (lambda d: d["stages"][3].update(kernel=3), r"unknown keys \['kernel'\]"),
    (lambda d: d["stages"][5].pop("v_scale"), r"stages\[5\] \(t3\) is missing 'v_scale'"),
    (lambda d: d["stages"].pop(), r"'stages' must be a list of 7"),
    (lambda d: d["stages"][0].update(name="t1"), r"stage 0 must be 'mbv2_1'"),
    (lambda d: d.pop("resolution"), r"missing 'resolution'"),
])
def test_validation_names_field_value_and_allowed(mutate, message):
    d = SPACE.max().to_dict()
    mutate(d)
    with pytest.raises(ArchError, match=message):
        ArchConfig.from_dict(d)


def test_direct_construction_is_validated_and_frozen():
    a = SPACE.min()
    with pytest.raises(ArchError, match="stages\\[3\\] \\(t1\\) must be a TransformerStage"):
        ArchConfig(128, 16, a.stages[:3] + (ConvStage(1, 48, 3, 3),) + a.stages[4:])
    with pytest.raises(ArchError, match="True"):
        ArchConfig(128, True, a.stages)  # bools are not widths
    with pytest.raises(AttributeError):
        a.resolution = 160  # type: ignore[misc]
    b = a.replace(resolution=160, t4=TransformerStage(2, 320, 5, 4))
    assert b.resolution == 160 and b.stage("t4").width == 320 and a.resolution == 128
    assert ArchConfig.from_json(b.to_json()) == b
    with pytest.raises(ArchError, match="not valid JSON"):
        ArchConfig.from_json("{nope")


def test_encode_decode_round_trip_and_sampling_is_uniform_per_dimension():
    s = SearchSpace(seed=1)
    enc = s.sample_encoded(60_000)
    for j, choices in enumerate(s.choices):
        vals, counts = np.unique(enc[:, j], return_counts=True)
        assert list(vals) == list(choices)
        expected = len(enc) / len(choices)
        assert np.all(np.abs(counts - expected) < 6 * math.sqrt(expected)), s.columns[j]
    for row in enc[:200]:
        assert np.array_equal(s.encode(s.decode(row)), row)


def test_seeded_sampling_is_reproducible():
    a, b = SearchSpace(seed=7), SearchSpace(seed=7)
    assert [a.sample() for _ in range(5)] == [b.sample() for _ in range(5)]
    assert [a.sample_at(300, 320) for _ in range(5)] == [b.sample_at(300, 320) for _ in range(5)]
    assert SPACE.sample(rng=5) == SPACE.sample(rng=5)


@pytest.mark.parametrize("level", LEVELS)
def test_sample_at_every_level_lands_in_the_window(level):
    s = SearchSpace(seed=level)
    archs = [s.sample_at(level, level + 20) for _ in range(300)]
    f = np.array([flops(a) for a in archs])
    assert f.min() >= level and f.max() <= level + 20
    assert len(set(archs)) > 250  # draws are not a handful of repeats


def test_sample_at_rejects_windows_outside_the_space():
    with pytest.raises(ArchError, match=r"spans \[37\.37, 3191\.46\]"):
        SPACE.sample_at(5, 30)
    with pytest.raises(ArchError, match="spans"):
        SPACE.sample_at(3200, 4000)
    with pytest.raises(ArchError, match="lo <= hi"):
        SPACE.sample_at(300, 200)
    with pytest.raises(ArchError, match="widen the window"):
        SearchSpace(seed=0).sample_at(37.4, 37.5, max_draws=20_000)


def test_mutate_and_crossover_always_valid_and_seedable():
    s = SearchSpace(seed=0)
    a, b = SPACE.min(), SPACE.max()
    for i in range(300):
        m = s.mutate(a if i % 2 else b, prob=0.5)
        c = s.crossover(a, m)
        assert isinstance(m, ArchConfig) and isinstance(c, ArchConfig)  # validated on creation
    ea, eb = s.encode(a), s.encode(b)
    for _ in range(50):
        c = s.encode(s.crossover(a, b))
        assert np.all((c == ea) | (c == eb))
    assert s.mutate(a, prob=0.0) == a
    assert s.mutate(b, 0.3, rng=11) == s.mutate(b, 0.3, rng=11)
    assert s.crossover(a, b, rng=3) == s.crossover(a, b, rng=3)


def test_release_rules_space_draws_mutates_and_crosses_inside_them():
    from toolkit.flops import flops
    from toolkit.release.arch import release_violations

    space = SearchSpace(seed=3, rules="release")
    rng = np.random.default_rng(3)
    enc = space.sample_encoded(3000, rng)
    assert len(enc) == 3000 and space.allowed_encoded(enc).all()
    free = SearchSpace(seed=3).sample_encoded(3000, rng)
    assert not space.allowed_encoded(free).all()  # the rules do exclude subnets
    archs = [space.decode(r) for r in enc[:50]]
    for a, b in zip(archs, archs[1:]):
        assert release_violations(space.mutate(a, 0.5, rng)) == []
        assert release_violations(space.crossover(a, b, rng)) == []
    a = space.sample_at(140, 160, rng)
    assert release_violations(a) == [] and 140 <= flops(a) <= 160
    with pytest.raises(ArchError, match="rules = 'x'"):
        SearchSpace(rules="x")
