"""Issue 22: the release's search details, the accuracy predictor, rerank, progress and output."""

import json

import numpy as np
import pytest
import torch
from conftest import SMALL, proxy_fitness

from toolkit.flops import flops
from toolkit.search.evolution import (
    SearchConfig,
    SearchError,
    random_search,
    rerank,
    search,
)
from toolkit.search.predictor import (
    AccuracyPredictor,
    AccuracyPredictorError,
    Measurements,
    kendall_tau,
)
from toolkit.space import COLUMNS, SPACE, ArchConfig, SearchSpace

# --------------------------------------------------------------------------- operators


def test_release_mutation_is_biased_toward_the_smallest_choice():
    """The release's get_mutation: a re-drawn value is uniform with dim_mutation_prob (0.45),
    else min(choices); all depths re-drawn together with s_prob; resolution unbiased."""
    sp, g = SearchSpace(0), np.random.default_rng(0)
    big, n = sp.max(), 6000
    rows = np.stack([sp.encode(sp.mutate(big, 1.0, g, uniform_prob=0.45, depth_prob=1.0))
                     for _ in range(n)])
    for col in ("t4.width", "t3.mlp_ratio", "mbv3.expand", "t2.depth", "mbv2.kernel"):
        j = COLUMNS.index(col)
        choices = sp.choices[j]
        want = 0.55 + 0.45 / len(choices)  # min outright, or min by the uniform draw
        got = float(np.mean(rows[:, j] == choices[0]))
        assert abs(got - want) < 0.025, (col, got, want)
    res = rows[:, COLUMNS.index("resolution")]
    assert abs(np.mean(res == 128) - 1 / 6) < 0.02  # not biased
    # depths move together: with depth_prob=0 and prob=0 nothing changes
    same = sp.mutate(big, 0.0, g, uniform_prob=0.45, depth_prob=0.0)
    assert same == big
    # all depths re-drawn together with depth_prob, independent of prob
    d = [j for j, c in enumerate(COLUMNS) if c.endswith(".depth")]
    moved = np.stack([sp.encode(sp.mutate(big, 0.0, g, uniform_prob=0.45, depth_prob=0.4))
                      for _ in range(3000)])
    changed = np.any(moved[:, d] != sp.encode(big)[d], axis=1)
    assert 0.33 < changed.mean() < 0.41  # 0.4 x P(some depth differs from the max)
    assert not np.any(moved[:, [j for j in range(len(COLUMNS)) if j not in d]]
                      != sp.encode(big)[[j for j in range(len(COLUMNS)) if j not in d]])


def test_release_operators_keep_the_release_channel_rules():
    sp, g = SearchSpace(0, rules="release"), np.random.default_rng(1)
    a, b = sp.sample(g), sp.sample(g)
    for _ in range(500):
        m = sp.mutate(a, 0.5, g, uniform_prob=0.45, depth_prob=0.4)
        c = sp.crossover(a, b, g, groups=True)
        assert sp.allows(m) and sp.allows(c)
        a = m


def test_group_crossover_takes_each_kind_whole_from_one_parent():
    sp, g = SearchSpace(0), np.random.default_rng(2)
    a, b = sp.min(), sp.max()
    ea, eb = sp.encode(a), sp.encode(b)
    kinds = {"width": [j for j, c in enumerate(COLUMNS) if c.endswith("width")],
             "depth": [j for j, c in enumerate(COLUMNS) if c.endswith(".depth")]}
    mixed_uniform = 0
    for _ in range(300):
        row = sp.encode(sp.crossover(a, b, g, groups=True))
        for cols in kinds.values():
            assert np.all(row[cols] == ea[cols]) or np.all(row[cols] == eb[cols])
        row = sp.encode(sp.crossover(a, b, g))
        mixed_uniform += not (np.all(row[kinds["width"]] == ea[kinds["width"]])
                              or np.all(row[kinds["width"]] == eb[kinds["width"]]))
    assert mixed_uniform > 250  # the per-dimension crossover does mix widths


def test_search_config_defaults_are_the_releases_and_are_checked(pixel4):
    c = SearchConfig()
    assert (c.operators, c.dim_mutation_prob, c.depth_mutation_prob, c.mutation_prob,
            c.parents, c.mutations, c.crossovers, c.generations) == (
        "release", 0.45, 0.4, 0.2, 256, 128, 128, 40)
    with pytest.raises(SearchError, match="operators = 'x'.*release, uniform"):
        search(10, pixel4, proxy_fitness, SearchConfig(operators="x"))
    with pytest.raises(SearchError, match="dim_mutation_prob = 1.5"):
        search(10, pixel4, proxy_fitness, SearchConfig(dim_mutation_prob=1.5))
    u = search(12, pixel4, proxy_fitness, SearchConfig(**{**SMALL.__dict__,
                                                          "operators": "uniform"}))
    r = search(12, pixel4, proxy_fitness, SMALL)
    assert u["evaluated"] != r["evaluated"]  # the operators are really used


