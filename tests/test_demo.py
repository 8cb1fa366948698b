"""evit-demo end to end, reduced: train -> profile the host -> search host and pixel4 -> export
-> benchmark on the host; every file the summary names exists and opens."""

import json
import shutil
import sqlite3
from pathlib import Path

import pytest

from toolkit import demo as demo_lib
from toolkit.cli import demo
from toolkit.search.folder import already_exported


@pytest.mark.slow
@pytest.mark.timeout(900)  # about 400 s on 2 cores; headroom for a slower CI machine
def test_reduced_pipeline_end_to_end(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("EVIT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("EVIT_PREDICTORS", str(tmp_path / "predictors"))  # nothing installed
    out = tmp_path / "demo"
    argv = ["--out", str(out), "--train-steps", "4", "--levels", "100", "--kernels", "18",
            "--subnets", "2", "--population", "3", "--generations", "1", "--pixel4-ms", "9",
            "--calib-images", "16", "--search-images", "32"]
    assert demo.main(argv) == 0
    text = capsys.readouterr().out
    for cmd in ("$ evit-train", "$ evit-profile --device host", "$ evit-search --latency-ms",
                "--device pixel4", "$ evit-export --arch", "$ evit-bench"):
        assert cmd in text
    s = json.loads((out / "summary.json").read_text())
    assert [r["device"] for r in s["rows"]] == ["host", "pixel4"]
    assert s["rows"][1]["predicted_ms"] <= 9.0
    assert s["rows"][0]["predicted_ms"] <= s["host_budget_ms"]
    for r in s["rows"]:
        assert r["measured_host_ms"] > 0 and r["size_mb"] > 0
        from ai_edge_litert.interpreter import Interpreter

        Interpreter(model_path=r["artifact"]).allocate_tensors()  # the artifact opens
        meta = json.loads(Path(r["sidecar"]).read_text())
        assert meta["parity"]["top1_agreement"] >= 0.9
        json.loads(Path(r["arch"]).read_text())
    for p in s["plots"]:
        assert Path(p).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", p
    assert "<img" in Path(s["report"]).read_text()
    # the host budget follows this machine's measurements: the two searches may choose one
    # subnet, which is then exported and measured once
    same = s["rows"][1]["same_as"] == "host"
    if same:
        assert s["rows"][1]["arch"] != s["rows"][0]["arch"]  # each search keeps its own files
        assert s["rows"][1]["measured_host_ms"] == s["rows"][0]["measured_host_ms"]
    with sqlite3.connect(s["store"]) as db:
        # the exports, and the campaign's two subnets again (this machine's speed)
        assert db.execute("SELECT COUNT(*) FROM results WHERE status='valid'"
                          ).fetchone()[0] == 2 + (1 if same else 2)
        ops = dict(db.execute("SELECT json_extract(r.meta, '$.model'), COUNT(o.idx) FROM "
                              "results r LEFT JOIN ops o ON o.result_id = r.id GROUP BY r.id"))
    assert ops["best_host"] > 0 and ops["campaign_subnet_1"] == 0
    assert ("best_pixel4" not in ops) if same else ops["best_pixel4"] == 0
    subs = [json.loads(line) for line in (out / "profile_host" / "subnets.jsonl").open()]
    kern = [json.loads(line) for line in (out / "profile_host" / "kernels.jsonl").open()]
    assert len(subs) == 2 and all(r["repeats"] == 5 for r in subs)  # --subnet-repeats 5
    assert all(r["n"] == 300 for r in kern)  # kernels: 3 invocations of 100 runs
    d = s["host_drift"]  # the campaign's subnets, measured again by the benchmark
    assert d["subnets"] == 2 and min(d["profile_ms"] + d["bench_ms"]) > 0
    assert d["min_change"] <= d["change"] <= d["max_change"] and "error*: against" in text
    for r in s["rows"]:  # the prediction rescaled by that speed change
        assert r["rescaled_host_ms"] == pytest.approx(r["predicted_host_ms"] * d["factor"])
        assert r["rescaled_error"] == pytest.approx(
            r["rescaled_host_ms"] / r["measured_host_ms"] - 1)
    assert not (tmp_path / "predictors").exists()  # the demo installs nothing for the user
    # a second run keeps the finished training and resumes the campaign and the searches
    assert demo.main(argv) == 0
    again = capsys.readouterr()
    assert "train: already done" in again.out
    assert "resuming: 18 kernels already measured" in again.err
    assert again.out.count("already exported (same subnet, same supernet)") == 2 - same

    # two searches that chose one subnet: it converts once, the other search gets a copy
    row = s["rows"][0]
    arch = json.loads(Path(row["arch"]).read_text())["arch"]
    bests = {d: {"arch": arch, "budget": 5, "path": row["arch"]} for d in ("host", "pixel4")}
    dup = tmp_path / "dup"
    for d in bests:
        (dup / f"search_{d}").mkdir(parents=True)
    first = dup / "search_host" / "best_latency_5.tflite"  # exported before: not converted
    shutil.copyfile(row["artifact"], first)
    shutil.copyfile(row["sidecar"], str(first) + ".json")
    demo_lib.export_all(bests, dup, out / "train" / "supernet.pt", print)
    copy = Path(bests["pixel4"]["artifact"])
    assert bests["pixel4"]["same_as"] == "host" and "same_as" not in bests["host"]
    assert copy.parent.name == "search_pixel4" and copy.read_bytes() == first.read_bytes()
    assert already_exported(copy, arch, out / "train" / "supernet.pt")  # a resume keeps it
    assert "a copy of" in capsys.readouterr().out


def test_bad_arguments_are_refused(capsys):
    assert demo.main(["--levels", "300", "100"]) == 2
    assert "increasing" in capsys.readouterr().err
    assert demo.main(["--train-steps", "0"]) == 2
    assert "--train-steps 0: give a whole number >= 1" in capsys.readouterr().err
    assert demo.main(["--references", "-1"]) == 2
    assert "--references -1" in capsys.readouterr().err


def test_speed_change_is_the_geometric_mean_over_the_references():
    refs = [{"latency_ms": 2.0}, {"latency_ms": 4.0}, {"latency_ms": 3.0}]
    d = demo_lib.speed_change(refs, {"campaign_subnet_1": 1.0, "campaign_subnet_2": 8.0})
    assert d["subnets"] == 2 and d["factor"] == pytest.approx(1.0)  # sqrt(0.5 * 2)
    assert d["min_change"] == pytest.approx(-0.5) and d["max_change"] == pytest.approx(1.0)
    assert demo_lib.speed_change(refs, {}) is None
