"""The loopback test phone: a pretend Android phone that the real adb server connects to.

    phone = TestPhone("pixel4", root=tmp_path)      # facts from device_profiles/pixel4.yaml
    phone.start()                                   # listens on 127.0.0.1:phone.port
    adbutils.AdbClient(port=...).connect(phone.address)

It serves ``shell:``/``shell,v2:``/``exec:`` through a small POSIX shell (quotes, ``$()``,
``;``, redirections: see minishell.py) and ``sync:`` (STAT/LIST/SEND/RECV) from a sandbox
folder that stands for the phone's file system. getprop, /sys cpufreq and thermal files and
``dumpsys thermalservice`` come from the device profile and the phone's current state. An
executable aarch64 ELF file that is run is treated as TFLite's ``benchmark_model``: the pushed
model runs on this machine through ai-edge-litert (toolkit.devices.litert_bench), which prints
genuine benchmark_model output.

Faults for tests: ``state`` = device | unauthorized | offline; ``fault`` = None | "disconnect"
(the phone vanishes while benchmark_model runs) | "hang" (benchmark_model never finishes) |
"garbage" (prints noise, exits 0) | "crash" (segfaults); ``throttle(seconds)`` (thermal status
SEVERE and capped frequencies for that long); ``slowdown_us`` (added to every inference).
"""

from __future__ import annotations

import hashlib
import io
import os
import shlex
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path, PurePosixPath

from device_profiles import DeviceProfile, get_profile

from .adbd import AdbdServer, Stream, StreamClosed
from .minishell import MiniShell

ELF_AARCH64 = 183


def fake_benchmark_binary() -> bytes:
    """A minimal aarch64 ELF header: what the test phone accepts as a pushed benchmark_model."""
    ident = b"\x7fELF" + bytes([2, 1, 1, 0]) + bytes(8)  # 64-bit, little endian
    header = ident + struct.pack("<HHI", 2, ELF_AARCH64, 1) + bytes(48)
    return header + b"evit loopback test phone: stands for TFLite benchmark_model\n"


def elf_machine(data: bytes) -> int | None:
    if len(data) < 20 or data[:4] != b"\x7fELF":
        return None
    return struct.unpack("<H", data[18:20])[0]


