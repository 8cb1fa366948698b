"""evit-bench through the loopback test phones and the host: suites, several phones at once
(one disconnecting mid-suite), regressions with an injected slowdown vs noise, reports."""

from __future__ import annotations

import json
import os
import subprocess
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import adbutils
import pytest
from testphone import TestPhone, fake_benchmark_binary

from toolkit.bench.compare import Entry, compare
from toolkit.bench.suite import SuiteError, load_suite, parse_suite
from toolkit.cli import bench as bench_cli
from toolkit.devices.adb import client
from toolkit.devices.store import ResultStore


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def adb_port():
    port = _free_port()
    client(port)
    yield port
    subprocess.run([adbutils.adb_path(), "kill-server"], timeout=30, check=False,
                   env={**os.environ, "ANDROID_ADB_SERVER_PORT": str(port)})


_ATTACHED: list[TestPhone] = []


@pytest.fixture(autouse=True)
def _phones_vanish_after_each_test():
    """A test that fails still takes its phones away: the adb server is shared."""
    yield
    while _ATTACHED:
        _ATTACHED.pop().vanish()


def attach(port: int, profile: str, root: Path) -> TestPhone:
    c = client(port)
    phone = TestPhone(profile, root / profile).start()
    _ATTACHED.append(phone)
    c.connect(phone.address, timeout=5)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if any(d.serial == phone.address and d.state == "device" for d in c.list()):
            break
        time.sleep(0.1)
    return phone


def write_suite(path: Path, model: Path, devices, **kw) -> Path:
    data = {"name": "smoke", "models": [{"name": "conv", "path": str(model)}],
            "devices": devices, "repeats": 3, "runs": 20, "warmup": 3, **kw}
    path.write_text(json.dumps(data))  # JSON is YAML
    return path


def test_suite_validation(tmp_path, conv_tflite):
    with pytest.raises(SuiteError, match="exactly one of path or named"):
        parse_suite({"name": "s", "models": [{"name": "x"}]})
    with pytest.raises(SuiteError, match="must exist"):
        parse_suite({"name": "s", "models": [{"path": "nope.tflite"}]})
    with pytest.raises(SuiteError, match="elasticvit_t0"):
        parse_suite({"name": "s", "models": [{"named": "resnet50"}]})
    with pytest.raises(SuiteError, match="repeats"):
        parse_suite({"name": "s", "models": [{"path": str(conv_tflite)}], "repeats": 0})
    with pytest.raises(SuiteError, match="min_secs = 'long'"):
        parse_suite({"name": "s", "models": [{"path": str(conv_tflite)}], "min_secs": "long"})
    assert parse_suite({"name": "s", "models": [{"path": str(conv_tflite)}],
                        "min_secs": 0.5}).min_secs == 0.5
    s = load_suite(write_suite(tmp_path / "s.yaml", conv_tflite, ["host"],
                               modes=["default", {"mask": "1", "threads": 1}]))
    assert [m.label for m in s.modes] == ["default", "1/1t"] and s.models[0].name == "conv"
    with pytest.raises(SuiteError, match=r"models\[0\].per_layer = 'no'.*true or false"):
        parse_suite({"name": "s", "models": [{"path": str(conv_tflite), "per_layer": "no"}]})
    s = parse_suite({"name": "s", "per_layer": True, "models": [
        {"name": "a", "path": str(conv_tflite)},
        {"name": "b", "path": str(conv_tflite), "per_layer": False}]})
    assert s.per_layer and [m.per_layer for m in s.models] == [None, False]


def test_several_phones_at_once_one_disconnecting(tmp_path, conv_tflite, adb_port, capsys):
    p4 = attach(adb_port, "pixel4", tmp_path)
    p6 = attach(adb_port, "pixel6", tmp_path)
    p6.fault = "disconnect"
    binary = tmp_path / "benchmark_model"
    binary.write_bytes(fake_benchmark_binary())
    suite = write_suite(tmp_path / "s.yaml", conv_tflite, ["all"],
                        modes=["default", {"mask": "f0", "threads": 2}])
    store = tmp_path / "bench.sqlite"
    rc = bench_cli.main(["--store", str(store), "run", str(suite), "--benchmark-binary",
                         str(binary), "--adb-port", str(adb_port), "--run-id", "r1"])
    out = capsys.readouterr()
    assert rc == 1  # a device failed
    assert "2 of 4 job(s) measured" in out.out and "FAILED pixel6" in out.out
    assert "not run: " in out.out  # the lost phone's second job is a failure, not forgotten
    from toolkit.devices.store import ResultStore

    with ResultStore(store) as st:
        valid = st.results()
        assert {r.device for r in valid} == {"pixel4"} and len(valid) == 2
        assert {r.meta["mode"] for r in valid} == {"default", "f0/2t"}
        assert all(r.meta["bench_run"] == "r1" and "git" in r.meta for r in valid)
        assert st.count("invalid") == 1  # the disconnected phone's run, never stored as valid
    assert p4.benchmark_runs == 6 and p6.benchmark_runs == 1


