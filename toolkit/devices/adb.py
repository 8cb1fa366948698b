"""Phones over ADB: adbutils talking to a real adb server (adbutils' bundled adb or Debian's).

Every shell argument is quoted with ``shlex.quote`` (Android's mksh understands POSIX single
quotes), every command has a deadline enforced here (adbutils' own socket timeout only starts
after the service's OKAY), and a lost connection or a timeout raises DeviceGone/DeviceTimeout.
Commands use the shell v2 protocol, so exit status and stderr come back separately.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import socket
import struct
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import adbutils

from device_profiles import DeviceProfile, match_profile
from toolkit.fileio import sha256_file

from .base import DeviceError, DeviceGone, DeviceTimeout, ShellResult, Snapshot
from .benchmark_model import BenchmarkFlags
from .binary import BenchmarkBinary
from .hygiene import parse_snapshot, snapshot_command

REMOTE_DIR = "/data/local/tmp/evit"
IDENTITY_PROPS = (
    "ro.product.device", "ro.product.model", "ro.product.manufacturer", "ro.board.platform",
    "ro.soc.model", "ro.build.fingerprint", "ro.build.version.sdk", "ro.build.version.release",
    "ro.build.type", "ro.hardware", "ro.serialno",
)
# run as ``sh -c THIS PIDFILE BINARY ARGS...``: the shell's pid becomes benchmark_model's
_RECORD_PID_AND_EXEC = 'echo $$ > "$0" && exec "$@"'


def q(*args: str) -> str:
    """Quote each argument for the device shell."""
    return " ".join(shlex.quote(str(a)) for a in args)


def server_port() -> int:
    return int(os.environ.get("ANDROID_ADB_SERVER_PORT", "5037"))


def client(port: int | None = None, start: bool = True) -> adbutils.AdbClient:
    """An adbutils client for the adb server on ``port``; starts the server if needed."""
    port = port or server_port()
    c = adbutils.AdbClient(host="127.0.0.1", port=port, socket_timeout=10)
    # probe first: adbutils would otherwise start a server on the default port by itself
    with socket.socket() as probe:
        probe.settimeout(2)
        listening = probe.connect_ex(("127.0.0.1", port)) == 0
    if listening:
        c.server_version()
        return c
    if not start:
        raise DeviceError(f"no adb server listens on port {port}; start one with "
                          f"`adb -P {port} start-server`")
    adb = adbutils.adb_path()
    env = {**os.environ, "ANDROID_ADB_SERVER_PORT": str(port)}
    r = subprocess.run([adb, "start-server"], env=env, capture_output=True, text=True, timeout=30)
    if r.returncode != 0:
        raise DeviceError(f"could not start the adb server ({adb}) on port {port}: {r.stderr}")
    c.server_version()
    return c


@dataclass
class AttachedDevice:
    serial: str
    state: str  # device | offline | unauthorized | ...
    props: dict = field(default_factory=dict)
    profile: DeviceProfile | None = None

    def describe(self) -> str:
        if self.state != "device":
            hint = {
                "unauthorized": "accept the USB-debugging prompt on the phone",
                "offline": "reconnect the cable or run `adb reconnect`",
            }.get(self.state, "check `adb devices`")
            return f"{self.serial}: {self.state} ({hint})"
        if self.profile is None:
            keys = ", ".join(f"{k}={self.props.get(k, '?')}" for k in
                             ("ro.product.device", "ro.product.model", "ro.board.platform"))
            return (f"{self.serial}: unknown phone ({keys}); add a profile: copy "
                    "device_profiles/pixel4.yaml to ~/.config/evit/devices/<name>.yaml and set "
                    f"match: ro.product.device: [{self.props.get('ro.product.device', '?')}]")
        return f"{self.serial}: {self.profile.name} ({self.profile.display})"


def list_attached(c: adbutils.AdbClient | None = None) -> list[AttachedDevice]:
    c = c or client()
    out = []
    for info in c.list(extended=True):
        dev = AttachedDevice(info.serial, info.state)
        if info.state == "device":
            try:
                dev.props = AdbDevice(c, info.serial, profile=_UNMATCHED).getprops()
                dev.profile = match_profile(dev.props)
            except DeviceError:
                dev.state = "offline"
        out.append(dev)
    return out


_UNMATCHED = DeviceProfile(name="unmatched", display="not matched yet")


class AdbDevice:
    """One phone. ``profile`` comes from its properties unless given."""

    runtime = "benchmark_model"

    def __init__(self, c: adbutils.AdbClient, serial: str, profile: DeviceProfile | None = None,
                 binary: BenchmarkBinary | None = None, remote_dir: str = REMOTE_DIR):
        self.client, self.serial = c, serial
        self.dev = c.device(serial)
        self.binary = binary
        self.remote_dir = remote_dir  # checked where it is used: tests may change it
        self._props: dict[str, str] | None = None
        self._pushed_binary: tuple[str, str] | None = None
        self._pushed: set[str] = set()  # models and CSVs to remove in cleanup()
        if profile is None:
            profile = match_profile(self.getprops())
            if profile is None:
                raise DeviceError(AttachedDevice(serial, "device", self.getprops()).describe())
        self.profile = profile

    def _dir(self) -> str:
        """The on-device folder; absolute, so no path evit sends can read as an option."""
        if not str(self.remote_dir).startswith("/"):
            raise DeviceError(f"remote folder {self.remote_dir!r} must be an absolute path on "
                              f"the device, e.g. {REMOTE_DIR}")
        return str(self.remote_dir).rstrip("/") or "/"

    # -- transport -------------------------------------------------------------------------
    def shell(self, cmd: str, timeout: float = 30.0) -> ShellResult:
        """Run one (already quoted) command line; raise on timeout or a lost device."""
        deadline = time.monotonic() + timeout
        try:
            c = self.dev.open_transport(timeout=min(timeout, 10))
            c.send_command(f"shell,v2,raw:{cmd}")
            c.check_okay()
        except (adbutils.AdbError, OSError) as e:
            raise DeviceGone(f"{self.serial}: cannot run a command ({e}); is it still attached? "
                             "(adb devices)") from e
        sock: socket.socket = c.conn
        buf, out, err = b"", [], []
        try:
            while True:
                while len(buf) >= 5:
                    kind, n = buf[0], struct.unpack("<I", buf[1:5])[0]
                    if len(buf) < 5 + n:
                        break
                    data, buf = buf[5:5 + n], buf[5 + n:]
                    if kind == 1:
                        out.append(data)
                    elif kind == 2:
                        err.append(data)
                    elif kind == 3:
                        return ShellResult(data[0] if data else 255,
                                           b"".join(out).decode("utf-8", "replace"),
                                           b"".join(err).decode("utf-8", "replace"))
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise DeviceTimeout(
                        f"{self.serial}: command timed out after {timeout:.0f} s and was killed: "
                        f"{cmd[:120]}"
                    )
                sock.settimeout(min(remaining, 2.0))
                try:
                    chunk = sock.recv(65536)
                except TimeoutError:
                    continue
                except OSError as e:
                    raise DeviceGone(f"{self.serial}: connection lost mid-command ({e})") from e
                if not chunk:
                    raise DeviceGone(
                        f"{self.serial}: the device disconnected while running a command; "
                        "nothing from this run was stored as valid"
                    )
                buf += chunk
        finally:
            c.close()

    def check(self, cmd: str, timeout: float = 30.0) -> str:
        r = self.shell(cmd, timeout)
        if r.returncode != 0:
            raise DeviceError(f"{self.serial}: `{cmd[:120]}` failed ({r.returncode}): "
                              f"{(r.stderr or r.stdout).strip()[:300]}")
        return r.stdout

    def push(self, local: str | Path, remote: str, mode: int = 0o644) -> None:
        size = os.path.getsize(local)
        try:
            self.dev.sync.push(str(local), remote, mode=mode)
            st = self.dev.sync.stat(remote)
        except (adbutils.AdbError, OSError) as e:
            raise DeviceGone(f"{self.serial}: push of {local} failed ({e})") from e
        if st.size != size:
            raise DeviceError(f"{self.serial}: {remote} has {st.size} bytes after push, "
                              f"expected {size}")

    def pull(self, remote: str, local: str | Path) -> None:
        try:
            self.dev.sync.pull(remote, str(local))
        except (adbutils.AdbError, OSError) as e:
            raise DeviceGone(f"{self.serial}: pull of {remote} failed ({e})") from e

    # -- identity --------------------------------------------------------------------------
    def getprops(self) -> dict[str, str]:
        if self._props is None:
            text = self.check("getprop", timeout=15)
            props = {}
            for line in text.splitlines():
                if line.startswith("[") and "]: [" in line:
                    k, v = line[1:].split("]: [", 1)
                    props[k] = v[:-1] if v.endswith("]") else v
            self._props = props
        return self._props

    def fingerprint(self) -> dict:
        p = self.getprops()
        return {"serial": self.serial, **{k: p.get(k, "") for k in IDENTITY_PROPS}}

    def runtime_id(self) -> tuple[str, str]:
        if self.binary is None:
            raise DeviceError("no benchmark_model binary given (see --benchmark-binary)")
        return self.runtime, self.binary.sha256

    # -- benchmarking ----------------------------------------------------------------------
    def _ensure_binary(self) -> str:
        if self.binary is None:
            raise DeviceError("no benchmark_model binary given (see --benchmark-binary)")
        remote = f"{self._dir()}/benchmark_model"
        if self._pushed_binary == (remote, self.binary.sha256):  # this binary, in this folder
            return remote
        self.check(f"mkdir -p -- {q(self._dir())}")
        have = self.shell(f"sha256sum {q(remote)}").stdout.split()
        if not have or have[0] != self.binary.sha256:
            self.push(self.binary.path, remote, mode=0o755)
            self.check(f"chmod 755 -- {q(remote)}")
        self._pushed_binary = (remote, self.binary.sha256)
        return remote

    def prepare_model(self, local_path: str) -> str:
        self._ensure_binary()
        remote = f"{self._dir()}/{PurePosixPath(str(local_path)).name}"
        have = self.shell(f"sha256sum {q(remote)}").stdout.split()
        if not have or have[0] != sha256_file(local_path):
            self.push(local_path, remote)
        self._pushed.add(remote)
        return remote

    def run_benchmark(self, flags: BenchmarkFlags, mask: str, timeout: float) -> str:
        """Run benchmark_model pinned to ``mask``. A run past ``timeout`` is killed: that
        run's own process only (its pid, written by the shell that execs it), never another
        benchmark_model on the phone."""
        binary = self._ensure_binary()
        pidfile = f"{self._dir()}/.run-{uuid.uuid4().hex}.pid"
        self._pushed.add(pidfile)  # removed in cleanup(); at once after a timeout
        # taskset execs the shell, the shell records its pid and execs benchmark_model: one
        # pid throughout, so the pid in the file is this run's benchmark_model
        cmd = (f"taskset {q(mask)} "
               f"{q('/system/bin/sh', '-c', _RECORD_PID_AND_EXEC, pidfile, binary, *flags.argv())}")
        try:
            r = self.shell(cmd, timeout=timeout)
        except DeviceTimeout:
            with contextlib.suppress(DeviceError):
                self._kill_own_run(pidfile, binary)  # don't leave it running
            raise
        if r.returncode != 0:
            raise DeviceError(
                f"{self.serial}: benchmark_model exited with {r.returncode}: "
                f"{(r.stderr + r.stdout).strip()[-400:]}"
            )
        return r.stdout + r.stderr

    def _kill_own_run(self, pidfile: str, binary: str) -> bool:
        """Kill the benchmark_model whose pid ``pidfile`` holds, if that pid still runs our
        binary (not a later process that got the pid); remove the pidfile. True if killed."""
        text = self.shell(f"cat {q(pidfile)}", timeout=10).stdout.strip()
        killed = False
        if text.isdigit() and int(text) > 1:
            pid = str(int(text))
            r = self.shell(f"grep -qF -e {q(binary)} {q(f'/proc/{pid}/cmdline')} && "
                           f"kill -9 {q(pid)}", timeout=10)
            killed = r.returncode == 0
        self.shell(f"rm -f -- {q(pidfile)}", timeout=10)
        self._pushed.discard(pidfile)
        return killed

    def fetch_op_csv(self, remote_csv: str) -> str | None:
        """Pull the op-profiling CSV benchmark_model wrote: None if it wrote none; a lost
        device raises DeviceGone (it is not "no CSV")."""
        import tempfile

        self._pushed.add(remote_csv)
        r = self.shell(f"test -f {q(remote_csv)}", timeout=15)
        if r.returncode == 1:
            return None
        if r.returncode != 0:
            raise DeviceError(f"{self.serial}: cannot check for {remote_csv} "
                              f"({r.returncode}): {(r.stderr or r.stdout).strip()[:300]}")
        with tempfile.TemporaryDirectory() as tmp:
            local = Path(tmp) / "ops.csv"
            self.pull(remote_csv, local)
            return local.read_text()

    def snapshot(self) -> Snapshot:
        cpus = sorted(c for cl in self.profile.clusters for c in cl.cpus) or list(range(8))
        kv = self.shell(snapshot_command(cpus), timeout=20).stdout
        thermal = self.shell("dumpsys thermalservice", timeout=20)
        return parse_snapshot(kv, thermal.stdout if thermal.returncode == 0 else "")

    def cleanup(self) -> None:
        """Remove the models and files evit put there (the binary stays for the next run)."""
        if self._pushed:
            with contextlib.suppress(DeviceError):
                self.shell(f"rm -f -- {q(*sorted(self._pushed))}")
            self._pushed.clear()
