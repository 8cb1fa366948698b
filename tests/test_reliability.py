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
        d["overhead"]["kind_scale"]["attn"] = -1.0
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


# -- 3. a new run never destroys an old one ------------------------------------------------
TINY = ["--levels", "100", "--batch-size", "4", "--bn-batches", "1", "--eval-images", "16",
        "--no-progress", "--torch-threads", "1", "--steps", "2"]


def _digest(folder: Path) -> dict:
    import hashlib

    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.iterdir()) if p.is_file()}


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    from toolkit.cli.train import main as train_main

    out = tmp_path_factory.mktemp("run") / "train"
    assert train_main([*TINY, "--out", str(out)]) == 0
    return out


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_train_into_a_finished_run_refuses_and_keeps_it(finished_run, tmp_path, capsys):
    import shutil

    from toolkit.cli.train import main as train_main

    run = tmp_path / "train"
    shutil.copytree(finished_run, run)
    before = _digest(run)
    t0 = time.monotonic()
    assert train_main([*TINY, "--out", str(run), "--sampler", "sandwich"]) == 2
    err = capsys.readouterr().err
    assert "--resume" in err and "--overwrite" in err and str(run) in err
    assert time.monotonic() - t0 < 5  # refused before loading data or building a model
    assert _digest(run) == before  # log, config, checkpoints untouched


def test_train_overwrite_starts_over_and_sweeps_stale_temps(finished_run, tmp_path):
    import shutil

    from toolkit.cli.train import main as train_main

    run = tmp_path / "train"
    shutil.copytree(finished_run, run)
    dead = run / f".last.pt.{_dead_pid()}-k1ll3d.tmp"  # a checkpoint write killed with -9
    dead.write_bytes(b"\0" * 1_000_000)
    old_style = run / ".last.pt.x7f3kq2a.tmp"  # an older evit's temp, hours old
    old_style.write_bytes(b"\0" * 1000)
    os.utime(old_style, (time.time() - 7200, time.time() - 7200))
    fresh_other = run / ".last.pt.y8g4lr3b.tmp"  # pid-less and recent: maybe a live writer
    fresh_other.write_bytes(b"\0")
    old_eval = (run / "eval.csv").read_text()
    assert train_main([*TINY, "--out", str(run), "--overwrite", "--seed", "7"]) == 0
    assert not dead.exists() and not old_style.exists() and fresh_other.exists()
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["seed"] == 7
    new_eval = (run / "eval.csv").read_text()
    assert new_eval.count("step,subnet") == 1 and len(new_eval.splitlines()) == len(
        old_eval.splitlines())  # the old rows are gone, not appended to
    logged = [json.loads(ln)["step"] for ln in (run / "log.jsonl").read_text().splitlines()
              if "losses" in ln]
    assert logged == [0, 1]


def test_train_resume_and_overwrite_together_is_an_error(tmp_path, capsys):
    from toolkit.cli.train import main as train_main

    assert train_main([*TINY, "--out", str(tmp_path), "--resume", "--overwrite"]) == 2
    assert "give one of them" in capsys.readouterr().err


# -- 3b. a search or a campaign folder holding another run ---------------------------------
def _tiny_supernet(path: Path) -> Path:
    from toolkit.checkpoint import save_supernet
    from toolkit.supernet import Supernet

    save_supernet(Supernet(10), path, config={"data": None})
    return path


SEARCH = ["--budget-mflops", "300", "--population", "2", "--generations", "1", "--parents", "2",
          "--mutations", "1", "--crossovers", "1", "--calib-images", "8", "--search-images",
          "8"]


def test_search_into_another_search_refuses_then_overwrite_starts_over(tmp_path, capsys):
    from toolkit.cli import search as search_cli

    ckpt = _tiny_supernet(tmp_path / "s.pt")
    out = tmp_path / "search"
    assert search_cli.main([*SEARCH, "--supernet", str(ckpt), "--out", str(out)]) == 0
    before = _digest(out)
    capsys.readouterr()
    t0 = time.monotonic()
    assert search_cli.main([*SEARCH, "--supernet", str(ckpt), "--out", str(out),
                            "--seed", "5"]) == 2
    err = capsys.readouterr().err
    assert "holds another search" in err and "config" in err and "--overwrite" in err
    assert time.monotonic() - t0 < 10 and _digest(out) == before
    # the same settings resume (nothing to do: the state is complete)
    assert search_cli.main([*SEARCH, "--supernet", str(ckpt), "--out", str(out)]) == 0
    assert search_cli.main([*SEARCH, "--supernet", str(ckpt), "--out", str(out), "--seed", "5",
                            "--overwrite"]) == 0
    assert json.loads((out / "search.json").read_text())["config"]["seed"] == 5
    (out / "search.json").write_text('{"format": "evit-search-run", "conf')  # torn by hand
    assert search_cli.main([*SEARCH, "--supernet", str(ckpt), "--out", str(out)]) == 2
    assert "search.json is damaged" in capsys.readouterr().err
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]


