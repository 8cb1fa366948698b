"""On-device hygiene (issue 20, finding 6): a timed-out benchmark kills only its own process, a
lost device is never read as "no per-layer CSV", the demo's exports have a deadline, and an
unpinned benchmark_model download says so. Phone tests use the loopback test phone
(tests/testphone: real mksh and toybox)."""

from __future__ import annotations

import http.server
import shutil
import subprocess
import sys
import threading
import time

import pytest
from test_devices import adb_server, binary, open_phone, phones, tiny_tflite  # noqa: F401
from testphone import fake_benchmark_binary

from toolkit import demo
from toolkit.devices.base import DeviceGone, DeviceTimeout, RunSpec
from toolkit.devices.binary import download_binary

FOREIGN = "/data/local/tmp/someone_else/benchmark_model"  # not ours, same name


def _running(dev, pid: int) -> str:
    """The process's command line ("" once it is gone or a zombie)."""
    r = dev.shell(f"cat /proc/{pid}/cmdline", timeout=10)
    return r.stdout.replace("\0", " ").strip() if r.returncode == 0 else ""


def _gone(dev, pid: int, within: float = 10.0) -> bool:
    deadline = time.monotonic() + within
    while _running(dev, pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


def test_a_timed_out_run_kills_its_own_benchmark_only(phones, binary, tiny_tflite):  # noqa: F811
    phone = phones.attach("pixel4")
    phone.hangup_kills = False  # as on a phone: a command the host gave up on keeps running
    dev = open_phone(phones.c, phone, binary)
    other = phone.host_path(FOREIGN)  # someone else's "benchmark_model": a sleep binary
    other.parent.mkdir(parents=True)
    shutil.copy2(shutil.which("sleep"), other)  # (the phone shares this machine's /usr)
    foreign = int(dev.shell(f"{FOREIGN} 600 >/dev/null 2>&1 & echo $!").stdout)
    assert FOREIGN in _running(dev, foreign)
    remote = dev.prepare_model(str(tiny_tflite))
    ours_path = f"{dev._dir()}/benchmark_model"
    spec = RunSpec(warmup_runs=1, num_runs=10**9, repeats=1)  # runs until it is killed
    raised = []

    def run():
        try:
            dev.run_benchmark(spec.flags(remote, 1), "70", timeout=6)
        except DeviceTimeout as e:
            raised.append(e)

    t = threading.Thread(target=run)
    t.start()
    ours, deadline = None, time.monotonic() + 6
    while ours is None and time.monotonic() < deadline:
        for line in dev.shell("ps -A -w -o PID,ARGS").stdout.splitlines():
            if f"litert_bench --evit_binary={ours_path}" in line:  # the phone's benchmark_model
                ours = int(line.split()[0])
        time.sleep(0.1)
    t.join(60)
    assert raised, "the benchmark did not time out"
    assert ours is not None, "our benchmark_model never showed up in ps"
    assert _gone(dev, ours), f"our timed-out benchmark_model {ours} is still running"
    assert FOREIGN in _running(dev, foreign), "the timeout killed someone else's benchmark_model"
    # it went by pid: nothing matched processes by name, and the pidfile is gone
    assert not any("pkill" in c or "killall" in c for c in phone.log)
    assert not list(phone.host_path(dev._dir()).glob("*.pid"))
    dev.shell(f"kill {foreign}")


def test_run_leaves_no_pidfile_after_cleanup(phones, binary, tiny_tflite):  # noqa: F811
    phone = phones.attach("pixel4")
    dev = open_phone(phones.c, phone, binary)
    remote = dev.prepare_model(str(tiny_tflite))
    out = dev.run_benchmark(RunSpec(warmup_runs=1, num_runs=3).flags(remote, 1), "70", 60)
    assert "count=" in out
    dev.cleanup()
    assert sorted(p.name for p in phone.host_path(dev._dir()).iterdir()) == ["benchmark_model"]


def test_a_lost_device_is_not_a_missing_op_csv(phones, binary):  # noqa: F811
    phone = phones.attach("pixel6")
    dev = open_phone(phones.c, phone, binary)
    csv = f"{dev._dir()}/m.tflite.ops.csv"
    phone.host_path(dev._dir()).mkdir(parents=True, exist_ok=True)
    assert dev.fetch_op_csv(csv) is None  # genuinely not written
    phone.host_path(csv).write_text("node type,avg_ms\nCONV_2D,1.0\n")
    assert dev.fetch_op_csv(csv).startswith("node type")
    phone.vanish()
    t0 = time.monotonic()
    with pytest.raises(DeviceGone):
        dev.fetch_op_csv(csv)
    assert time.monotonic() - t0 < 30


def test_export_waits_have_a_deadline(tmp_path, monkeypatch):
    spawned = []
    real_popen = subprocess.Popen

    def hanging_export(argv, **kw):  # an evit-export that never finishes
        p = real_popen([sys.executable, "-c", "import time; time.sleep(600)"], **kw)
        spawned.append(p)
        return p

    monkeypatch.setattr(subprocess, "Popen", hanging_export)
    (tmp_path / "search_host").mkdir()
    bests = {"host": {"arch": {"depth": [1]}, "budget": 5, "path": str(tmp_path / "a.json")}}
    t0 = time.monotonic()
    with pytest.raises(demo.DemoError, match=r"did not finish in 0\.5 s and was killed") as e:
        demo.export_all(bests, tmp_path, tmp_path / "supernet.pt", print, timeout_s=0.5)
    assert time.monotonic() - t0 < 10
    assert str(tmp_path / "search_host" / "export.log") in str(e.value)
    assert spawned and all(p.poll() is not None for p in spawned)  # killed, and reaped
    assert demo.EXPORT_TIMEOUT_S == 30 * 60


def test_wait_or_kill(tmp_path):
    p = subprocess.Popen(["sleep", "600"])
    t0 = time.monotonic()
    with pytest.raises(demo.DemoError, match=r"x\.log"):
        demo.wait_or_kill(p, 0.3, tmp_path / "x.log", "sleep")
    assert time.monotonic() - t0 < 5 and p.poll() is not None
    assert demo.wait_or_kill(subprocess.Popen(["true"]), 30, "y.log", "true") == 0


def test_unpinned_download_warns_and_pinned_one_is_cached(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("EVIT_CACHE", str(tmp_path / "cache"))
    body = fake_benchmark_binary()
    hits = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            hits.append(self.path)
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{httpd.server_address[1]}/latest/android_aarch64_benchmark_model"
    try:
        got = download_binary(url)
        err = capsys.readouterr().err
        assert len(hits) == 1
        assert "unpinned" in err and "latest" in err and url in err
        assert got.sha256 in err and f"--binary-sha256 {got.sha256}" in err
        assert got.path == tmp_path / "cache" / "benchmark_model" / got.sha256
        assert got.path.read_bytes() == body
        pinned = download_binary(url, sha256=got.sha256.upper())
        assert len(hits) == 1, "a pinned binary already in the cache was downloaded again"
        assert pinned == got and capsys.readouterr().err == ""
    finally:
        httpd.shutdown()