def test_progress_callback_reports_each_generation_with_the_best_so_far(pixel4):
    seen = []
    search(12, pixel4, proxy_fitness, SMALL, on_generation=lambda *a: seen.append(a))
    assert [s[0] for s in seen] == list(range(SMALL.generations + 1))
    assert all(s[1] == SMALL.generations for s in seen)
    best = [s[2] for s in seen]
    assert best == sorted(best) and seen[-1][3] >= SMALL.population


def test_random_search_draws_distinct_feasible_subnets(pixel4):
    r = random_search(12, pixel4, proxy_fitness, 50, seed=1)
    assert len(r["evaluated"]) == 50
    for k in r["evaluated"]:
        assert 0.85 * 12 - 1e-9 <= pixel4.of(ArchConfig.from_json(k)) <= 12
    assert r["accuracy"] == max(r["evaluated"].values())
    with pytest.raises(SearchError, match="infeasible"):
        random_search(0.1, pixel4, proxy_fitness, 5)


def test_random_search_resumes_without_measuring_a_subnet_twice(pixel4, tmp_path):
    state, calls = tmp_path / "state.json", []

    class Killed(Exception):
        pass

    def dies_on_third_chunk(archs):
        if len(calls) == 2:
            raise Killed
        calls.append(len(archs))
        return proxy_fitness(archs)

    with pytest.raises(Killed):
        random_search(12, pixel4, dies_on_third_chunk, 30, seed=1, state_path=state, chunk=8)
    assert calls == [8, 8] and len(json.loads(state.read_text())["scores"]) == 16
    measured = []
    r = random_search(12, pixel4, lambda a: measured.append(len(a)) or proxy_fitness(a), 30,
                      seed=1, state_path=state, chunk=8)
    assert sum(measured) == 30 - 16  # only the subnets the killed run had not measured
    assert r == random_search(12, pixel4, proxy_fitness, 30, seed=1)  # same as uninterrupted
    with pytest.raises(SearchError, match="different search"):
        random_search(12, pixel4, proxy_fitness, 31, seed=1, state_path=state)


def test_rerank_measures_the_top_k_and_keeps_the_best_real(pixel4):
    r = search(12, pixel4, proxy_fitness, SMALL)
    calls = []

    def real(archs):  # "real" fitness disagrees with the proxy: it prefers narrow t2
        calls.extend(archs)
        return [1 - a.stages[4].width / 1000 for a in archs]

    out = rerank(r, pixel4, real, k=5)
    assert len(calls) == 5 and len(out["reranked"]) == 5
    top = sorted(r["evaluated"], key=lambda k: -r["evaluated"][k])[:5]
    assert set(out["reranked"]) == set(top)
    assert out["accuracy"] == max(real([ArchConfig.from_json(k) for k in top]))
    assert out["predicted"] == r["evaluated"][out["arch"].to_json()]


# --------------------------------------------------------------------------- data splits


def test_the_digits_search_split_is_held_out_from_training():
    from toolkit.data.datasets import DigitsDataset

    tr, va, se = (DigitsDataset(s, augment=False) for s in ("train", "val", "search"))
    key = lambda ds: {x.numpy().tobytes() + bytes([int(y)]) for x, y in zip(ds.x, ds.y)}  # noqa
    assert not key(tr) & key(se) and not key(va) & key(se) and not key(tr) & key(va)
    assert (len(tr), len(va), len(se)) == (1151, 359, 287)


def test_default_fitness_sizes(supernet):
    from toolkit.search.accuracy import AccuracyEvaluator, default_sizes

    assert default_sizes(None) == (128, 287)
    calib, n = default_sizes("/data/imagenet")
    assert calib == 65 * 96 and 0.5 / np.sqrt(n) <= 0.005  # SE <= 0.5% at any accuracy
    ev = AccuracyEvaluator.from_datasets(supernet, None)
    assert len(ev.labels) == 287 and len(ev.calib) == 128
    assert ev.standard_error == pytest.approx(0.5 / np.sqrt(287))