def test_regressions_slowdown_caught_noise_not(tmp_path, conv_tflite, adb_port, capsys):
    phone = attach(adb_port, "xiaomi11", tmp_path)
    binary = tmp_path / "benchmark_model"
    binary.write_bytes(fake_benchmark_binary())
    suite = write_suite(tmp_path / "s.yaml", conv_tflite, ["xiaomi11"], repeats=5, runs=30)
    store = str(tmp_path / "bench.sqlite")
    common = ["--store", store, "run", str(suite), "--benchmark-binary", str(binary),
              "--adb-port", str(adb_port)]
    assert bench_cli.main([*common, "--run-id", "base"]) == 0
    assert bench_cli.main([*common, "--run-id", "same"]) == 0
    from toolkit.devices.store import ResultStore

    with ResultStore(store) as st:
        base_ms = [r.median_ms for r in st.results() if r.meta["bench_run"] == "base"][0]
    phone.slowdown_us = 1000 * base_ms  # every inference takes twice as long
    assert bench_cli.main([*common, "--run-id", "slow"]) == 0
    capsys.readouterr()
    assert bench_cli.main(["--store", store, "compare", "base", "same"]) == 0
    assert "0 regression(s)" in capsys.readouterr().out
    md, xml, gh = tmp_path / "c.md", tmp_path / "c.xml", tmp_path / "c.json"
    rc = bench_cli.main(["--store", store, "compare", "base", "slow", "--markdown", str(md),
                         "--junit", str(xml), "--github-json", str(gh)])
    assert rc == 1 and "regression" in md.read_text()
    suite_el = ET.parse(xml).getroot()
    assert suite_el.get("failures") == "1" and suite_el.find("testcase/failure") is not None
    g = json.loads(gh.read_text())
    assert g[0]["unit"] == "ms" and g[0]["value"] > 1.5 * base_ms
    assert bench_cli.main(["--store", store, "compare", "base", "slow", "--report-only"]) == 0
    # baselines frozen to JSON compare the same way
    bl = tmp_path / "baseline.json"
    assert bench_cli.main(["--store", store, "baseline", "base", "-o", str(bl)]) == 0
    assert bench_cli.main(["--store", store, "compare", str(bl), "latest"]) == 1
    # the report renders: HTML with embedded plots, Markdown, PNGs
    capsys.readouterr()
    assert bench_cli.main(["--store", store, "report", "-o", str(tmp_path / "rep")]) == 0
    page = (tmp_path / "rep" / "report.html").read_text()
    assert page.count("data:image/png;base64,") >= 1 and "<table>" in page
    (png,) = (tmp_path / "rep").glob("history_conv_*.png")
    assert png.stat().st_size > 5000
    # memory and delegation are in the report and the comparison, not only latency
    rep = (tmp_path / "rep" / "report.md").read_text()
    assert "peak memory (MB)" in rep and "xnnpack" in rep and "not reported" not in rep
    assert "peak memory (MB)" in md.read_text()


def test_compare_rules():
    def e(ms, std, binary="b", name="m"):
        return Entry(name, "host", "s", "default", ms, std, 5, "litert-host", binary, 1, "1")

    rows = compare([e(10, 0.1)], [e(10.3, 0.1)])
    assert rows[0].status == "unchanged"  # 3% < 5% floor
    rows = compare([e(10, 0.1)], [e(11, 0.1)])
    assert rows[0].status == "regression"  # 10% > max(5%, 3 * 0.14 ms)
    rows = compare([e(10, 1.0)], [e(11, 1.0)])
    assert rows[0].status == "unchanged"  # the same 10% is noise on a noisy device
    rows = compare([e(10, 0.1)], [e(8, 0.1)])
    assert rows[0].status == "improvement"
    rows = compare([e(10, 0.1)], [e(20, 0.1, binary="other")])
    assert rows[0].status == "not comparable"  # different binaries are never mixed
    best = Entry("m", "host", "s", "default", 10, 0.1, 5, "litert-host", "b", 1, "1", "best")
    assert compare([e(10, 0.1)], [best])[0].status == "not comparable"  # median vs fastest run
    rows = compare([e(10, 0.1)], [e(10, 0.1, name="n")])
    assert {r.status for r in rows} == {"missing", "new"}


def test_host_suite_on_a_fresh_store(tmp_path, conv_tflite, adb_port, capsys):
    suite = write_suite(tmp_path / "s.yaml", conv_tflite, ["pixel4"])
    store = str(tmp_path / "b.sqlite")
    # no phone attached: refuses, unless asked to fall back to the host
    assert bench_cli.main(["--store", store, "run", str(suite), "--adb-port",
                           str(adb_port)]) == 2
    assert "fallback-host" in capsys.readouterr().err
    assert bench_cli.main(["--store", store, "run", str(suite), "--fallback-host",
                           "--adb-port", str(adb_port)]) == 0
    assert "on host" in capsys.readouterr().out


