"""Hostile and careless input, and faults: nothing hangs, succeeds silently, loses a run or
leaves a torn file (issue 20; the table in benchmarks/RESULTS.md lists each case)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from toolkit.latency import LatencyPredictor, PredictorError

ROOT = Path(__file__).resolve().parents[1]
PIXEL4 = ROOT / "device_profiles" / "predictors" / "pixel4.json"


# -- 1. predictor files are untrusted input ------------------------------------------------
def _first_split(tree: dict) -> int:
    return next(i for i, leaf in enumerate(tree["leaf"]) if not leaf)


def _tamper(d: dict, what: str) -> dict | list | str:
    t = d["kinds"]["mbconv"]["trees"][3]
    j = _first_split(t)
    if what == "cycle":
        t["left"][j] = j  # the node is its own child: the walk never reaches a leaf
    elif what == "cycle-up":
        k = t["left"][j]
        while t["leaf"][k]:
            k += 1
        t["right"][k] = j  # a deeper node points back up
    elif what == "index":
        t["right"][j] = 10_000
    elif what == "feature":
        t["feature"][j] = 99
    elif what == "convention":
        d["convention"] = "sideways"
    elif what == "nan-scale":
        d["overhead"]["scale"] = math.nan
    elif what == "negative-scale":
        d["overhead"]["scale"] = -3.0
    elif what == "negative-offset":
        d["overhead"]["offset_ms"] = -5000.0
    elif what == "inf-value":
        t["value"][j] = math.inf
    elif what == "string-threshold":
        t["threshold"][j] = "big"
    elif what == "kind-scale":
        d["overhead"]["kind_scale"]["attn"] = 0.0
    elif what == "weight-classes":
        d["overhead"]["weight_classes"] = "1000"
    elif what == "list":
        return [d]
    elif what == "string":
        return "evit-latency-predictor"
    return d


FIELDS = {"cycle": r"trees\[3\]\.left", "cycle-up": r"trees\[3\]\.right",
          "index": r"trees\[3\]\.right", "feature": r"trees\[3\]\.feature",
          "convention": "convention", "nan-scale": "overhead.scale",
          "negative-scale": "overhead.scale", "negative-offset": "offset_ms|smallest subnet",
          "inf-value": r"trees\[3\]\.value", "string-threshold": r"trees\[3\]\.threshold",
          "kind-scale": "kind_scale.attn", "weight-classes": "weight_classes",
          "list": "top level", "string": "top level"}


@pytest.mark.parametrize("what", list(FIELDS))
def test_tampered_predictor_is_refused_at_load_naming_file_and_field(tmp_path, what):
    d = json.loads(PIXEL4.read_text())
    path = tmp_path / f"{what}.json"
    path.write_text(json.dumps(_tamper(d, what)))
    with pytest.raises(PredictorError) as e:
        LatencyPredictor.load(path)
    assert str(path) in str(e.value)
    assert __import__("re").search(FIELDS[what], str(e.value)), str(e.value)


def test_untampered_predictor_still_loads_and_round_trips(tmp_path):
    p = LatencyPredictor.load(PIXEL4)
    p.save(tmp_path / "p.json")
    q = LatencyPredictor.load(tmp_path / "p.json")
    from toolkit.zoo import get_arch

    assert q.predict(get_arch("elasticvit_s1")) == p.predict(get_arch("elasticvit_s1"))
    assert not [f for f in os.listdir(tmp_path) if f != "p.json"]  # no temp left behind


def test_search_with_a_cyclic_predictor_fails_fast_not_forever(tmp_path):
    d = json.loads(PIXEL4.read_text())
    bad = tmp_path / "cyclic.json"
    bad.write_text(json.dumps(_tamper(d, "cycle")))
    t0 = time.monotonic()
    r = subprocess.run([sys.executable, "-m", "toolkit.cli.search", "--latency-ms", "20",
                        "--device", "pixel4", "--predictor", str(bad), "--out",
                        str(tmp_path / "s")], capture_output=True, text=True, timeout=120,
                       cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    assert str(bad) in r.stderr and "left" in r.stderr
    assert time.monotonic() - t0 < 60
    assert not (tmp_path / "s").exists()  # nothing created before the inputs were checked


# -- 2. a bench run that measured less than it should never exits 0 ------------------------
def _suite(path: Path, model: Path, **extra) -> Path:
    import yaml

    d = {"name": "rel", "models": [{"name": "conv", "path": str(model)}], "devices": ["host"],
         "repeats": 1, "runs": 3, "warmup": 1, **extra}
    path.write_text(yaml.safe_dump(d))
    return path


def test_bench_unknown_mode_is_refused_before_any_work(tmp_path, conv_tflite, capsys):
    from toolkit.cli import bench as bench_cli

    store = tmp_path / "b.sqlite"
    suite = _suite(tmp_path / "s.yaml", conv_tflite, modes=["nosuchmode"])
    assert bench_cli.main(["--store", str(store), "run", str(suite)]) == 2
    err = capsys.readouterr().err
    assert "modes[0] = 'nosuchmode'" in err and str(suite) in err


@pytest.mark.parametrize("field,value,match", [
    ("timeout", "soon", "timeout = 'soon'"), ("timeout", -1, "timeout = -1"),
    ("runs", True, "runs = True"), ("per_layer", "yes", "per_layer = 'yes'"),
    ("modes", [{"mask": "zz", "threads": 1}], r"modes\[0\].mask = 'zz'"),
    ("modes", [{"mask": "f", "threads": 0}], r"modes\[0\].threads = 0"),
    ("devices", "host", "devices = 'host'"), ("name", "a/b", "name = 'a/b'"),
])
def test_bench_suite_fields_are_checked_naming_file_and_field(tmp_path, conv_tflite, field,
                                                              value, match):
    from toolkit.bench.suite import SuiteError, load_suite

    suite = _suite(tmp_path / "s.yaml", conv_tflite, **{field: value})
    with pytest.raises(SuiteError, match=match) as e:
        load_suite(suite)
    assert str(suite) in str(e.value)


@pytest.mark.parametrize("model", [{"name": "../escape", "path": "X"},
                                   {"name": "sub/dir", "path": "X"},
                                   {"name": "n", "path": "X", "num_classes": "ten"},
                                   {"name": "n", "path": "X", "num_classes": 0}])
def test_bench_model_names_and_classes_are_checked(tmp_path, conv_tflite, model):
    from toolkit.bench.suite import SuiteError, parse_suite

    model = {k: (str(conv_tflite) if v == "X" else v) for k, v in model.items()}
    with pytest.raises(SuiteError, match=r"models\[0\]\.(name|num_classes)"):
        parse_suite({"name": "s", "models": [model]}, "s.yaml")


def test_bench_worker_crash_is_a_recorded_failure_and_exit_1(tmp_path, conv_tflite, capsys,
                                                             monkeypatch):
    import toolkit.devices.measure as measure_mod
    from toolkit.cli import bench as bench_cli

    def broken(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(measure_mod, "measure", broken)
    store = tmp_path / "b.sqlite"
    suite = _suite(tmp_path / "s.yaml", conv_tflite, modes=["default", {"mask": "1"}])
    assert bench_cli.main(["--store", str(store), "run", str(suite)]) == 1
    out = capsys.readouterr().out
    assert "0 of 2 job(s) measured" in out and out.count("FAILED host") == 2
    assert "No space left on device" in out


def test_bench_locked_store_is_a_failure_not_a_silent_pass(tmp_path, conv_tflite, capsys,
                                                           monkeypatch):
    import sqlite3

    from toolkit.cli import bench as bench_cli
    from toolkit.devices import store as store_mod

    store = tmp_path / "b.sqlite"
    ResultStore = store_mod.ResultStore
    ResultStore(store).close()
    monkeypatch.setattr(store_mod, "BUSY_TIMEOUT_S", 0.2)
    hold = sqlite3.connect(store, isolation_level=None)
    hold.execute("BEGIN EXCLUSIVE")  # another process holds the store
    try:
        rc = bench_cli.main(["--store", str(store), "run",
                             str(_suite(tmp_path / "s.yaml", conv_tflite))])
    finally:
        hold.execute("ROLLBACK")
        hold.close()
    out = capsys.readouterr()
    assert rc == 1 and "0 of 1 job(s) measured" in out.out, out
    assert "locked" in out.out


def test_bench_reused_run_id_is_refused_before_work(tmp_path, conv_tflite, capsys):
    from toolkit.cli import bench as bench_cli

    store = tmp_path / "b.sqlite"
    suite = _suite(tmp_path / "s.yaml", conv_tflite)
    assert bench_cli.main(["--store", str(store), "run", str(suite), "--run-id", "r1"]) == 0
    assert bench_cli.main(["--store", str(store), "run", str(suite), "--run-id", "r1"]) == 2
    assert "--run-id 'r1' already names a bench run" in capsys.readouterr().err
    from toolkit.devices.store import ResultStore

    with ResultStore(store) as st:
        assert len(st.results()) == 1  # nothing merged into the old run


def test_bench_report_names_with_slashes_stay_in_the_report_folder(tmp_path, conv_tflite):
    from toolkit.bench.report import write_report
    from toolkit.devices.host import HostDevice
    from toolkit.devices.measure import RunSpec, measure
    from toolkit.devices.store import ResultStore

    store = tmp_path / "b.sqlite"
    with ResultStore(store) as st:  # a store written by an older evit, or edited
        measure(HostDevice(), str(conv_tflite), RunSpec(repeats=1, num_runs=3, op_profiling=True),
                store=st, meta={"bench_run": "r", "model": "../../evil/name", "mode": "m"})
        paths = write_report(st, tmp_path / "rep")
    for p in paths:
        assert p.resolve().parent == (tmp_path / "rep").resolve() and p.is_file()
    assert not (tmp_path / "evil").exists()
