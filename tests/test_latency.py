"""Kernels, the phone-table importer, predictors (save/load, corrupt files), Table 2."""

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from toolkit.latency import (
    LatencyPredictor,
    LatencyTable,
    PredictorError,
    TableError,
    import_lut,
    kernel_codes,
    kernels,
    load_predictor,
    parse_key,
)
from toolkit.space import SPACE, SearchSpace
from toolkit.zoo import get_model_info, list_models

LUT = Path(__file__).resolve().parents[2] / "shared" / "data" / "elasticvit_block_lut"
PHONES = ("pixel1", "pixel4", "pixel6", "xiaomi11")
needs_lut = pytest.mark.skipif(not LUT.is_dir(), reason="../shared/data not beside the checkout")


@pytest.fixture(scope="module")
def tables():
    return {p: import_lut(LUT / f"{p}.json") for p in PHONES}


@needs_lut
def test_importer_every_random_subnet_finds_all_its_keys(tables):
    sp = SearchSpace(seed=5)
    archs = [sp.sample() for _ in range(1000)] + [SPACE.min(), SPACE.max()]
    for t in tables.values():
        assert len(t) == 12116
        for a in archs:
            t.lookup_sum(kernels(a))  # raises TableError on a missing key
    # every key parses back to itself
    assert all(parse_key(k).key == k for k in tables["pixel4"].rows)


@needs_lut
def test_table_sums_reproduce_the_paper(tables):
    for name in list_models():
        info = get_model_info(name)
        if info.paper_device:
            got = tables[info.paper_device].lookup_sum(kernels(info.arch))
            assert got == pytest.approx(info.paper_latency_ms, rel=0.05), name


def test_kernels_scalar_matches_vectorized_and_conventions_differ():
    a = get_model_info("elasticvit_m").arch  # resolution 224: T4 grid 3 (table) vs 4 (network)
    codes, active = kernel_codes(SPACE.encode(a)[None])
    assert [k.code for k in kernels(a)] == codes[0][active[0]].tolist()
    table = {k.kind: k.hw for k in kernels(a, "table")}
    net = {k.kind: k.hw for k in kernels(a, "network")}
    assert table["head"] == 3 and net["head"] == 4
    with pytest.raises(ValueError, match="convention"):
        kernels(a, "ceil")


def test_bad_tables_are_refused(tmp_path):
    (tmp_path / "t.json").write_text(json.dumps({"conv_1_2": 1.0}))
    with pytest.raises(TableError, match="malformed kernel key"):
        import_lut(tmp_path / "t.json")
    (tmp_path / "t.json").write_text(json.dumps({"firstconv_128_3_16_2_3": -1}))
    with pytest.raises(TableError, match="must be > 0"):
        import_lut(tmp_path / "t.json")


@needs_lut
def test_predictor_round_trip_and_corrupt_file(tables, tmp_path):
    t = tables["pixel6"]
    codes, ms = t.arrays()
    p = LatencyPredictor.fit("pixel6", codes, ms, max_iter=60)
    sp = SearchSpace(seed=9)
    enc = np.stack([SPACE.encode(sp.sample()) for _ in range(200)])
    before = p.predict_encoded(enc)
    p.save(tmp_path / "p.json")
    q = LatencyPredictor.load(tmp_path / "p.json")
    np.testing.assert_array_equal(q.predict_encoded(enc), before)
    assert q.provenance["trained_on"] == len(t)
    truth = np.array([t.lookup_sum(kernels(a)) for a in [SPACE.decode(e) for e in enc]])
    assert np.mean(np.abs(before / truth - 1) <= 0.10) > 0.95
    (tmp_path / "cut.json").write_text((tmp_path / "p.json").read_text()[:5000])
    with pytest.raises(PredictorError, match="not valid JSON.*regenerate"):
        LatencyPredictor.load(tmp_path / "cut.json")
    d = json.loads((tmp_path / "p.json").read_text())
    del d["kinds"]["attn"]
    (tmp_path / "partial.json").write_text(json.dumps(d))
    with pytest.raises(PredictorError, match="kinds.attn.*damaged"):
        LatencyPredictor.load(tmp_path / "partial.json")
    (tmp_path / "other.json").write_text(json.dumps({"format": "something"}))
    with pytest.raises(PredictorError, match="not an evit latency predictor"):
        LatencyPredictor.load(tmp_path / "other.json")