class TestPhone:
    __test__ = False  # not a pytest test class

    def __init__(self, profile: DeviceProfile | str, root: str | Path, serialno: str = "",
                 state: str = "device"):
        self.profile = get_profile(profile) if isinstance(profile, str) else profile
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "data/local/tmp").mkdir(parents=True, exist_ok=True)
        self.serialno = serialno or f"EVIT{self.profile.name.upper()}"
        self.state = state
        self.fault: str | None = None
        self.slowdown_us = 0.0
        self.thermal_status = 0
        self._throttle_until = 0.0
        self.server: AdbdServer | None = None
        self.log: list[str] = []  # every shell command line received
        self.benchmark_runs = 0
        self._procs: set[subprocess.Popen] = set()
        self._lock = threading.Lock()
        self._tls = threading.local()  # the stream a shell command runs on

    # -- lifecycle -------------------------------------------------------------------------
    def start(self, port: int = 0) -> TestPhone:
        self.server = AdbdServer(self, port)
        return self

    @property
    def port(self) -> int:
        assert self.server is not None, "start() the phone first"
        return self.server.port

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def vanish(self) -> None:
        """The phone disappears: its connections drop and nothing listens any more."""
        if self.server is not None:
            self.server.close()
        self._kill_all()

    stop = vanish

    def throttle(self, seconds: float, status: int = 3) -> None:
        self.thermal_status = status
        self._throttle_until = time.monotonic() + seconds

    @property
    def throttled(self) -> bool:
        if self._throttle_until and time.monotonic() >= self._throttle_until:
            self._throttle_until, self.thermal_status = 0.0, 0
        return self.thermal_status >= 2

    # -- identity --------------------------------------------------------------------------
    def props(self) -> dict[str, str]:
        p = self.profile
        props = {
            "ro.product.manufacturer": "Google" if p.name.startswith("pixel") else "Xiaomi",
            "ro.build.type": "user",
            "ro.build.version.release": "13",
            "ro.build.version.sdk": "33",
            "ro.product.cpu.abi": "arm64-v8a",
            "ro.serialno": self.serialno,
            "ro.hardware": p.props().get("ro.product.device", p.name),
        }
        props.update(p.props())
        dev = props.get("ro.product.device", p.name)
        props.setdefault("ro.product.name", dev)
        props["ro.build.fingerprint"] = (
            f"{props['ro.product.manufacturer'].lower()}/{dev}/{dev}:13/TQ3A.230901.001/"
            f"10750268:user/release-keys"
        )
        return props

    def banner(self) -> str:
        props = self.props()
        return (
            f"device::ro.product.name={props['ro.product.name']};"
            f"ro.product.model={props.get('ro.product.model', '')};"
            f"ro.product.device={props.get('ro.product.device', '')};"
            "features=shell_v2,cmd"
        )

    # -- virtual /sys and /proc ------------------------------------------------------------
    def _cpus(self) -> list[tuple[int, float]]:
        return sorted((c, cl.max_mhz) for cl in self.profile.clusters for c in cl.cpus)

    def virtual_file(self, path: str) -> str | None:
        throttled = self.throttled
        n = len(self._cpus())
        if path == "/sys/devices/system/cpu/possible":
            return f"0-{n - 1}\n"
        for cpu, mhz in self._cpus():
            base = f"/sys/devices/system/cpu/cpu{cpu}/cpufreq/"
            if not path.startswith(base):
                continue
            khz = int(mhz * 1000)
            top = max(m for _, m in self._cpus())
            capped = int(khz * 0.6) if throttled and mhz == top else khz
            related = [c for cl in self.profile.clusters if cpu in cl.cpus for c in cl.cpus]
            return {
                "cpuinfo_max_freq": f"{khz}\n",
                "scaling_max_freq": f"{capped}\n",
                "scaling_cur_freq": f"{capped}\n",
                "scaling_governor": "schedutil\n",
                "related_cpus": " ".join(map(str, related)) + "\n",
            }.get(path[len(base):])
        if path.startswith("/sys/class/thermal/thermal_zone"):
            zone, _, leaf = path[len("/sys/class/thermal/thermal_zone"):].partition("/")
            zones = {"0": ("cpu-big", 41000), "1": ("skin", 33000)}
            if zone in zones:
                kind, temp = zones[zone]
                temp += 30000 if throttled else 0
                return {"type": f"{kind}\n", "temp": f"{temp}\n"}.get(leaf)
        if path == "/proc/cpuinfo":
            return "".join(f"processor\t: {c}\nBogoMIPS\t: 38.40\n\n" for c, _ in self._cpus()) + (
                f"Hardware\t: {self.profile.soc}\n")
        return None

    def dumpsys_thermal(self) -> str:
        throttled = self.throttled
        t = 71.2 if throttled else 41.0
        return (
            "IsStatusOverride: false\n"
            f"Thermal Status: {self.thermal_status}\n"
            "Cached temperatures:\n"
            f"\tTemperature{{mValue={t}, mType=0, mName=cpu-big, mStatus={self.thermal_status}}}\n"
            f"\tTemperature{{mValue={t - 8:.1f}, mType=3, mName=skin, mStatus=0}}\n"
            "HAL Ready: true\n"
            "Current temperatures from HAL:\n"
            f"\tTemperature{{mValue={t}, mType=0, mName=cpu-big, mStatus={self.thermal_status}}}\n"
        )

    # -- file system -----------------------------------------------------------------------
    def host_path(self, device_path: str, cwd: str = "/") -> Path:
        """Map a device path into the sandbox (never outside it)."""
        p = PurePosixPath(cwd) / device_path
        parts: list[str] = []
        for part in p.parts[1:]:
            if part == "..":
                if parts:
                    parts.pop()
            elif part not in (".", ""):
                parts.append(part)
        return self.root.joinpath(*parts)

    def open_file(self, device_path: str, mode: str):
        if device_path == "/dev/null":
            return open(os.devnull, mode)
        if "r" in mode:
            v = self.virtual_file(device_path)
            if v is not None:
                return io.BytesIO(v.encode())
        return open(self.host_path(device_path), mode)

    # -- services --------------------------------------------------------------------------
    def service_handler(self, service: str):
        if service.startswith("shell,v2") or service.startswith("shell:"):
            v2 = service.startswith("shell,v2")
            cmd = service.split(":", 1)[1]
            return lambda s: self._shell_service(s, cmd, v2)
        if service.startswith("exec:"):
            return lambda s: self._shell_service(s, service[5:], False)
        if service.startswith("sync:"):
            return self._sync_service
        return None

    def _shell_service(self, stream: Stream, cmd: str, v2: bool) -> None:
        self.log.append(cmd)

        def packet(kind: int, data: bytes) -> None:
            if data:
                stream.write(bytes([kind]) + struct.pack("<I", len(data)) + data)

        out = (lambda b: packet(1, b)) if v2 else stream.write
        err = (lambda b: packet(2, b)) if v2 else stream.write
        self._tls.stream = stream
        shell = MiniShell(self._resolve, self.open_file,
                          env={"HOME": "/", "PATH": "/system/bin", "TMPDIR": "/data/local/tmp"})
        try:
            rc = shell.run(cmd, b"", out, err)
        except StreamClosed:
            return
        if v2:
            stream.write(bytes([3]) + struct.pack("<I", 1) + bytes([rc & 0xFF]))

    def _sync_service(self, stream: Stream) -> None:
        while True:
            try:
                head = stream.read_exact(8)
            except StreamClosed:
                return
            sid, n = head[:4], struct.unpack("<I", head[4:])[0]
            if sid == b"QUIT":
                return
            arg = stream.read_exact(n).decode("utf-8", "replace")
            if sid == b"STAT":
                p = self.host_path(arg)
                if p.exists():
                    st = p.stat()
                    stream.write(b"STAT" + struct.pack("<III", st.st_mode, st.st_size,
                                                       int(st.st_mtime)))
                else:
                    stream.write(b"STAT" + struct.pack("<III", 0, 0, 0))
            elif sid == b"LIST":
                p = self.host_path(arg)
                if p.is_dir():
                    for child in sorted(p.iterdir()):
                        st = child.stat()
                        name = child.name.encode()
                        stream.write(b"DENT" + struct.pack("<IIII", st.st_mode, st.st_size,
                                                           int(st.st_mtime), len(name)) + name)
                stream.write(b"DONE" + bytes(16))
            elif sid == b"RECV":
                p = self.host_path(arg)
                if not p.is_file():
                    msg = b"No such file or directory"
                    stream.write(b"FAIL" + struct.pack("<I", len(msg)) + msg)
                    continue
                with open(p, "rb") as f:
                    while chunk := f.read(64 * 1024):
                        stream.write(b"DATA" + struct.pack("<I", len(chunk)) + chunk)
                stream.write(b"DONE" + struct.pack("<I", 0))
            elif sid == b"SEND":
                path, _, mode = arg.rpartition(",")
                p = self.host_path(path)
                data = io.BytesIO()
                while True:
                    h = stream.read_exact(8)
                    kind, size = h[:4], struct.unpack("<I", h[4:])[0]
                    if kind == b"DATA":
                        data.write(stream.read_exact(size))
                    elif kind == b"DONE":
                        break
                    else:
                        raise StreamClosed(f"unexpected sync frame {kind!r}")
                if not p.parent.is_dir():
                    msg = f"secure_mkdirs() failed: {path}".encode()
                    stream.write(b"FAIL" + struct.pack("<I", len(msg)) + msg)
                    continue
                tmp = p.with_name(p.name + ".evit-partial")
                tmp.write_bytes(data.getvalue())
                os.chmod(tmp, int(mode) & 0o777 if mode.isdigit() else 0o644)
                os.replace(tmp, p)
                stream.write(b"OKAY" + struct.pack("<I", 0))
            else:
                msg = f"unknown sync command {sid!r}".encode()
                stream.write(b"FAIL" + struct.pack("<I", len(msg)) + msg)
                return

    # -- programs --------------------------------------------------------------------------
    def _resolve(self, name: str):
        stream = self._tls.stream
        if "/" in name:
            p = self.host_path(name)
            if not p.is_file():
                return None
            return lambda argv, stdin, out, err: self._exec_file(p, argv, out, err, stream)
        return getattr(self, f"_cmd_{name.replace('-', '_')}", None)

    def _exec_file(self, p: Path, argv, out, err, stream: Stream) -> int:
        if not os.stat(p).st_mode & 0o111:
            err(f"/system/bin/sh: {argv[0]}: can't execute: Permission denied\n".encode())
            return 126
        with open(p, "rb") as f:
            head = f.read(64)
        if elf_machine(head) != ELF_AARCH64:
            err(f"/system/bin/sh: {argv[0]}: not executable: bad ELF or 32-bit\n".encode())
            return 126
        return self._benchmark_model(argv[1:], out, err, stream)

    def _benchmark_model(self, args: list[str], out, err, stream: Stream) -> int:
        self.benchmark_runs += 1
        mapped = []
        for a in args:
            key, eq, value = a.partition("=")
            if eq and key in ("--graph", "--profiling_output_csv_file"):
                a = f"{key}={self.host_path(value)}"
            mapped.append(a)
        if self.slowdown_us:
            mapped.append(f"--evit_extra_delay_us={self.slowdown_us}")
        if self.fault == "garbage":
            out(b"\x00\x17 Xz !! count=abc\nINFO: <<random noise>>\n")
            return 0
        if self.fault == "crash":
            out(b"INFO: STARTING!\n")
            err(b"Segmentation fault \n")
            return 139
        cmd = [sys.executable, "-m", "toolkit.devices.litert_bench", *mapped]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                cwd=str(self.root), env={**os.environ, "PYTHONPATH": _repo()})
        with self._lock:
            self._procs.add(proc)
        try:
            assert proc.stdout is not None
            for n, line in enumerate(proc.stdout):
                out(line)
                if n == 3 and self.fault in ("disconnect", "hang"):
                    if self.fault == "disconnect":
                        self.vanish()
                        return 255
                    proc.kill()
                    while not stream.closed.is_set() and self.server is not None:
                        time.sleep(0.05)  # hangs until the host gives up
                    return 255
                if stream.closed.is_set():
                    proc.kill()
                    return 143
            return proc.wait()
        finally:
            with self._lock:
                self._procs.discard(proc)
            if proc.poll() is None:
                proc.kill()

    def _kill_all(self) -> int:
        with self._lock:
            procs = list(self._procs)
        for p in procs:
            p.kill()
        return len(procs)

    # builtins: (argv, stdin, out, err) -> status
    def _cmd_echo(self, argv, stdin, out, err):
        out((" ".join(argv[1:]) + "\n").encode())
        return 0

    def _cmd_true(self, *a):
        return 0

    def _cmd_false(self, *a):
        return 1

    def _cmd_getprop(self, argv, stdin, out, err):
        props = self.props()
        if len(argv) > 1:
            out((props.get(argv[1], argv[2] if len(argv) > 2 else "") + "\n").encode())
        else:
            out("".join(f"[{k}]: [{v}]\n" for k, v in sorted(props.items())).encode())
        return 0

    def _cmd_cat(self, argv, stdin, out, err):
        if len(argv) == 1:
            out(stdin)
            return 0
        rc = 0
        for path in argv[1:]:
            try:
                with self.open_file(path, "rb") as f:
                    out(f.read())
            except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
                err(f"cat: {path}: No such file or directory\n".encode())
                rc = 1
        return rc

    def _cmd_ls(self, argv, stdin, out, err):
        rc = 0
        for path in [a for a in argv[1:] if not a.startswith("-")] or ["."]:
            p = self.host_path(path)
            if p.is_dir():
                out("".join(c.name + "\n" for c in sorted(p.iterdir())).encode())
            elif p.exists():
                out((path + "\n").encode())
            else:
                err(f"ls: {path}: No such file or directory\n".encode())
                rc = 1
        return rc

    def _cmd_touch(self, argv, stdin, out, err):
        for path in argv[1:]:
            self.host_path(path).touch()
        return 0

    def _cmd_mkdir(self, argv, stdin, out, err):
        for path in [a for a in argv[1:] if not a.startswith("-")]:
            self.host_path(path).mkdir(parents="-p" in argv, exist_ok="-p" in argv)
        return 0

    def _cmd_rm(self, argv, stdin, out, err):
        import shutil

        flags = "".join(a[1:] for a in argv[1:] if a.startswith("-"))
        rc = 0
        for path in [a for a in argv[1:] if not a.startswith("-")]:
            p = self.host_path(path)
            if p == self.root:
                err(b"rm: refusing to remove /\n")
                rc = 1
            elif p.is_dir() and "r" in flags:
                shutil.rmtree(p)
            elif p.exists() and not p.is_dir():
                p.unlink()
            elif "f" not in flags:
                err(f"rm: {path}: No such file or directory\n".encode())
                rc = 1
        return rc

    def _cmd_chmod(self, argv, stdin, out, err):
        if len(argv) < 3:
            err(b"chmod: needs MODE FILE\n")
            return 1
        mode = argv[1]
        for path in argv[2:]:
            p = self.host_path(path)
            if not p.exists():
                err(f"chmod: {path}: No such file or directory\n".encode())
                return 1
            if mode in ("+x", "a+x", "u+x", "755") or mode.isdigit():
                os.chmod(p, int(mode, 8) if mode.isdigit() else p.stat().st_mode | 0o111)
        return 0

    def _cmd_sha256sum(self, argv, stdin, out, err):
        rc = 0
        for path in argv[1:]:
            p = self.host_path(path)
            if p.is_file():
                out(f"{hashlib.sha256(p.read_bytes()).hexdigest()}  {path}\n".encode())
            else:
                err(f"sha256sum: {path}: No such file or directory\n".encode())
                rc = 1
        return rc

    def _cmd_taskset(self, argv, stdin, out, err):
        if len(argv) < 3:
            err(b"usage: taskset [-ap] [mask] [PID | cmd [args...]]\n")
            return 1
        try:
            mask = int(argv[1], 16)
        except ValueError:
            err(f"taskset: bad mask '{argv[1]}'\n".encode())
            return 1
        n = len(self._cpus())
        if mask <= 0 or mask >> n:
            err(f"taskset: sched_setaffinity: Invalid argument (mask {argv[1]})\n".encode())
            return 1
        prog = self._resolve(argv[2])
        if prog is None:
            err(f"taskset: {argv[2]}: No such file or directory\n".encode())
            return 127
        return prog(argv[2:], stdin, out, err)

    def _cmd_dumpsys(self, argv, stdin, out, err):
        if argv[1:2] == ["thermalservice"]:
            out(self.dumpsys_thermal().encode())
            return 0
        if argv[1:2] == ["battery"]:
            out(b"Current Battery Service state:\n  AC powered: false\n  USB powered: true\n"
                b"  level: 87\n  temperature: 312\n")
            return 0
        err(f"Can't find service: {' '.join(argv[1:])}\n".encode())
        return 1

    def _cmd_cmd(self, argv, stdin, out, err):
        if argv[1:3] == ["thermalservice", "override-status"] and len(argv) > 3:
            self.thermal_status = int(argv[3])
            return 0
        if argv[1:3] == ["thermalservice", "reset"]:
            self.thermal_status, self._throttle_until = 0, 0.0
            return 0
        err(f"cmd: {shlex.join(argv[1:])}: not supported by the test phone\n".encode())
        return 1

    def _cmd_pkill(self, argv, stdin, out, err):
        return 0 if self._kill_all() else 1

    def _cmd_sleep(self, argv, stdin, out, err):
        time.sleep(float(argv[1]) if len(argv) > 1 else 0)
        return 0

    def _cmd_id(self, argv, stdin, out, err):
        out(b"uid=2000(shell) gid=2000(shell)\n")
        return 0


def _repo() -> str:
    here = Path(__file__).resolve().parents[3]
    return os.pathsep.join([str(here), os.environ.get("PYTHONPATH", "")])
