"""The device layer end to end: adbutils -> the real adb server -> the loopback test phone,
and the host device. No phone needed; the adb server is the real binary that ships with adbutils.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import socket
import subprocess
import threading
import time
from pathlib import Path

import adbutils
import pytest
import torch
from testphone import TestPhone, fake_benchmark_binary
from testphone import available as phone_available

from device_profiles import ProfileError, get_profile, list_profiles, match_profile, parse_profile
from toolkit.cli import main as evit_main
from toolkit.cli import profile as profile_cli
from toolkit.devices.adb import AdbDevice, client, list_attached
from toolkit.devices.base import BinaryError, DeviceError, DeviceTimeout, RunSpec
from toolkit.devices.binary import check_binary, download_binary, resolve_binary
from toolkit.devices.host import HostDevice
from toolkit.devices.measure import MeasurementError, measure
from toolkit.devices.store import Result, ResultStore, StoreError

QUICK = RunSpec(warmup_runs=2, num_runs=10, repeats=2, timeout_s=60, max_cooldown_s=0)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def tiny_tflite(tmp_path_factory) -> Path:
    from converters import convert_tflite

    class Tiny(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.c = torch.nn.Conv2d(3, 16, 3, 2, 1)
            self.d = torch.nn.Conv2d(16, 16, 3, 1, 1, groups=16)
            self.fc = torch.nn.Linear(16, 10)

        def forward(self, x):
            x = torch.nn.functional.hardswish(self.d(torch.relu(self.c(x))))
            return self.fc(x.mean((2, 3)))

    out = tmp_path_factory.mktemp("models") / "tiny.tflite"
    convert_tflite(Tiny().eval(), (torch.randn(1, 3, 32, 32),), out)
    return out


@pytest.fixture(scope="module")
def adb_server():
    """A real adb server on a private port, killed afterwards."""
    port = free_port()
    c = client(port)
    yield c
    subprocess.run([adbutils.adb_path(), "kill-server"], timeout=30,
                   env={**os.environ, "ANDROID_ADB_SERVER_PORT": str(port)}, check=False)


@pytest.fixture
def binary(tmp_path) -> Path:
    p = tmp_path / "android_aarch64_benchmark_model"
    p.write_bytes(fake_benchmark_binary())
    return p


class Phones:
    def __init__(self, c, root: Path):
        self.c, self.root, self.phones = c, root, []

    def attach(self, profile="pixel4", state="device", wait=True) -> TestPhone:
        phone = TestPhone(profile, self.root / f"phone{len(self.phones)}", state=state).start()
        self.phones.append(phone)
        if state == "offline":  # adb waits for a handshake that never comes: don't block on it
            threading.Thread(target=self._connect_quietly, args=(phone.address,),
                             daemon=True).start()
        else:
            self.c.connect(phone.address, timeout=5)
        want = {"device": "device", "unauthorized": "unauthorized", "offline": "offline"}[state]
        deadline = time.monotonic() + 10
        while wait and time.monotonic() < deadline:
            states = {d.serial: d.state for d in self.c.list()}
            if states.get(phone.address) == want:
                break
            time.sleep(0.1)
        return phone

    def _connect_quietly(self, address):
        with contextlib.suppress(adbutils.AdbError):
            self.c.connect(address, timeout=10)

    def close(self):
        for p in self.phones:
            with contextlib.suppress(adbutils.AdbError):
                self.c.disconnect(p.address)
            p.vanish()


@pytest.fixture
def phones(adb_server, tmp_path):
    ok, why = phone_available()
    assert ok, f"the test phone needs Android's shell and tools here: {why}"
    ph = Phones(adb_server, tmp_path)
    yield ph
    ph.close()


def open_phone(c, phone, binary_path) -> AdbDevice:
    return AdbDevice(c, phone.address, binary=check_binary(binary_path))


# -- profiles ------------------------------------------------------------------------------

def test_shipped_profiles_and_matching():
    profiles = list_profiles()
    assert {"pixel1", "pixel4", "pixel6", "xiaomi11", "host"} <= set(profiles)
    assert match_profile({"ro.product.device": "venus", "ro.product.model": "M2011K2G"}).name == (
        "xiaomi11")
    assert match_profile({"ro.product.device": "sailfish"}).name == "pixel1"
    assert match_profile({"ro.product.model": "Pixel 6"}).name == "pixel6"
    assert match_profile({"ro.product.device": "zz"}) is None
    assert get_profile("Oriole").name == "pixel6"
    p4 = get_profile("pixel4")
    assert p4.mode("gold-1t").cpus == (4, 5, 6) and p4.mode().mask == "70"
    host = get_profile("host")
    assert host.clusters and host.soc and host.mode("1t").threads == 1


def test_profile_validation_and_user_profiles(tmp_path, monkeypatch):
    with pytest.raises(ProfileError, match=r"modes\.x.threads = 3.*at most 1"):
        parse_profile({"name": "p", "modes": {"x": {"mask": "80", "threads": 3}}})
    with pytest.raises(ProfileError, match="no 0x|hex without 0x"):
        parse_profile({"name": "p", "modes": {"x": {"mask": "0x80", "threads": 1}}})
    with pytest.raises(ProfileError, match="unknown field"):
        parse_profile({"name": "p", "mode": {}})
    with pytest.raises(ProfileError, match="unknown device 'pixel9'.*copy"):
        get_profile("pixel9")
    (tmp_path / "pixel7.yaml").write_text(
        "name: pixel7\nmatch: {ro.product.device: [panther]}\nmodes: {big-1t: {mask: '80', "
        "threads: 1}}\n")
    monkeypatch.setenv("EVIT_DEVICE_PROFILES", str(tmp_path))
    assert match_profile({"ro.product.device": "panther"}).name == "pixel7"
    (tmp_path / "broken.yaml").write_text("name: [unclosed\n")
    with pytest.raises(ProfileError, match="broken.yaml: not valid YAML"):
        list_profiles()


# -- the phone's shell is Android's: mksh and toybox --------------------------------------

def test_the_test_phone_runs_androids_own_shell_and_tools(phones):
    phone = phones.attach("pixel4")
    sh = AdbDevice(phones.c, phone.address, get_profile("pixel4"))
    r = sh.shell('echo "$KSH_VERSION"; readlink /system/bin/ls; toybox --version; '
                 "getprop ro.product.model; echo a'b c'\"d\" $(echo e) `echo f`; false || echo g")
    lines = r.stdout.splitlines()
    assert lines[0].startswith("@(#)MIRBSD KSH") and lines[1] == "toybox"
    assert lines[2].startswith("toybox") and lines[3] == "Pixel 4"
    assert lines[4:] == ["ab cd e f", "g"]
    # the phone's processes only, and a process the host left running is still there
    ps = sh.shell("sleep 30 >/dev/null 2>&1 & ps -A -o PID,ARGS").stdout
    assert "sleep 30" in ps and "pytest" not in ps
    sh.shell("pkill -f 'sleep 30'")
    assert "sleep 30" not in sh.shell("ps -A -o ARGS").stdout
    bad = sh.shell("taskset 100 /system/bin/true")  # pixel4 has 8 cores
    assert bad.returncode == 1 and "Invalid argument" in bad.stderr


# -- adb: listing, states, identity ----------------------------------------------------------

def test_attached_phones_are_matched_and_unknown_or_broken_ones_explained(phones, tmp_path):
    p4 = phones.attach("pixel4")
    unknown = parse_profile({"name": "oddphone", "match": {"ro.product.device": ["zeta"]},
                             "clusters": [{"name": "all", "cpus": [0, 1], "max_mhz": 2000}],
                             "modes": {"1t": {"mask": "1", "threads": 1}}})
    odd = phones.attach(unknown)
    unauth = phones.attach("pixel6", state="unauthorized")
    off = phones.attach("xiaomi11", state="offline")
    seen = {d.serial: d for d in list_attached(phones.c)}
    assert seen[p4.address].profile.name == "pixel4"
    assert seen[p4.address].props["ro.product.model"] == "Pixel 4"
    assert seen[odd.address].profile is None
    assert "unknown phone" in seen[odd.address].describe()
    assert "ro.product.device: [zeta]" in seen[odd.address].describe()
    assert seen[unauth.address].state == "unauthorized"
    assert "accept the USB-debugging prompt" in seen[unauth.address].describe()
    assert seen[off.address].state == "offline"
    with pytest.raises(DeviceError, match="unknown phone"):
        AdbDevice(phones.c, odd.address)


def test_evit_devices_json(phones, capsys):
    phone = phones.attach("pixel6")
    port = phones.c.port
    assert evit_main.main(["devices", "--json", "--adb-port", str(port)]) == 0
    out = json.loads(capsys.readouterr().out)
    mine = [d for d in out["attached"] if d["serial"] == phone.address]
    assert mine and mine[0]["profile"] == "pixel6"
    assert {p["name"] for p in out["profiles"]} >= {"pixel1", "pixel4", "pixel6", "xiaomi11"}


def test_hygiene_reads_profile_frequencies_and_thermal_state(phones, binary):
    phone = phones.attach("pixel4")
    dev = open_phone(phones.c, phone, binary)
    snap = dev.snapshot()
    assert snap.cpuinfo_max_khz[7] == 2841600 and snap.cpuinfo_max_khz[0] == 1785600
    assert snap.thermal_status == 0 and not snap.throttled and snap.governor[4] == "schedutil"
    phone.throttle(60)
    snap = dev.snapshot()
    assert snap.thermal_status == 3 and snap.throttled
    assert snap.capped() == ["cpu7:1704960<2841600"]
    assert snap.max_temp_c == pytest.approx(71.2)


# -- measuring through the phone ----------------------------------------------------------

def test_measure_on_phone_stores_provenance(phones, binary, tiny_tflite, tmp_path):
    phone = phones.attach("pixel6")
    dev = open_phone(phones.c, phone, binary)
    spec = RunSpec(mode="big-2t", warmup_runs=2, num_runs=10, repeats=3, op_profiling=True,
                   timeout_s=60, max_cooldown_s=0)
    with ResultStore(tmp_path / "r.sqlite") as store:
        r = measure(dev, tiny_tflite, spec, store=store, label="t")
        back = store.get(r.id)
    assert back.status == "valid" and back.device == "pixel6" and back.mask == "c0"
    assert back.threads == 2 and len(back.repeat_rows) == 3
    assert 0 < back.median_ms < 50 and back.p90_ms >= back.median_ms
    assert back.fingerprint["ro.product.device"] == "oriole"
    assert "oriole" in back.fingerprint["ro.build.fingerprint"]
    assert back.binary_sha256 == check_binary(binary).sha256
    assert back.versions["ai-edge-litert"]
    types = [o["node_type"] for o in back.op_rows]
    assert "CONV_2D" in types and "DEPTHWISE_CONV_2D" in types and "FULLY_CONNECTED" in types
    assert phone.benchmark_runs == 4  # 3 timed + 1 op-profiling invocation
    # the command really went through taskset with the mode's mask, every argument quoted
    bench = [c for c in phone.log if "benchmark_model" in c and "taskset" in c]
    assert bench and all(c.startswith("taskset c0 ") for c in bench)
    # cleanup removed the model (and the CSV) but kept the binary for the next run
    left = sorted(p.name for p in (phone.root / "data/local/tmp/evit").iterdir())
    assert left == ["benchmark_model"]
    # a second measurement does not push the binary again (hash checked on the device)
    measure(dev, tiny_tflite, QUICK)
    assert sum("sha256sum" in c and c.endswith("benchmark_model'") or
               c.endswith("/benchmark_model") for c in phone.log) >= 1


def test_cooldown_wait_is_bounded_and_flagged(phones, binary, tiny_tflite):
    phone = phones.attach("pixel4")
    dev = open_phone(phones.c, phone, binary)
    phone.throttle(1.0)
    spec = RunSpec(warmup_runs=1, num_runs=5, repeats=1, timeout_s=60, max_cooldown_s=10,
                   cooldown_poll_s=0.3)
    r = measure(dev, tiny_tflite, spec)
    assert any("waited" in f for f in r.flags) and not any("throttled" in f for f in r.flags)
    phone.throttle(60)
    t0 = time.monotonic()
    r = measure(dev, tiny_tflite, RunSpec(warmup_runs=1, num_runs=5, repeats=1, timeout_s=60,
                                          max_cooldown_s=1.0, cooldown_poll_s=0.3))
    assert time.monotonic() - t0 < 30
    assert any("throttled during repeat 0" in f and "cpu7" in f for f in r.flags)


def test_security_names_and_arguments_reach_the_device_unchanged(phones, binary, tmp_path,
                                                                 tiny_tflite):
    phone = phones.attach("pixel4")
    dev = open_phone(phones.c, phone, binary)
    evil = "m 'q' \"d\"; touch pwned1 $(touch pwned2) `touch pwned3` && x.tflite"
    model = tmp_path / evil
    model.write_bytes(tiny_tflite.read_bytes())
    dev.remote_dir = "/data/local/tmp/evit dir;$(touch pwned4)"
    remote = dev.prepare_model(str(model))
    assert remote.endswith(evil)
    on_phone = phone.host_path(remote)
    assert on_phone.is_file() and on_phone.name == evil
    r = measure(dev, model, QUICK)
    assert r.status == "valid" and r.model_name == evil
    created = [p.name for p in phone.root.rglob("pwned*")]
    assert created == [], f"injected commands ran on the device: {created}"
    # the device's shell (mksh) gave benchmark_model one --graph argument carrying the whole
    # name, and nothing else ran
    assert f"--graph={remote}" in phone.last_benchmark_argv
    # a newline and a leading '-' too
    odd = tmp_path / "-rf x\n$(touch pwned5).tflite"
    odd.write_bytes(tiny_tflite.read_bytes())
    dev.remote_dir = "/data/local/tmp/-evit"
    r = measure(dev, odd, QUICK)
    assert r.status == "valid" and r.model_name == odd.name
    remote = next(a for a in phone.last_benchmark_argv if a.startswith("--graph="))[8:]
    assert remote == f"/data/local/tmp/-evit/{odd.name}"  # one argument, newline and all
    assert [p.name for p in phone.root.rglob("pwned*")] == []


def test_disconnect_mid_run_stores_nothing_valid(phones, binary, tiny_tflite, tmp_path):
    phone = phones.attach("xiaomi11")
    dev = open_phone(phones.c, phone, binary)
    phone.fault = "disconnect"
    with ResultStore(tmp_path / "r.sqlite") as store:
        with pytest.raises(MeasurementError, match="disconnected|connection lost"):
            measure(dev, tiny_tflite, QUICK, store=store)
        assert store.count("valid") == 0 and store.count("invalid") == 1
        bad = store.results(status="invalid")[0]
        assert "DeviceGone" in bad.error and bad.median_ms is None


def test_hung_run_is_killed_by_its_timeout(phones, binary, tiny_tflite, tmp_path):
    phone = phones.attach("pixel1")
    dev = open_phone(phones.c, phone, binary)
    phone.fault = "hang"
    spec = RunSpec(warmup_runs=1, num_runs=5, repeats=1, timeout_s=3, max_cooldown_s=0)
    t0 = time.monotonic()
    with ResultStore(tmp_path / "r.sqlite") as store:
        with pytest.raises(MeasurementError, match="timed out after 3 s"):
            measure(dev, tiny_tflite, spec, store=store)
        assert store.count("valid") == 0
    assert time.monotonic() - t0 < 20
    assert not any("pkill" in c for c in phone.log)  # only our own run is killed, by pid
    assert any("kill -9" in c for c in phone.log)  # nothing left running on the phone


def test_garbage_output_and_crash_are_invalid(phones, binary, tiny_tflite, tmp_path):
    phone = phones.attach("pixel4")
    dev = open_phone(phones.c, phone, binary)
    with ResultStore(tmp_path / "r.sqlite") as store:
        phone.fault = "garbage"
        with pytest.raises(MeasurementError, match="no timing line"):
            measure(dev, tiny_tflite, QUICK, store=store)
        phone.fault = "crash"
        with pytest.raises(MeasurementError, match="exited with 139.*Segmentation"):
            measure(dev, tiny_tflite, QUICK, store=store)
        assert store.count("valid") == 0 and store.count("invalid") == 2


def test_evit_profile_cli_on_the_phone(phones, binary, tiny_tflite, tmp_path, capsys):
    phone = phones.attach("pixel4")
    store = tmp_path / "r.sqlite"
    args = ["--device", "pixel4", "--serial", phone.address, "--tflite", str(tiny_tflite),
            "--per-layer", "--runs", "10", "--warmup", "2", "--repeats", "2", "--store",
            str(store), "--benchmark-binary", str(binary), "--adb-port", str(phones.c.port),
            "--max-cooldown", "0"]
    assert profile_cli.main(args) == 0
    out = capsys.readouterr().out
    assert "median" in out and "p90" in out and "mask 70" in out and "CONV_2D" in out
    assert "stored as result 1" in out
    # no binary: a clear error, nothing run
    rc = profile_cli.main(args[:-8] + ["--store", str(store), "--adb-port", str(phones.c.port)])
    assert rc == 1 and "--benchmark-binary" in capsys.readouterr().err


# -- benchmark_model binaries --------------------------------------------------------------

def test_binary_checks(tmp_path, binary, monkeypatch):
    x86 = tmp_path / "x86"
    data = bytearray(fake_benchmark_binary())
    data[18:20] = (62).to_bytes(2, "little")
    x86.write_bytes(bytes(data))
    with pytest.raises(BinaryError, match="machine 62, not aarch64"):
        check_binary(x86)
    (tmp_path / "script").write_text("#!/bin/sh\n")
    with pytest.raises(BinaryError, match="not an ELF"):
        check_binary(tmp_path / "script")
    with pytest.raises(BinaryError, match="expected 00"):
        check_binary(binary, sha256="00" * 32)
    monkeypatch.delenv("EVIT_BENCHMARK_MODEL", raising=False)
    with pytest.raises(BinaryError, match="--benchmark-binary PATH"):
        resolve_binary()
    monkeypatch.setenv("EVIT_BENCHMARK_MODEL", str(binary))
    assert resolve_binary().path == binary


def test_download_is_verified_and_cached(tmp_path, binary, monkeypatch):
    monkeypatch.setenv("EVIT_CACHE", str(tmp_path / "cache"))
    handler = lambda *a, **k: http.server.SimpleHTTPRequestHandler(  # noqa: E731
        *a, directory=str(binary.parent), **k)
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{httpd.server_address[1]}/{binary.name}"
    try:
        want = check_binary(binary).sha256
        got = download_binary(url, sha256=want)
        assert got.sha256 == want and got.path.parent == tmp_path / "cache" / "benchmark_model"
        with pytest.raises(BinaryError, match="expected"):
            download_binary(url, sha256="ab" * 32)
        assert sorted(p.name for p in got.path.parent.iterdir()) == [want]  # no partial files
        with pytest.raises(BinaryError, match="could not download"):
            download_binary(url + ".missing")
    finally:
        httpd.shutdown()


# -- the host ------------------------------------------------------------------------------

def test_host_device_measures_with_the_same_parser(tiny_tflite, tmp_path):
    dev = HostDevice()
    with ResultStore(tmp_path / "r.sqlite") as store:
        r = measure(dev, tiny_tflite, RunSpec(warmup_runs=2, num_runs=20, repeats=3,
                                              op_profiling=True, max_cooldown_s=0), store=store)
    assert r.status == "valid" and r.device == "host" and r.runtime == "litert-host"
    assert r.fingerprint["cpu"] and r.mask == dev.profile.mode().mask
    assert len(r.repeat_rows) == 3 and r.median_ms > 0
    assert {"CONV_2D", "FULLY_CONNECTED"} <= {o["node_type"] for o in r.op_rows}
    # --min_secs: each invocation keeps running past num_runs until that much time has passed
    r = measure(dev, tiny_tflite, RunSpec(warmup_runs=1, num_runs=2, repeats=1, min_secs=0.3,
                                          max_cooldown_s=0))
    assert r.repeat_rows[0]["count"] > 2 and r.meta["min_secs"] == 0.3
    assert "--min_secs=0.3" in RunSpec(min_secs=0.3).flags("m.tflite", 1).argv()
    with pytest.raises(DeviceTimeout, match="timed out"):
        dev.run_benchmark(RunSpec(num_runs=10**9, warmup_runs=1).flags(str(tiny_tflite), 1),
                          dev.profile.mode().mask, timeout=2)
    with pytest.raises(DeviceError, match="exceeds"):
        RunSpec(threads=64).resolve(dev.profile)


# -- the store -----------------------------------------------------------------------------

def _result(**kw) -> Result:
    base = dict(device="host", serial="s", fingerprint={"cpu": "x"}, model_name="m",
                model_sha256="a" * 64, model_bytes=1, runtime="litert-host", binary_sha256="b",
                mode="1t", mask="1", threads=1, delegate="xnnpack", warmup_runs=1, num_runs=5,
                repeats=1, median_ms=1.0)
    return Result(**{**base, **kw})


def test_store_keys_never_mix_and_bad_input_does_not_corrupt(tmp_path):
    path = tmp_path / "r.sqlite"
    with ResultStore(path) as store:
        a = store.add(_result())
        store.add(_result(threads=2, mask="3"))
        store.add(_result(binary_sha256="c"))
        first = store.get(a)
        assert len(store.results(config=first.config_key)) == 1
        with pytest.raises(StoreError, match="status"):
            store.add(_result(status="maybe"))
        with pytest.raises(StoreError, match="nothing was written"):  # rolled back
            store.add(_result(op_rows=[{"node_type": "X"}]))
        assert store.count() == 3
    bad = tmp_path / "bad.sqlite"
    bad.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreError, match="not a usable evit result store"):
        ResultStore(bad)


def test_store_opened_by_several_threads_at_once_when_new(tmp_path):
    """evit-bench's workers (one per device) may open a new store at the same moment: each
    gets a working store (SQLite refuses a second concurrent switch to WAL at once)."""
    for trial in range(15):
        path = tmp_path / f"s{trial}.sqlite"
        gate, errors = threading.Barrier(6), []

        def open_and_add(path=path, gate=gate, errors=errors):
            gate.wait()
            try:
                with ResultStore(path) as st:
                    st.add(_result())
            except StoreError as e:
                errors.append(e)

        threads = [threading.Thread(target=open_and_add) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        with ResultStore(path) as st:
            assert st.count() == 6


def test_best_statistic_and_profile_statistic_field():
    from device_profiles import ProfileError, get_profile, parse_profile
    from toolkit.devices.store import Result

    assert get_profile("host").statistic == "best" and get_profile("pixel4").statistic == "median"
    base = {"name": "p", "modes": {"1t": {"mask": "1", "threads": 1}}}
    with pytest.raises(ProfileError, match="statistic = 'mean'.*median, best"):
        parse_profile({**base, "statistic": "mean"})
    r = Result(device="host", serial="s", fingerprint={}, model_name="m", model_sha256="x",
               model_bytes=1, runtime="r", binary_sha256="b", mode="1t", mask="1", threads=1,
               delegate="xnnpack", warmup_runs=1, num_runs=5, repeats=3, median_ms=30.0)
    r.repeat_rows = [{"min_us": 21000.0}, {"min_us": 29000.0}, {"min_us": 20000.0}]
    assert r.best_ms == 20.0 and r.latency_ms("best") == 20.0 and r.latency_ms() == 30.0
    r.repeat_rows = [{"min_us": None}]  # an output without min=: fall back to the median
    assert r.best_ms is None and r.latency_ms("best") == 30.0


def test_evit_profile_old_model_flag_still_works_with_a_note(tmp_path, capsys):
    # --model named a .tflite here and a named model in evit-export: now --tflite
    rc = profile_cli.main(["--device", "host", "--model", str(tmp_path / "none.tflite"),
                           "--store", str(tmp_path / "s.sqlite")])
    err = capsys.readouterr().err
    assert rc == 1 and "--model is deprecated" in err and "use --tflite" in err
    assert "--tflite " + str(tmp_path / "none.tflite") + ": cannot read it" in err


def test_evit_profile_refuses_zero_runs_or_repeats(capsys):
    assert profile_cli.main(["--device", "host", "--runs", "0"]) == 2
    assert "--runs 0: give at least 1" in capsys.readouterr().err
    assert profile_cli.main(["--device", "host", "--tflite", "m.tflite", "--repeats", "-1"]) == 2
    assert "--repeats -1" in capsys.readouterr().err
    assert profile_cli.main(["--device", "host", "--min-secs", "-1"]) == 2
    assert "--min-secs -1: give 0-60 seconds" in capsys.readouterr().err
    assert profile_cli.main(["--device", "host", "--subnet-repeats", "-2"]) == 2
    assert "--subnet-repeats -2: give 1 or more" in capsys.readouterr().err
    assert profile_cli.main(["--device", "host", "--subnet-min-secs", "99"]) == 2
    assert "--subnet-min-secs 99: give 0-60 seconds" in capsys.readouterr().err


def test_devices_answer_to_the_names_users_type():
    for name, want in [("Google Pixel 4", "pixel4"), ("google-pixel-6 (Family)", "pixel6"),
                       ("Snapdragon 855", "pixel4"), ("Google Tensor", "pixel6"),
                       ("Qualcomm Snapdragon 888 (SM8350)", "xiaomi11"), ("pixel6_lut", "pixel6"),
                       ("cortexA76cpu_tflite21", "pixel4"), ("Pixel XL", "pixel1"),
                       ("flame", "pixel4"), ("CPU", "host")]:
        assert get_profile(name).name == want, name
    with pytest.raises(ProfileError, match=r"did you mean 'Snapdragon 855' \(pixel4\)"):
        get_profile("Snapdragon 8555")
    with pytest.raises(ProfileError, match="unknown device 'iphone'. Known"):
        get_profile("iphone")


# -- memory and delegation in every result ---------------------------------------------------

def test_host_results_carry_peak_memory_and_delegation(tiny_tflite, tmp_path):
    from toolkit.devices.measure import summary

    with ResultStore(tmp_path / "r.sqlite") as store:
        r = measure(HostDevice(), tiny_tflite, RunSpec(warmup_runs=1, num_runs=5, repeats=2,
                                                       max_cooldown_s=0), store=store)
        back = store.get(r.id)
    # the benchmark process's own peak resident set: Python and LiteRT, not this (much larger)
    # pytest process it was started from
    import resource

    parent_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    assert r.peak_memory_mb and 10 < r.peak_memory_mb < 400, (r.peak_memory_mb, parent_mb)
    assert (r.applied_delegate, r.partitions) == ("xnnpack", 1)
    assert r.delegated_nodes == r.total_nodes >= 4
    assert (back.peak_memory_mb, back.applied_delegate, back.delegated_nodes) == (
        r.peak_memory_mb, "xnnpack", r.delegated_nodes)
    assert "memory: peak" in summary(r) and "xnnpack" in summary(r)
    plain = measure(HostDevice(), tiny_tflite, RunSpec(warmup_runs=1, num_runs=3, repeats=1,
                                                       delegate="cpu", max_cooldown_s=0))
    assert plain.applied_delegate is None and plain.peak_memory_mb  # TFLite's own kernels


def test_a_delegate_that_does_not_apply_is_an_error_and_a_partial_one_a_flag(tmp_path):
    from converters import convert_tflite
    from toolkit.devices.benchmark_model import parse_output
    from toolkit.devices.measure import _record_memory_and_delegation

    class ArgMax(torch.nn.Module):  # ARG_MAX: no XNNPACK kernel
        def forward(self, x):
            return torch.relu(x * 2.0).argmax(dim=1).float() + 1.0

    path = tmp_path / "argmax.tflite"
    convert_tflite(ArgMax().eval(), (torch.randn(1, 8, 4),), path)
    r = measure(HostDevice(), path, RunSpec(warmup_runs=1, num_runs=3, repeats=1,
                                            max_cooldown_s=0))
    assert r.applied_delegate == "xnnpack" and r.delegated_nodes < r.total_nodes
    assert any("ran on the CPU kernels" in f for f in r.flags), r.flags
    out = parse_output("INFO: Replacing 0 out of 49 node(s) with delegate (TfLiteGpuDelegateV2) "
                       "node, yielding 0 partitions for subgraph 0.\nINFO: count=5 first=1 "
                       "curr=1 min=1 max=1 avg=1 std=0\n")
    with pytest.raises(DeviceError, match=r"gpu delegate did not apply \(0 of 49 nodes"):
        _record_memory_and_delegation(_result(), out, "gpu")


def test_accelerators_map_to_benchmark_model_flags_and_are_checked_first(tiny_tflite, capsys):
    from toolkit.cli.profile import resolve_delegate

    assert "--use_gpu=true" in RunSpec(delegate="gpu").flags("m", 1).argv()
    assert "--use_nnapi=true" in RunSpec(delegate="nnapi").flags("m", 1).argv()
    argv = RunSpec().flags("m", 1).argv()
    assert "--report_peak_memory_footprint=true" in argv and "--use_gpu=true" not in argv
    assert resolve_delegate("gpu", None, get_profile("pixel4")) == "gpu"
    assert resolve_delegate("cpu", None, get_profile("pixel4")) == "xnnpack"
    with pytest.raises(ValueError, match="pixel4 has no nnapi accelerator"):
        resolve_delegate("nnapi", None, get_profile("pixel4"))
    assert profile_cli.main(["--device", "host", "--tflite", str(tiny_tflite), "--accelerator",
                             "gpu"]) == 1
    assert "LiteRT on its CPU only" in capsys.readouterr().err


def test_a_schema_1_store_gains_the_new_columns(tmp_path):
    import sqlite3

    from toolkit.devices.store import ADDED_COLUMNS, SCHEMA

    old = SCHEMA
    for name, _ in ADDED_COLUMNS:  # the schema-1 table: without the added columns
        old = old.replace(f"    {name} REAL,", "").replace(f" {name} INTEGER,", "")
    old = old.replace("    applied_delegate TEXT,         -- the delegate that ran nodes (none: "
                      "the CPU kernels)\n", "").replace(
        "    delegated_nodes INTEGER, total_nodes INTEGER, partitions INTEGER,\n", "")
    path = tmp_path / "v1.sqlite"
    db = sqlite3.connect(path)
    db.executescript(old)
    assert "peak_memory_mb" not in {r[1] for r in db.execute("PRAGMA table_info(results)")}
    db.execute("INSERT INTO meta VALUES ('schema_version', '1')")
    db.commit()
    db.close()
    with ResultStore(path) as store:
        rid = store.add(_result(peak_memory_mb=12.5, applied_delegate="xnnpack"))
        assert store.get(rid).peak_memory_mb == 12.5
    with ResultStore(path) as store:  # and opens again as schema 2
        assert store.db.execute("SELECT value FROM meta").fetchone()[0] == "2"


def test_host_aliases_come_from_host_yaml(tmp_path, monkeypatch):
    """One resolution path (toolkit.devices.resolve) for evit-profile and evit-bench; the
    host's names are those its YAML lists, not a list in the code."""
    import yaml

    from device_profiles import HERE
    from toolkit.devices.resolve import is_host, open_device, resolve_devices

    for name in ["host", *get_profile("host").aliases]:
        assert is_host(name) and isinstance(open_device(name), HostDevice)
    data = yaml.safe_load((HERE / "host.yaml").read_text())
    data["aliases"] = ["my-box"]
    (tmp_path / "host.yaml").write_text(yaml.safe_dump(data))
    monkeypatch.setenv("EVIT_DEVICE_PROFILES", str(tmp_path))  # a user's host.yaml replaces it
    assert is_host("my-box") and not is_host("this-machine") and not is_host("pixel4")
    assert isinstance(open_device("My-Box"), HostDevice)
    (dev,) = resolve_devices(["my-box"], log=lambda m: None)
    assert isinstance(dev, HostDevice) and dev.profile.aliases == ("my-box",)