def test_shipped_predictors_load_on_a_fresh_machine(monkeypatch, tmp_path):
    monkeypatch.setenv("EVIT_PREDICTORS", str(tmp_path))  # no user predictors
    s1 = get_model_info("elasticvit_s1")
    for phone in PHONES:
        p = load_predictor(phone)
        assert p.device == phone and p.convention == "table"
    assert load_predictor("pixel4").predict(s1.arch) == pytest.approx(21.0, rel=0.05)
    with pytest.raises(PredictorError, match="evit-profile --device host"):
        load_predictor("host")


def test_table_save_load(tmp_path):
    t = LatencyTable("host", "network", "test")
    t.add(parse_key("firstconv_128_3_16_2_3"), 0.5, 0.01, 5)
    t.save(tmp_path / "t.json")
    back = LatencyTable.load(tmp_path / "t.json")
    assert back.rows == t.rows and back.convention == "network"


@pytest.mark.slow
def test_campaign_resumes_without_remeasuring(tmp_path, monkeypatch):
    from toolkit.devices.host import HostDevice
    from toolkit.latency.campaign import CampaignConfig, read_jsonl, run_campaign

    monkeypatch.setenv("EVIT_CACHE", str(tmp_path / "cache"))
    dev = HostDevice()
    calls = []
    real = dev.run_benchmark
    dev.run_benchmark = lambda *a, **k: (calls.append(a[0].graph), real(*a, **k))[1]
    cfg = CampaignConfig(kernels=18, subnets=0, runs=5, warmup=1, repeats=1)

    class Stop(Exception):
        pass

    def stop_after_five(msg):
        if msg.startswith("kernel 5/"):
            raise Stop

    with pytest.raises(Stop):
        run_campaign(dev, tmp_path / "c", cfg, progress=stop_after_five)
    log = tmp_path / "c" / "kernels.jsonl"
    assert len(read_jsonl(log)) == 5
    with open(log, "a") as f:
        f.write('{"code": 12, "key": "torn')  # interrupted mid-write
    first = set(calls)
    calls.clear()
    summary = run_campaign(dev, tmp_path / "c", cfg, progress=lambda m: None)
    assert summary["kernels"] == 18 and len(read_jsonl(log)) == 18
    assert not first & set(calls)  # nothing measured twice
    assert (tmp_path / "c" / "host.json").is_file()
    with pytest.raises(ValueError, match="different configuration"):
        run_campaign(dev, tmp_path / "c", CampaignConfig(kernels=30, subnets=0))


@needs_lut
def test_few_kernels_and_an_overhead_fit(tables, tmp_path):
    """30 measured kernels (linear base + trees) and per-kind factors from whole subnets."""
    from toolkit.latency.sampling import cover, kernel_frequencies

    t = tables["pixel4"]
    codes, ms = t.arrays()
    lookup = dict(zip(codes.tolist(), ms.tolist()))
    fcodes, counts = kernel_frequencies(3000, seed=3)
    sel = cover(fcodes, counts, 30)
    p = LatencyPredictor.fit("new-phone", sel, np.array([lookup[c] for c in sel.tolist()]),
                             max_iter=100)
    sp = SearchSpace(seed=8)
    enc = np.stack([SPACE.encode(sp.sample()) for _ in range(300)])
    truth = np.array([t.lookup_sum(kernels(SPACE.decode(e))) for e in enc])
    # "measured" subnets: the table sum with attention 20% slower inside a network
    by_kind = p.kernel_sums_by_kind(enc)
    attn = list(p.kind_scale).index("attn")
    true_by_kind = np.stack([np.array([sum(lookup[k.code] for k in kernels(SPACE.decode(e))
                                           if k.kind == kind) for e in enc])
                             for kind in p.kind_scale], axis=1)
    measured = true_by_kind @ np.where(np.arange(6) == attn, 1.2, 1.0)
    before = np.mean(np.abs(p.predict_encoded(enc[100:]) / measured[100:] - 1) <= 0.10)
    p.fit_overhead(by_kind[:100], measured[:100])
    after = np.mean(np.abs(p.predict_encoded(enc[100:]) / measured[100:] - 1) <= 0.10)
    assert after >= 0.9 and after > before
    # given exact per-kind sums, the fit recovers the injected factors (exactly without ridge)
    kind_scale_30 = dict(p.kind_scale)
    p.fit_overhead(true_by_kind[:100], measured[:100], ridge=0.0)
    assert p.kind_scale == pytest.approx({k: 1.2 if k == "attn" else 1.0 for k in kind_scale_30})
    p.fit_overhead(true_by_kind[:100], measured[:100])
    assert p.kind_scale["attn"] > 1.1
    p.kind_scale = kind_scale_30
    assert np.mean(np.abs(p.predict_encoded(enc) / truth - 1) <= 0.25) > 0.9
    p.save(tmp_path / "p.json")
    q = LatencyPredictor.load(tmp_path / "p.json")
    np.testing.assert_array_equal(q.predict_encoded(enc), p.predict_encoded(enc))
    assert q.kind_scale == p.kind_scale
    # latency never falls when a kernel grows (linear base x monotone trees)
    from toolkit.latency.kernels import Kernel

    k = next(Kernel.from_code(c) for c in sel.tolist() if Kernel.from_code(c).kind == "ffn")
    wider = [dataclasses.replace(k, cout=w).code for w in range(k.cout, 321, 16)]
    preds = q.predict_kernels(np.array(wider))
    assert len(preds) > 1 and np.all(np.diff(preds) >= 0)