def test_torn_search_state_is_a_clear_error(tmp_path):
    from toolkit.search.evolution import Cost, SearchConfig, SearchError, search

    state = tmp_path / "state.json"
    state.write_text('{"key": {"budget": 3')
    with pytest.raises(SearchError, match="state.json is damaged"):
        search(300, Cost("mflops"), lambda archs: [0.5] * len(archs),
               SearchConfig(population=2, generations=1, parents=2, mutations=1,
                            crossovers=1), state_path=state)


def test_campaign_folder_torn_or_foreign_is_a_clear_error(tmp_path, capsys):
    from toolkit.cli import profile as profile_cli

    out = tmp_path / "camp"
    out.mkdir()
    (out / "campaign.json").write_text('{"device": "host", "conf')  # a torn write
    (out / "kernels.jsonl").write_text('{"code": 1}\n')
    argv = ["--device", "host", "--kernels", "6", "--subnets", "0", "--out", str(out),
            "--no-install", "--runs", "2", "--repeats", "1"]
    assert profile_cli.main(argv) == 1
    err = capsys.readouterr().err
    assert "campaign.json is damaged" in err and "--overwrite" in err
    assert (out / "kernels.jsonl").read_text() == '{"code": 1}\n'  # kept for the user
    (out / "campaign.json").unlink()
    assert profile_cli.main(argv) == 1
    assert "without its campaign.json" in capsys.readouterr().err


# -- 5. errors before work, naming what is wrong --------------------------------------------
def test_export_out_folder_gets_the_default_name_and_bad_outs_fail_first(tmp_path, capsys):
    from toolkit.cli import export as export_cli
    from toolkit.export_job import output_path

    (tmp_path / "exports").mkdir()
    assert output_path(str(tmp_path / "exports"), "s1_fp32.tflite", "tflite") == \
        tmp_path / "exports" / "s1_fp32.tflite"
    assert output_path(str(tmp_path / "new") + "/", "s1_fp32.onnx", "onnx") == \
        tmp_path / "new" / "s1_fp32.onnx"
    (tmp_path / "afile").write_text("x")
    for out, match in ((tmp_path / "m.onnx", "needs the .tflite suffix"),
                       (tmp_path / "afile" / "m.tflite", "cannot write into")):
        t0 = time.monotonic()
        assert export_cli.main(["--model", "elasticvit_t0", "--out", str(out)]) == 2
        assert match in capsys.readouterr().err
        assert time.monotonic() - t0 < 3  # before any conversion
    assert not (tmp_path / "new").exists()


def test_checkpoint_without_weights_names_the_missing_entry(tmp_path, capsys):
    import torch

    from toolkit.cli import export as export_cli

    bad = tmp_path / "noweights.pt"
    torch.save({"format": "evit-supernet", "version": 1, "num_classes": 10}, bad)
    assert export_cli.main(["--model", "elasticvit_t0", "--supernet", str(bad), "--out",
                            str(tmp_path / "x.tflite")]) == 2
    err = capsys.readouterr().err
    assert "holds no 'model' entry" in err and str(bad) in err
    torch.save({"format": "evit-supernet", "version": 1, "num_classes": 10,
                "model": {"w": [1, 2]}}, bad)
    assert export_cli.main(["--model", "elasticvit_t0", "--supernet", str(bad)]) == 2
    assert "a damaged 'model' entry" in capsys.readouterr().err


def test_malformed_arch_json_names_the_file(tmp_path, capsys):
    from toolkit.cli import export as export_cli

    for text in ('{"resolution": 224, "stem', '{"resolution": "big"}', "[1, 2]"):
        f = tmp_path / "arch.json"
        f.write_text(text)
        assert export_cli.main(["--arch", str(f), "--out", str(tmp_path / "a.tflite")]) == 2
        assert str(f) in capsys.readouterr().err


GOOD_ENTRY = {"name": "m", "device": "host", "serial": "h", "mode": "default",
              "median_ms": 2.0, "std_ms": 0.1, "repeats": 3, "runtime": "litert", "binary": "b",
              "threads": 1, "mask": "1"}


@pytest.mark.parametrize("entry,match", [
    ({"name": "m"}, "lacks"), ("not an entry", r"entries\[0\]"),
    ({**GOOD_ENTRY, "median_ms": "fast"}, r"entries\[0\].median_ms = 'fast'"),
    ({**GOOD_ENTRY, "median_ms": -1.0}, "median_ms = -1.0"),
    ({**GOOD_ENTRY, "threads": 1.5}, "threads = 1.5"),
    ({**GOOD_ENTRY, "extra": 1}, "unknown fields"),
])
def test_bad_baseline_entry_is_a_clear_error(tmp_path, capsys, entry, match):
    from toolkit.cli import bench as bench_cli

    good, e = GOOD_ENTRY, entry
    base = tmp_path / "base.json"
    base.write_text(json.dumps({"format": "evit-bench-baseline", "entries": [e]}))
    head = tmp_path / "head.json"
    head.write_text(json.dumps({"format": "evit-bench-baseline", "entries": [good]}))
    assert bench_cli.main(["compare", str(base), str(head)]) == 2
    err = capsys.readouterr().err
    assert __import__("re").search(match, err) and str(base) in err