def test_a_models_own_per_layer_overrides_the_suites(tmp_path, conv_tflite, capsys):
    suite = write_suite(tmp_path / "s.yaml", conv_tflite, ["host"], per_layer=True,
                        repeats=1, runs=5)
    data = json.loads(suite.read_text())
    data["models"].append({"name": "plain", "path": str(conv_tflite), "per_layer": False})
    suite.write_text(json.dumps(data))
    store = str(tmp_path / "b.sqlite")
    assert bench_cli.main(["--store", store, "run", str(suite)]) == 0
    with ResultStore(store) as st:
        ops = {r.meta["model"]: len(r.op_rows) for r in st.results()}
    assert ops["conv"] > 0 and ops["plain"] == 0


def test_compare_flags_memory_and_delegation_regressions():
    def e(ms, peak=None, deleg=None):
        return Entry("m", "pixel4", "s", "gold-1t", ms, 0.1, 5, "bm", "b", 1, "70", "median",
                     peak, deleg)

    assert compare([e(10, 50.0)], [e(10, 54.0)])[0].status == "unchanged"  # +8%: noise
    row = compare([e(10, 50.0)], [e(10, 60.0)])[0]
    assert row.status == "regression" and "peak memory 50.0 -> 60.0 MB" in row.notes[0]
    row = compare([e(10, None, "gpu 49/49")], [e(10, None, "gpu 40/49")])[0]
    assert row.status == "regression" and "delegation gpu 49/49 -> gpu 40/49" in row.notes[0]
    assert compare([e(10, None, "xnnpack 9/9")], [e(10, None, "none")])[0].status == "regression"
    old = Entry("m", "pixel4", "s", "gold-1t", 10, 0.1, 5, "bm", "b", 1, "70")  # old baseline
    assert compare([old], [e(10, 60.0)])[0].status == "unchanged"
    from toolkit.bench.compare import markdown

    assert "peak memory (MB)" in markdown([row], "a", "b")


def test_suite_accelerator_is_validated_and_checked_against_each_device(tmp_path, conv_tflite):
    from toolkit.bench.runner import run_suite
    from toolkit.devices.host import HostDevice

    base = {"name": "acc", "models": [{"name": "conv", "path": str(conv_tflite)}]}
    with pytest.raises(SuiteError, match="accelerator = 'tpu' is not valid"):
        parse_suite({**base, "accelerator": "tpu"})
    suite = parse_suite({**base, "accelerator": "gpu"})
    store = tmp_path / "s.sqlite"
    with pytest.raises(SuiteError, match="host has no gpu accelerator"):
        run_suite(suite, [HostDevice()], store, log=lambda s: None)
    assert not store.exists()  # refused before any work


def test_store_after_the_subcommand_json_list_and_compare(tmp_path, conv_tflite, capsys,
                                                          monkeypatch):
    """--store goes before or after the subcommand; list and compare speak JSON; the suite's
    devices may be replaced by --device, here the host by an alias of host.yaml."""
    monkeypatch.delenv("EVIT_STORE", raising=False)
    monkeypatch.delenv("EVIT_BENCH_STORE", raising=False)
    suite = write_suite(tmp_path / "s.yaml", conv_tflite, ["pixel4"], repeats=1, runs=5)
    store = str(tmp_path / "b.sqlite")
    for rid in ("a", "b"):
        assert bench_cli.main(["run", str(suite), "--store", store, "--device", "this-machine",
                               "--run-id", rid]) == 0
    assert "on host" in capsys.readouterr().out
    assert bench_cli.main(["list", "--store", store, "--json"]) == 0
    runs = json.loads(capsys.readouterr().out)
    assert [r["run"] for r in runs] == ["a", "b"] and runs[0]["results"] == 1
    assert bench_cli.main(["--store", "elsewhere.sqlite", "compare", "a", "b", "--store", store,
                           "--json", "--report-only"]) == 0  # the subcommand's --store wins
    (row,) = json.loads(capsys.readouterr().out)
    assert row["name"] == "conv [host default]" and row["base"]["device"] == "host"
    assert row["status"] in ("unchanged", "regression", "improvement")
    assert bench_cli.main(["list", "--store", str(tmp_path / "none.sqlite"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []


def test_one_store_variable_and_the_old_one_with_a_note(tmp_path, monkeypatch, capsys):
    from toolkit.cli import profile as profile_cli
    from toolkit.devices.store import default_store

    monkeypatch.delenv("EVIT_STORE", raising=False)
    monkeypatch.delenv("EVIT_BENCH_STORE", raising=False)
    assert default_store("bench") == os.path.join("runs", "bench.sqlite")
    assert default_store("results") == os.path.join("runs", "results.sqlite")  # evit-profile
    old = tmp_path / "old.sqlite"
    monkeypatch.setenv("EVIT_BENCH_STORE", str(old))
    assert bench_cli.main(["list"]) == 0
    cap = capsys.readouterr()
    assert "EVIT_BENCH_STORE is deprecated" in cap.err and "EVIT_STORE" in cap.err
    assert f"no store at {old}" in cap.out
    new = tmp_path / "new.sqlite"
    monkeypatch.setenv("EVIT_STORE", str(new))  # the one variable wins, silently
    assert bench_cli.main(["list"]) == 0
    cap = capsys.readouterr()
    assert "deprecated" not in cap.err and f"no store at {new}" in cap.out
    assert profile_cli.resolve_store(None) == str(new)  # evit-profile reads the same one