def test_version_1_predictor_files_still_load(tmp_path):
    p = load_predictor("pixel4")
    d = p.to_dict()
    d["version"] = 1
    del d["overhead"]["kind_scale"]
    for k in d["kinds"].values():
        k.pop("linear", None)
    (tmp_path / "v1.json").write_text(json.dumps(d))
    q = LatencyPredictor.load(tmp_path / "v1.json")
    assert set(q.kind_scale.values()) == {1.0}
    d["overhead"]["kind_scale"] = {"conv": 1.0}
    (tmp_path / "bad.json").write_text(json.dumps(d))
    with pytest.raises(PredictorError, match="overhead.kind_scale.*firstconv"):
        LatencyPredictor.load(tmp_path / "bad.json")


@needs_lut
def test_overhead_form_is_chosen_by_leave_one_out(tables):
    """Six subnets of similar size: a ratio, not a line blind to the kernels; a cost that
    grows with the weights: the weights term; a real offset across the whole space: the
    line; enough subnets with one slow kind: per-kind factors."""
    from toolkit.latency.overhead import choose_overhead
    from toolkit.latency.sampling import random_subnets

    t = tables["pixel4"]
    codes, ms = t.arrays()
    p = LatencyPredictor.fit("new-phone", codes, ms, max_iter=100)
    rng = np.random.default_rng(0)
    narrow = random_subnets(6, 3, (70, 140))
    sums, by_kind = p.kernel_sum_encoded(narrow), p.kernel_sums_by_kind(narrow)
    mb = p.weights_mb(narrow)
    measured = 1.45 * sums * (1 + 0.03 * rng.standard_normal(6))  # 3% measurement noise
    form, loo = choose_overhead(p, sums, by_kind, mb, measured, np.arange(6))
    assert set(loo) == {"ratio", "weights", "linear"}  # per-kind needs 14 subnets
    assert form != "linear" and loo["ratio"] < loo["linear"]
    assert p.offset_ms == 0.0 and p.ms_per_mb * mb.mean() < 0.05 * measured.mean()
    np.testing.assert_allclose(p.predict_encoded(narrow), 1.45 * sums, rtol=0.06)
    # the same subnets, each MB of weights adding 0.3 ms to 1.2 x the kernel sum
    measured = (1.2 * sums + 0.3 * mb) * (1 + 0.01 * rng.standard_normal(6))
    form, loo = choose_overhead(p, sums, by_kind, mb, measured, np.arange(6))
    assert form == "weights" and loo["weights"] < 0.5 * loo["ratio"]
    assert p.ms_per_mb == pytest.approx(0.3, rel=0.2) and p.scale == pytest.approx(1.2, rel=0.1)
    np.testing.assert_allclose(p.predict_encoded(narrow), measured, rtol=0.03)
    # whole space, constant 4 ms on top of 1.1 x the kernel sum
    sp = SearchSpace(seed=4)
    wide = np.stack([SPACE.encode(sp.sample()) for _ in range(10)])
    sums, by_kind = p.kernel_sum_encoded(wide), p.kernel_sums_by_kind(wide)
    mb = p.weights_mb(wide)
    measured = (1.1 * sums + 4.0) * (1 + 0.01 * rng.standard_normal(10))
    form, loo = choose_overhead(p, sums, by_kind, mb, measured, np.arange(10))
    assert form == "linear" and p.offset_ms == pytest.approx(4.0, abs=1.0)
    # 20 subnets, attention 40% slower inside a network than alone
    many = np.stack([SPACE.encode(sp.sample()) for _ in range(20)])
    sums, by_kind = p.kernel_sum_encoded(many), p.kernel_sums_by_kind(many)
    measured = by_kind @ np.where(np.array(list(p.kind_scale)) == "attn", 1.4, 1.0)
    form, loo = choose_overhead(p, sums, by_kind, p.weights_mb(many), measured, np.arange(20))
    assert form == "per-kind" and p.kind_scale["attn"] > 1.2  # the ridge pulls towards 1
    assert loo["per-kind"] < min(loo["ratio"], loo["linear"])