@pytest.fixture(scope="module")
def adb_port():
    import socket

    import adbutils

    from toolkit.devices.adb import client

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client(port)  # the real adb server, on a port of its own
    yield port
    subprocess.run([adbutils.adb_path(), "kill-server"], timeout=30, check=False,
                   env={**os.environ, "ANDROID_ADB_SERVER_PORT": str(port)})


def test_profile_unknown_device_is_named_first_and_creates_nothing(tmp_path, capsys,
                                                                 monkeypatch, adb_port):
    from toolkit.cli import profile as profile_cli

    monkeypatch.delenv("EVIT_BENCHMARK_MODEL", raising=False)
    store = tmp_path / "r.sqlite"
    rc = profile_cli.main(["--device", "nosuchphone", "--store", str(store), "--out",
                           str(tmp_path / "camp"), "--adb-port", str(adb_port)])
    err = capsys.readouterr().err
    assert rc == 1 and "nosuchphone" in err and "benchmark_model" not in err, err
    assert not store.exists() and not (tmp_path / "camp").exists()
    rc = profile_cli.main(["--device", "host", "--tflite", str(tmp_path / "none.tflite"),
                           "--store", str(store)])
    assert rc == 1 and "cannot read it" in capsys.readouterr().err and not store.exists()
    rc = profile_cli.main(["--device", "host", "--tflite", str(PIXEL4), "--store", str(store)])
    assert rc == 1 and "not a .tflite" in capsys.readouterr().err and not store.exists()


# -- 4. torn files -------------------------------------------------------------------------
def _writers(tmp_path):
    """(target, write-new-content) for each file a later step or a resume reads."""
    from toolkit.bench.compare import Entry, save_baseline
    from toolkit.cli.profile import install_predictor
    from toolkit.search.evolution import _save_state
    from toolkit.train import TrainConfig
    from toolkit.zoo import get_arch

    pred = LatencyPredictor.load(PIXEL4)
    src = tmp_path / "installed_src.json"
    src.write_text(PIXEL4.read_text())
    entry = Entry(**GOOD_ENTRY)
    return {
        "predictor.save": lambda p: pred.save(p),
        "install predictor": lambda p: install_predictor(src, p.stem),  # $EVIT_PREDICTORS
        "config.json": lambda p: TrainConfig(seed=3).save(p),
        "search state": lambda p: _save_state(p, {"key": {}, "generation": 3}),
        "arch json": lambda p: get_arch("elasticvit_s1").save(p),
        "bench baseline": lambda p: save_baseline([entry], p, "r1"),
    }


@pytest.mark.parametrize("writer", ["predictor.save", "install predictor", "config.json",
                                    "search state", "arch json", "bench baseline"])
def test_a_write_that_fails_midway_leaves_the_old_file_whole(tmp_path, monkeypatch, writer):
    write = _writers(tmp_path)[writer]
    target = tmp_path / "out" / "file.json"
    target.parent.mkdir()
    target.write_text('{"old": true}')
    monkeypatch.setenv("EVIT_PREDICTORS", str(target.parent))  # where predictors install

    def disk_full(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(OSError, match="No space left"):
        write(target)
    assert target.read_text() == '{"old": true}'
    assert sorted(p.name for p in target.parent.iterdir()) == ["file.json"]  # no temp left


def test_two_writers_of_one_file_never_collide(tmp_path):
    import threading

    pred = LatencyPredictor.load(PIXEL4)
    target = tmp_path / "p.json"
    errors = []

    def loop():
        try:
            for _ in range(15):
                pred.save(target)
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=loop) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    LatencyPredictor.load(target)
    assert os.listdir(tmp_path) == ["p.json"]


def test_kill_9_during_a_checkpoint_write_keeps_the_old_file_and_the_temp_is_swept(
        tmp_path):
    from toolkit.fileio import sweep_temps

    target = tmp_path / "last.pt"
    target.write_bytes(b"old checkpoint")
    # torch.save killed with -9 after 5 MB: what a kill during evit-train's checkpoint leaves
    code = ("import os, signal, sys, torch\n"
            "def save(obj, f, *a, **k):\n"
            "    f.write(b'x' * 5_000_000); f.flush(); os.kill(os.getpid(), signal.SIGKILL)\n"
            "torch.save = save\n"
            "from toolkit.checkpoint import atomic_save\n"
            "atomic_save({'w': 1}, sys.argv[1])\n")
    p = subprocess.run([sys.executable, "-c", code, str(target)], cwd=ROOT, timeout=120)
    assert p.returncode == -9
    assert target.read_bytes() == b"old checkpoint"
    (tmp,) = [q for q in tmp_path.iterdir() if q.name != "last.pt"]
    assert tmp.stat().st_size == 5_000_000
    assert sweep_temps(tmp_path) == [tmp] and not tmp.exists()  # its writer is dead
    assert target.read_bytes() == b"old checkpoint"