def _folder(root, per_class, split, size=40):
    from PIL import Image

    g = np.random.default_rng(len(str(root / split)))
    for c in ("a", "b"):
        d = root / split / c
        d.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            Image.fromarray(g.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(
                d / f"{i}.png")


def test_a_folder_search_split_comes_from_search_and_streams(tmp_path):
    from toolkit.search.accuracy import AccuracyEvaluator
    from toolkit.supernet import Supernet

    _folder(tmp_path, 6, "train")
    _folder(tmp_path, 2, "val")
    net = Supernet(num_classes=2).eval()
    warned = []
    ev = AccuracyEvaluator.from_datasets(net, tmp_path, calib_images=4, search_images=5,
                                         image_size=64, warn=warned.append)
    assert warned and "no search/ folder" in warned[0] and len(ev.labels) == 5
    _folder(tmp_path, 3, "search")
    warned.clear()
    ev = AccuracyEvaluator.from_datasets(net, tmp_path, calib_images=4, image_size=64,
                                         warn=warned.append)
    assert not warned and len(ev.labels) == 6  # all of search/, not train/
    assert all("search" in str(ev.images.dataset.samples[i][0]) for i in ev.images.indices)
    top1 = ev.evaluate([SPACE.min()])[0]
    assert 0 <= top1 <= 1


# --------------------------------------------------------------------------- predictor


def _synthetic(n, seed=0, noise=0.003):
    """A smooth made-up accuracy of the encoding (for fitting; the real thing is measured in
    benchmarks/search_predictor.py)."""
    g = np.random.default_rng(seed)
    enc = SPACE.sample_encoded(n, g)
    mf = np.asarray([flops(SPACE.decode(e), 10) for e in enc])
    y = 0.6 + 0.05 * np.log(mf) / np.log(3200) * 5 - 0.02 * (enc[:, 0] == 128)
    return enc, np.clip(y + g.normal(0, noise, n), 0, 1)


def test_predictor_fits_ranks_and_round_trips(tmp_path):
    enc, y = _synthetic(200)
    m = AccuracyPredictor.fit(enc, y, 10)
    te, ty = _synthetic(100, seed=1)
    assert kendall_tau(m.predict_encoded(te), ty) > 0.7 and m.info["kind"] == "ridge"
    mlp = AccuracyPredictor.fit(enc[:80], y[:80], 10, kind="mlp")
    assert len(mlp.members) == 5 and len(mlp.members[0]) == 2
    assert kendall_tau(mlp.predict_encoded(te), ty) > 0.4
    p = tmp_path / "acc.json"
    m.save(p)
    m2 = AccuracyPredictor.load(p)
    assert np.allclose(m2.predict_encoded(te), m.predict_encoded(te))
    assert json.loads(p.read_text())["format"] == "evit-accuracy-predictor"
    with pytest.raises(AccuracyPredictorError, match="at least 10"):
        AccuracyPredictor.fit(enc[:5], y[:5], 10)


@pytest.mark.parametrize("edit,field", [
    (lambda d: d.update(format="x"), "format/version"),
    (lambda d: d["features"]["choices"][0].append(999), "features"),
    (lambda d: d["members"][0][0]["weight"][0].__setitem__(0, float("nan")), "weight"),
    (lambda d: d["members"][0][-1].update(bias=[0.0, 1.0]), "bias"),
    (lambda d: d.update(members=[]), "members"),
    (lambda d: d.update(x_std=[0.0] * len(d["x_std"])), "x_std"),
    (lambda d: d.update(y_mean=7), "y_mean"),
    (lambda d: d.update(num_classes=True), "num_classes"),
])
def test_a_damaged_predictor_is_refused_naming_the_field(tmp_path, edit, field):
    enc, y = _synthetic(40)
    d = AccuracyPredictor.fit(enc, y, 10, kind="ridge").to_dict()
    edit(d)
    p = tmp_path / "bad.json"
    p.write_text(json.dumps(d))
    with pytest.raises(AccuracyPredictorError, match=field):
        AccuracyPredictor.load(p)


def test_a_pickle_is_not_a_predictor(tmp_path):
    import pickle

    p = tmp_path / "p.json"
    p.write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(AccuracyPredictorError, match="not an accuracy predictor"):
        AccuracyPredictor.load(p)


def test_measurements_resume_and_refuse_another_supernet(tmp_path):
    path = tmp_path / "m.json"
    header = {"supernet_sha256": "ab", "calib_images": 4}
    archs = [SPACE.sample(np.random.default_rng(i)) for i in range(8)]
    calls = []

    class Stop(Exception):
        pass

    def real(batch):
        calls.extend(batch)
        if len(calls) == 4:
            raise Stop
        return [0.5] * len(batch)

    with pytest.raises(Stop):
        Measurements(path, header).collect(real, archs, 6)
    assert len(Measurements(path, header).top1) == 3  # every finished one was kept
    calls.clear()
    done = Measurements(path, header).collect(lambda b: calls.extend(b) or [0.7] * len(b),
                                              archs, 6)
    assert done == 3 and len(calls) == 3 and archs[0] not in calls
    with pytest.raises(AccuracyPredictorError, match="another supernet"):
        Measurements(path, {**header, "supernet_sha256": "cd"})
    path.write_text("{torn")
    with pytest.raises(AccuracyPredictorError, match="damaged"):
        Measurements(path, header)


def test_cli_predictor_fitness_json_and_resume(tmp_path, supernet, capsys):
    from toolkit.checkpoint import save_supernet
    from toolkit.cli import search as search_cli

    ckpt = tmp_path / "supernet.pt"
    save_supernet(supernet, ckpt, config={"data": None})
    argv = ["--latency-ms", "8", "--device", "pixel4", "--supernet", str(ckpt),
            "--population", "16", "--generations", "2", "--parents", "8", "--mutations", "4",
            "--crossovers", "4", "--calib-images", "8", "--search-images", "16",
            "--fitness", "predictor", "--predictor-subnets", "12", "--top-k", "3", "--json",
            "--no-progress"]
    torch.set_num_threads(2)
    assert search_cli.main(argv + ["--out", str(tmp_path / "a")]) == 0
    io = capsys.readouterr()
    out = json.loads(io.out)  # stdout is only the JSON
    best = out["results"][0]
    assert best["fitness"] == "predictor" and best["measured_top_k"] == 3
    assert 12 <= out["real_evaluations"] <= 15  # 12 measured to fit, top-3 (some may be cached)
    assert "accuracy predictor: measuring 12 subnets" in io.err
    assert (tmp_path / "a" / "accuracy_predictor.json").is_file()
    AccuracyPredictor.load(tmp_path / "a" / "accuracy_predictor.json")
    # a second search on the same supernet reuses the measurements (cached by its hash)
    assert search_cli.main(argv + ["--out", str(tmp_path / "b")]) == 0
    io = capsys.readouterr()
    assert "measuring" not in io.err and json.loads(io.out)["real_evaluations"] <= 3
    # an existing predictor file: no measuring at all
    assert search_cli.main(argv + ["--out", str(tmp_path / "c"), "--accuracy-predictor",
                                   str(tmp_path / "a" / "accuracy_predictor.json")]) == 0
    assert "measuring" not in capsys.readouterr().err
    assert search_cli.main(["--latency-ms", "8", "--accuracy-predictor", "x.json"]) == 2
    assert "--fitness predictor" in capsys.readouterr().err


def test_single_budget_front_plot_draws_a_line(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from toolkit.search.run import plot_front

    rows = [{"cost": 7.0, "accuracy": 0.9}, {"cost": 7.5, "accuracy": 0.8},
            {"cost": 7.9, "accuracy": 0.85}]
    drawn = []
    real_savefig = plt.Figure.savefig

    def spy(fig, *a, **k):
        for ln in fig.axes[0].get_lines():
            if ln.get_label() == "Pareto front":
                drawn.append(len(ln.get_xdata()))
        return real_savefig(fig, *a, **k)

    plt.Figure.savefig = spy
    try:
        plot_front(rows, [{"cost": 7.0, "accuracy": 0.9}], "ms", tmp_path / "f.png")
    finally:
        plt.Figure.savefig = real_savefig
    assert drawn and drawn[0] >= 2  # one front subnet still gets a visible line


def test_search_keeps_to_the_subnets_the_supernet_trained(tmp_path, supernet, capsys):
    from toolkit.checkpoint import save_supernet, trained_rules
    from toolkit.cli import search as search_cli

    assert trained_rules({"config": {"subspace": "hss"}}, supernet) == "release"
    assert trained_rules({"config": {"subspace": "release"}}, supernet) == "release"
    assert trained_rules({"config": {"subspace": "off"}}, supernet) == "none"
    assert trained_rules({"config": None}, supernet) == "none"  # an older checkpoint
    ckpt = tmp_path / "supernet.pt"
    save_supernet(supernet, ckpt, config={"data": None, "subspace": "hss"})
    argv = ["--latency-ms", "11", "--device", "pixel4", "--supernet", str(ckpt),
            "--population", "6", "--generations", "1", "--parents", "3", "--mutations", "3",
            "--crossovers", "3", "--calib-images", "8", "--search-images", "16", "--json",
            "--no-progress"]
    torch.set_num_threads(2)
    assert search_cli.main(argv + ["--out", str(tmp_path / "a")]) == 0
    io = capsys.readouterr()
    assert "its training sub-spaces (hss)" in io.err and "--any-subnet lifts this" in io.err
    state = json.loads((tmp_path / "a" / "state_latency_11.json").read_text())
    archs = [ArchConfig.from_json(k) for k in state["scores"]]
    assert SearchSpace(rules="release").allowed_encoded(SPACE.encode_many(archs)).all()
    assert json.loads(io.out)["results"][0]["rules"] == "release"
    assert search_cli.main(argv + ["--out", str(tmp_path / "b"), "--any-subnet"]) == 0
    io = capsys.readouterr()
    assert "training sub-spaces" not in io.err
    assert json.loads(io.out)["results"][0]["rules"] == "none"