@needs_lut
def test_campaign_from_before_min_secs_resumes(tmp_path, monkeypatch):
    """A campaign.json written before a config key existed still resumes (the key takes its
    default); a changed value is still refused."""
    from toolkit.devices.host import HostDevice
    from toolkit.latency.campaign import CampaignConfig, run_campaign

    monkeypatch.setenv("EVIT_CACHE", str(tmp_path / "cache"))
    cfg = CampaignConfig(kernels=18, subnets=0, runs=5, warmup=1, repeats=1)
    run_campaign(HostDevice(), tmp_path / "c", cfg, progress=lambda m: None)
    f = tmp_path / "c" / "campaign.json"
    old = json.loads(f.read_text())
    del old["config"]["min_secs"], old["config"]["subnet_spread"]
    f.write_text(json.dumps(old))
    import toolkit.latency.campaign as prof

    seen = []
    real = prof.campaign_subnets
    monkeypatch.setattr(prof, "campaign_subnets", lambda c: (seen.append(c), real(c))[1])
    assert run_campaign(HostDevice(), tmp_path / "c", cfg, progress=lambda m: None)[
        "kernels"] == 18
    assert seen[0].subnet_spread == "uniform"  # the subnets such a campaign measured
    with pytest.raises(ValueError, match="different configuration"):
        run_campaign(HostDevice(), tmp_path / "c", dataclasses.replace(cfg, min_secs=0.5))


@needs_lut
def test_a_kind_measured_on_one_grid_shares_the_base(tables, monkeypatch):
    """FFN kernels measured on one token grid only: the roofline shared by all kinds predicts
    the 2 x 2 grid within a few x; a base of the kind's own (3 collinear kernels) + trees was
    off by ~200x (the host demo's campaign: 10x)."""
    import toolkit.latency.predictor as P
    from toolkit.latency.kernels import Kernel
    from toolkit.latency.sampling import cover, kernel_frequencies

    t = tables["pixel4"]
    codes, ms = t.arrays()
    lookup = dict(zip(codes.tolist(), ms.tolist()))
    fcodes, counts = kernel_frequencies(3000, seed=3)
    others = [c for c in cover(fcodes, counts, 20).tolist() if Kernel.from_code(c).kind != "ffn"]
    ffn = [Kernel.from_code(c) for c in codes.tolist() if Kernel.from_code(c).kind == "ffn"]
    top = max(k.hw for k in ffn)
    train = np.array(others + [k.code for k in ffn if k.hw == top][:3])
    small = np.array([k.code for k in ffn if k.hw == 2])
    truth = np.array([lookup[c] for c in small.tolist()])
    y = np.array([lookup[c] for c in train.tolist()])

    p = LatencyPredictor.fit("new-phone", train, y, max_iter=100)
    assert not p.kinds["ffn"].trees and p.kinds["ffn"].linear  # one grid, 3 kernels: shared
    assert p.kinds["mbconv"].trees  # several grids: its own base and trees
    ratio = p.predict_kernels(small) / truth
    assert 1 / 3 < np.median(ratio) < 3 and ratio.max() < 6
    monkeypatch.setattr(P, "POOLED_BELOW", 0)  # each kind's own base and trees
    q = LatencyPredictor.fit("new-phone", train, y, max_iter=100)
    assert np.median(q.predict_kernels(small) / truth) > 10


