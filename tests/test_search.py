"""Constrained evolutionary search: constraint, infeasible budgets, determinism, resume, CLI."""

import csv
import json

import pytest
import torch
from conftest import SMALL, proxy_fitness

from toolkit.flops import flops
from toolkit.search.evolution import Cost, SearchConfig, SearchError, pareto_front, search


def test_constraint_always_holds_and_budget_is_used(pixel4, tmp_path):
    for budget in (6.0, 15.0, 30.0):
        r = search(budget, pixel4, proxy_fitness, SMALL)
        assert r["cost"] <= budget and r["cost"] >= r["lower_bound"]
        for k in r["evaluated"]:  # every evaluated subnet was feasible
            from toolkit.space import ArchConfig

            assert pixel4.of(ArchConfig.from_json(k)) <= budget + 1e-9
    mf = Cost("mflops")
    r = search(300, mf, proxy_fitness, SMALL)
    assert 0.85 * 300 <= flops(r["arch"]) <= 300


def test_infeasible_budget_fails_at_once(pixel4):
    cheapest, _ = pixel4.cheapest()
    with pytest.raises(SearchError, match=f"cheapest subnet found costs {cheapest:.2f} ms"):
        search(cheapest * 0.5, pixel4, proxy_fitness, SMALL)
    with pytest.raises(SearchError, match="mutation_prob"):
        search(20, pixel4, proxy_fitness, SearchConfig(mutation_prob=2))


def test_same_seed_same_result_and_resume(pixel4, tmp_path):
    a = search(12, pixel4, proxy_fitness, SMALL)
    b = search(12, pixel4, proxy_fitness, SMALL)
    assert a["arch"] == b["arch"] and a["evaluated"] == b["evaluated"]

    class Stop(Exception):
        pass

    def stop_at_gen2(msg):
        if "generation 2/" in msg:
            raise Stop

    state = tmp_path / "state.json"
    with pytest.raises(Stop):
        search(12, pixel4, proxy_fitness, SMALL, state_path=state, progress=stop_at_gen2)
    calls = []

    def counting(archs):
        calls.extend(archs)
        return proxy_fitness(archs)

    c = search(12, pixel4, counting, SMALL, state_path=state)
    assert c["arch"] == a["arch"] and c["evaluated"] == a["evaluated"]
    assert len(calls) < len(a["evaluated"])  # the first generations were not re-evaluated
    with pytest.raises(SearchError, match="different search"):
        search(13, pixel4, proxy_fitness, SMALL, state_path=state)


def test_pareto_front():
    pts = [(1, 0.5), (2, 0.4), (2, 0.7), (3, 0.7), (4, 0.9)]
    assert pareto_front(pts) == [0, 2, 4]


def test_cli_end_to_end_with_real_accuracy(tmp_path, supernet, capsys):
    from toolkit.checkpoint import save_supernet
    from toolkit.cli import search as search_cli

    ckpt = tmp_path / "supernet.pt"
    save_supernet(supernet, ckpt, config={"data": None})
    out = tmp_path / "search"
    argv = ["--latency-ms", "8", "14", "--device", "pixel4", "--supernet", str(ckpt), "--out",
            str(out), "--population", "4", "--generations", "1", "--parents", "2",
            "--mutations", "1", "--crossovers", "1", "--calib-images", "16",
            "--search-images", "32"]
    torch.set_num_threads(2)
    assert search_cli.main(argv) == 0
    best = json.loads((out / "best_latency_8.json").read_text())
    assert best["predicted_latency_ms"] <= 8 and 0 <= best["accuracy"] <= 1
    assert best["mflops"] > 0 and best["params"] > 0 and best["arch"]["stages"]
    rows = list(csv.DictReader((out / "front.csv").read_text().splitlines()))
    assert len(rows) >= 4 and {r["pareto"] for r in rows} <= {"0", "1"}
    assert (out / "front.png").stat().st_size > 1000
    assert search_cli.main(["--latency-ms", "1", "--device", "pixel4"]) == 2
    assert "infeasible" in capsys.readouterr().err
    assert search_cli.main(["--latency-ms", "20", "--supernet", str(tmp_path / "no.pt")]) == 2
    assert "evit-train" in capsys.readouterr().err