@needs_lut
def test_weights_term_round_trips_and_version_2_loads(tables, tmp_path):
    from toolkit.latency.sampling import random_subnets

    t = tables["pixel4"]
    codes, ms = t.arrays()
    p = LatencyPredictor.fit("new-phone", codes[::8], ms[::8], max_iter=50)
    enc = random_subnets(20, 5, (70, 140))
    sums = p.kernel_sum_encoded(enc)
    p.weight_classes = 10
    mb = p.weights_mb(enc)
    assert np.all((mb > 1) & (mb < 200))  # a 70-140-MFLOPs subnet: tens of MB of fp32
    p.fit_overhead(sums, 0.9 * sums + 0.05 * mb, weights_mb=mb)
    assert p.scale == pytest.approx(0.9, rel=1e-6) and p.ms_per_mb == pytest.approx(0.05)
    p.save(tmp_path / "p.json")
    d = json.loads((tmp_path / "p.json").read_text())
    assert d["version"] == 3 and d["overhead"]["weight_classes"] == 10
    q = LatencyPredictor.load(tmp_path / "p.json")
    np.testing.assert_allclose(q.predict_encoded(enc), 0.9 * sums + 0.05 * mb)
    # a version 2 file (before the weights term) predicts as before
    d["version"] = 2
    del d["overhead"]["ms_per_mb"], d["overhead"]["weight_classes"]
    (tmp_path / "v2.json").write_text(json.dumps(d))
    v2 = LatencyPredictor.load(tmp_path / "v2.json")
    assert v2.ms_per_mb == 0.0
    np.testing.assert_allclose(v2.predict_encoded(enc), 0.9 * sums)


def test_campaign_subnets_spread_over_weights():
    from toolkit.flops import params
    from toolkit.latency.campaign import CampaignConfig, campaign_subnets
    from toolkit.latency.sampling import random_subnets

    cfg = CampaignConfig(subnets=6, mflops=(70.0, 140.0), num_classes=10)
    archs = campaign_subnets(cfg)
    w = np.array([params(a, 10) for a in archs])
    assert len({a.to_json() for a in archs}) == 6
    assert list(w[:3]) == sorted(w[:3]) and list(w[3:]) == sorted(w[3:])
    assert w.min() == w[0] and w.max() == w[-1]  # smallest first, largest last
    pool = [params(SPACE.decode(e), 10) for e in random_subnets(240, cfg.seed + 1, cfg.mflops)]
    assert w.min() == min(pool) and w.max() == max(pool)  # the candidates' whole range
    # each half of the list (fit / check) spans it
    assert w[:3].max() > np.median(pool) > w[3:].min()
    with pytest.raises(ValueError, match="subnet_spread = 'even'.*weights, uniform"):
        campaign_subnets(dataclasses.replace(cfg, subnet_spread="even"))
    uni = campaign_subnets(dataclasses.replace(cfg, subnet_spread="uniform"))
    assert [a.to_json() for a in uni] == [SPACE.decode(e).to_json()
                                          for e in random_subnets(6, 1, (70.0, 140.0))]


def test_build_all_converts_what_is_missing_whole_subnets_first(tmp_path, monkeypatch):
    from toolkit.latency import campaign
    from toolkit.latency.campaign import Build, build_all

    monkeypatch.setenv("EVIT_CACHE", str(tmp_path / "cache"))
    arch = SPACE.min().to_json()
    ks = [Build("kernel", k.code, 10) for k in kernels(SPACE.min())[:3]]
    cached = ks[0].path()
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"converted before")
    built = []
    monkeypatch.setattr(campaign, "_build", lambda b: built.append(b) or 1.0)
    lines = []
    build_all([*ks, Build("subnet", arch, 10), ks[1]], 1, lines.append)
    assert built == [Build("subnet", arch, 10), ks[1], ks[2]]  # once each
    assert lines[0] == "converting 1 whole subnet(s), 2 kernel(s) to .tflite on 1 worker(s)"
    assert lines[1].startswith("  converted 1/3 subnet of ") and len(lines) == 4
    built.clear()
    build_all([ks[0]], 2, lines.append)  # all in the cache: no worker starts
    assert built == [] and len(lines) == 4


def test_single_prediction_equals_the_vectorized_one():
    from toolkit.latency import load_predictor
    from toolkit.space import SearchSpace

    sp = SearchSpace(5)
    archs = [sp.sample() for _ in range(1500)] + [SPACE.min(), SPACE.max()]
    for dev in ("pixel1", "pixel4", "pixel6", "xiaomi11"):
        p = load_predictor(dev)
        vec = p.predict_encoded(SPACE.encode_many(archs))
        fresh = load_predictor(dev)  # single calls first: its kernel caches start empty
        one = np.array([fresh.predict(a) for a in archs])
        assert np.allclose(one, vec, rtol=1e-12, atol=1e-9), dev


def test_evit_predict_named_model_arch_files_and_devices(tmp_path, capsys):
    from toolkit.cli.main import main as evit_main

    assert evit_main(["predict", "--model", "elasticvit_s1", "--device", "Google Pixel 4",
                      "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 1 and rows[0]["device"] == "pixel4"
    assert 19 < rows[0]["latency_ms"] < 23  # the paper's Table 2: 21.0 ms on a Pixel 4
    assert evit_main(["predict", "--model", "elasticvit_s1"]) == 0  # every device: a table
    out = capsys.readouterr().out
    assert all(d in out for d in ("pixel1", "pixel4", "pixel6", "xiaomi11"))
    lines = tmp_path / "many.jsonl"
    lines.write_text('{"name": "a", "arch": ' + SPACE.min().to_json() + '}\n\n'
                     + SPACE.max().to_json() + "\n")
    assert evit_main(["predict", "--archs", str(lines), "--device", "Snapdragon 888",
                      "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["subnet"] for r in rows] == ["a", "line 3"] and rows[0]["latency_ms"] < \
        rows[1]["latency_ms"]
    lines.write_text('{"arch": {"resolution": 999}}\n')
    assert evit_main(["predict", "--archs", str(lines)]) == 2
    assert "line 1" in capsys.readouterr().err
    assert evit_main(["predict", "--model", "elasticvit_s1", "--device", "Pixel 7"]) == 2
    assert "did you mean 'Pixel 6' (pixel6)" in capsys.readouterr().err


def test_tree_walker_equals_the_librarys_own_predict():
    """The trees come out of scikit-learn through its public ``tree_`` arrays; evit's walker
    over them gives what the library's own ``DecisionTreeRegressor.predict`` gives."""
    from toolkit.latency.kernels import FEATURES, MONOTONE, Kernel, feature_matrix
    from toolkit.latency.predictor import LEARNING_RATE, KindModel, boost, tree_arrays
    from toolkit.latency.sampling import kernel_frequencies

    codes, _ = kernel_frequencies(500, seed=1, convention="network")
    rng = np.random.default_rng(0)
    for kind in ("mbconv", "attn"):
        X = feature_matrix(kind, np.array([c for c in codes.tolist()
                                           if Kernel.from_code(c).kind == kind]))
        y = np.log1p(X[:, 0]) + 0.1 * rng.standard_normal(len(X))
        baseline, trees = boost(X, y, max_iter=30,
                                monotone=[MONOTONE.get(f, 0) for f in FEATURES[kind]])
        model = KindModel(kind, baseline, [tree_arrays(t, LEARNING_RATE) for t in trees])
        for Z in (X, rng.uniform(X.min(0), X.max(0), size=(1000, X.shape[1]))):
            library = baseline + LEARNING_RATE * sum(t.predict(Z) for t in trees)
            np.testing.assert_allclose(model.raw(Z), library, rtol=0, atol=1e-12)
        assert all(t["leaf"][0] == 0 for t in model.trees)  # each tree splits


def test_overhead_is_set_through_the_predictors_public_api():
    from toolkit.latency.overhead import Overhead, choose

    p = load_predictor("pixel4")
    sp = SearchSpace(seed=2)
    enc = np.stack([SPACE.encode(sp.sample()) for _ in range(8)])
    sums, by_kind, mb = p.kernel_sum_encoded(enc), p.kernel_sums_by_kind(enc), p.weights_mb(enc)
    form, loo, fit = choose(sums, by_kind, mb, 1.3 * sums, np.arange(8))
    assert isinstance(fit, Overhead) and form in loo
    p.set_overhead(fit)
    assert p.overhead == fit
    np.testing.assert_allclose(p.predict_encoded(enc), fit.predict(by_kind, mb))
    np.testing.assert_allclose(p.predict_encoded(enc), 1.3 * sums, rtol=1e-6)