def test_torchrun_spreads_fitness_over_ranks_with_the_same_result(tmp_path, supernet):
    import os
    import subprocess
    import sys
    from pathlib import Path

    from toolkit.checkpoint import save_supernet

    ckpt = tmp_path / "supernet.pt"
    save_supernet(supernet, ckpt, config={"data": None})
    common = ["--latency-ms", "10", "--device", "pixel4", "--supernet", str(ckpt),
              "--population", "4", "--generations", "1", "--parents", "2", "--mutations", "1",
              "--crossovers", "1", "--calib-images", "16", "--search-images", "32"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    root = Path(__file__).resolve().parents[1]
    one = subprocess.run([sys.executable, "-m", "toolkit.cli.search", *common, "--out",
                          str(tmp_path / "one")], cwd=root, env=env, capture_output=True,
                         text=True, timeout=600)
    assert one.returncode == 0, one.stderr
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                          "--nproc_per_node", "2", "-m", "toolkit.cli.search", *common, "--out",
                          str(tmp_path / "two")], cwd=root, env=env, capture_output=True,
                         text=True, timeout=600)
    assert two.returncode == 0, two.stdout + two.stderr
    a = json.loads((tmp_path / "one" / "best_latency_10.json").read_text())
    b = json.loads((tmp_path / "two" / "best_latency_10.json").read_text())
    r1 = json.loads((tmp_path / "two" / "best_latency_10.rank1.json").read_text())
    assert a["arch"] == b["arch"] == r1["arch"] and a["accuracy"] == b["accuracy"]
    assert a["evaluated"] == b["evaluated"]


def test_a_resumed_search_reuses_its_export_only_when_it_matches(tmp_path):
    from toolkit.fileio import sha256_file
    from toolkit.search.folder import already_exported

    ckpt, art = tmp_path / "supernet.pt", tmp_path / "best.tflite"
    ckpt.write_bytes(b"weights")
    art.write_bytes(b"model")
    arch = {"resolution": 128, "stages": [1, 2]}
    meta = {"arch": arch, "precision": "fp32", "sha256": sha256_file(art),
            "source": {"supernet_sha256": sha256_file(ckpt)}}
    side = tmp_path / "best.tflite.json"
    side.write_text(json.dumps(meta))
    assert already_exported(art, arch, ckpt)
    assert not already_exported(art, {**arch, "resolution": 160}, ckpt)  # another subnet
    assert not already_exported(art, arch, ckpt, "/data/other")  # calibrated on other data
    ckpt.write_bytes(b"retrained")
    assert not already_exported(art, arch, ckpt)  # another supernet
    ckpt.write_bytes(b"weights")
    art.write_bytes(b"truncat")
    assert not already_exported(art, arch, ckpt)  # the artifact changed since
    side.write_text("{not json")
    assert not already_exported(art, arch, ckpt)


def test_budget_flags_job_json_and_the_deprecated_mflops_spelling(capsys):
    from toolkit.cli.search import build_parser, job_from_args
    from toolkit.search.run import SearchJob

    job = job_from_args(build_parser().parse_args(["--budget-mflops", "200", "400",
                                                   "--population", "8"]))
    assert job.budget_mflops == (200.0, 400.0) and job.cost_kind == "mflops"
    assert SearchJob.from_json(job.to_json()) == job
    assert job.to_argv() == ["--budget-mflops", "200", "400", "--population", "8"]
    with pytest.warns(DeprecationWarning):
        old = job_from_args(build_parser().parse_args(["--mflops", "300"]))
    assert old.budget_mflops == (300.0,)
    assert "--mflops is deprecated" in capsys.readouterr().err
    with pytest.raises(SearchError, match="exactly one"):
        SearchJob(latency_ms=(10.0,), budget_mflops=(300.0,)).validate()
    with pytest.raises(SearchError, match="--measure needs --export tflite"):
        SearchJob(latency_ms=(10.0,), measure=True).validate()
