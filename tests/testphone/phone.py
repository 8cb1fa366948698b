"""The loopback test phone: a pretend Android phone that the real adb server connects to.

    phone = TestPhone("pixel4", root=tmp_path)      # facts from device_profiles/pixel4.yaml
    phone.start()                                   # listens on 127.0.0.1:phone.port
    adbutils.AdbClient(port=...).connect(phone.address)

Its shell is Android's: every ``shell:``/``shell,v2:``/``exec:`` command line runs in the real
``mksh`` (Debian's package; Android's /system/bin/sh) with the real ``toybox`` applets
(Android's tools), inside the phone's own root folder. The phone is a Linux user + mount + PID
namespace made once at ``start()`` (root inside it only), with ``root`` as its file system
(``/system/bin``, ``/data/local/tmp``, ``/sys``; this machine's ``/usr`` is mounted for the
shared libraries, and its ``/proc`` is the namespace's own, so ``pkill`` and ``ps`` see only
the phone's processes). Stand-ins only for what is Android- or device-specific:

* ``getprop``, ``dumpsys thermalservice|battery``, ``cmd thermalservice``: small mksh scripts
  over state files the phone writes from its profile and state before every command;
* sysfs: ``/sys/devices/system/cpu/.../cpufreq/*`` and ``/sys/class/thermal/*`` are files
  written from the profile (capped while ``throttle()``\\ d);
* ``taskset``: checks the mask against the profile's CPUs (this machine has fewer), then runs
  the command through toybox's ``taskset`` on this machine's CPUs;
* ``benchmark_model``: an aarch64 ELF cannot run here, so the namespace registers a
  ``binfmt_misc`` handler for aarch64 ELF files: executing the pushed binary (by mksh or by
  toybox ``taskset``) runs the pushed model on this machine through ai-edge-litert
  (``toolkit.devices.litert_bench``), which prints genuine benchmark_model output.

``sync:`` (STAT/LIST/SEND/RECV) is served from the same root folder.

Faults for tests: ``state`` = device | unauthorized | offline; ``fault`` = None | "disconnect"
(the phone vanishes while benchmark_model runs) | "hang" (benchmark_model stops answering) |
"garbage" (prints noise, exits 0) | "crash" (dies of SIGSEGV; mksh reports it);
``throttle(seconds)`` (thermal status SEVERE and capped frequencies for that long);
``slowdown_us`` (added to every inference); ``hangup_kills`` (True: when the host hangs up on
a command, its processes are killed, as adbd does; False: they keep running, like a pty-less
command on a phone, until something on the phone kills them or the phone vanishes).

Needs root (CI runs as root) and util-linux's ``unshare``/``nsenter``; ``available()`` says
whether this machine can host the phone, and why not.
"""

from __future__ import annotations

import atexit
import contextlib
import io
import os
import selectors
import shutil
import signal
import struct
import subprocess
import sys
import threading
import time
import weakref
from pathlib import Path, PurePosixPath

from device_profiles import DeviceProfile, get_profile

from .adbd import AdbdServer, Stream, StreamClosed

ELF_AARCH64 = 183
MKSH, TOYBOX = "/bin/mksh", "/usr/bin/toybox"
ANDROID_PATH = "/product/bin:/apex/com.android.runtime/bin:/system/bin:/system/xbin:/vendor/bin"
STAND_INS = ("getprop", "dumpsys", "cmd", "taskset")  # not toybox applets on the phone
REPO = Path(__file__).resolve().parents[2]
_RUNNING: weakref.WeakSet = weakref.WeakSet()


@atexit.register
def _stop_all() -> None:  # a test that failed before stop() leaves no namespace behind
    for phone in list(_RUNNING):
        phone.vanish()


def fake_benchmark_binary() -> bytes:
    """A minimal aarch64 ELF header: what the test phone accepts as a pushed benchmark_model."""
    ident = b"\x7fELF" + bytes([2, 1, 1, 0]) + bytes(8)  # 64-bit, little endian
    header = ident + struct.pack("<HHI", 2, ELF_AARCH64, 1) + bytes(48)
    return header + b"evit loopback test phone: stands for TFLite benchmark_model\n"


def elf_machine(data: bytes) -> int | None:
    if len(data) < 20 or data[:4] != b"\x7fELF":
        return None
    return struct.unpack("<H", data[18:20])[0]


def available() -> tuple[bool, str]:
    """Whether this machine can host the phone (and if not, what is missing)."""
    for tool in (MKSH, TOYBOX):
        if not Path(tool).is_file():
            return False, (f"{tool} is missing: install Debian's mksh and toybox (the README's "
                           "install command does)")
    for tool in ("unshare", "nsenter"):
        if shutil.which(tool) is None:
            return False, f"{tool} (util-linux) is missing"
    return True, ""


# --------------------------------------------------------------------------- the phone's files

_GETPROP = """#!/system/bin/sh
# stand-in for Android's getprop: properties from the device profile (/.evit/props)
if [ $# -eq 0 ]; then
  while IFS= read -r line; do print -r -- "[${line%%=*}]: [${line#*=}]"; done < /.evit/props
  exit 0
fi
while IFS= read -r line; do
  if [ "${line%%=*}" = "$1" ]; then print -r -- "${line#*=}"; exit 0; fi
done < /.evit/props
print -r -- "$2"
"""

_DUMPSYS = """#!/system/bin/sh
# stand-in for Android's dumpsys: the services evit reads
case $1 in
thermalservice) cat /.evit/thermalservice ;;
battery) cat /.evit/battery ;;
*) print -ru2 -- "Can't find service: $*"; exit 1 ;;
esac
"""

_CMD = """#!/system/bin/sh
# stand-in for Android's cmd: the thermal service's test hooks
if [ "$1 $2" = "thermalservice override-status" ] && [ -n "$3" ]; then
  print -r -- "$3" > /.evit/thermal_override; exit 0
fi
if [ "$1 $2" = "thermalservice reset" ]; then print reset > /.evit/thermal_override; exit 0; fi
print -ru2 -- "cmd: $*: not supported by the test phone"
exit 1
"""

_TASKSET = """#!/system/bin/sh
# the phone's CPUs are its profile's (this machine has fewer): check the mask against them,
# then run the command with toybox's taskset on this machine's CPUs
case $1 in -*) exec toybox taskset "$@" ;; esac
if [ $# -lt 2 ]; then print -ru2 "usage: taskset [-ap] [mask] [PID | cmd [args...]]"; exit 1; fi
mask=$1; shift
case $mask in ''|*[!0-9a-fA-F]*) print -ru2 -- "taskset: bad mask '$mask'"; exit 1 ;; esac
possible=$(cat /sys/devices/system/cpu/possible)
ncpu=$(( ${possible#*-} + 1 ))
m=$(( 16#$mask ))
if [ $m -le 0 ] || [ $(( m >> ncpu )) -ne 0 ]; then
  print -ru2 -- "taskset: sched_setaffinity: Invalid argument (mask $mask)"; exit 1
fi
exec toybox taskset @HOSTMASK@ "$@"
"""

_BENCHMARK = """#!/system/bin/sh
# binfmt_misc handler for aarch64 ELF files: the pushed benchmark_model, run on this machine
bin=$1; shift
print -r -- "$bin" >> /.evit/benchmark_runs
for a in "$@"; do print -rn -- "$a"; print -n '\\0'; done > /.evit/benchmark_argv
fault=$(cat /.evit/fault 2>/dev/null)
case $fault in
garbage) print -r -- '@@ Xz !! count=abc'; print -r -- 'INFO: <<random noise>>'; exit 0 ;;
crash) print "INFO: STARTING!"; kill -SEGV $$ ;;
esac
slow=$(cat /.evit/slowdown_us 2>/dev/null)
PYTHONPATH=@PYTHONPATH@ exec @PYTHON@ -m toolkit.devices.litert_bench --evit_binary="$bin" \\
  "$@" ${slow:+--evit_extra_delay_us=$slow}
"""

# aarch64 ELF: "\\x7fELF", 64-bit, little endian ... e_machine 183 at offset 18
_MAGIC = b"\x7fELF\x02\x01" + bytes(12) + b"\xb7\x00"
_MASK = b"\xff" * 6 + bytes(12) + b"\xff\xff"


def _esc(b: bytes) -> str:
    return "".join(f"\\x{c:02x}" for c in b)


_INIT = r"""
set -e
R=$1
mkdir -p "$R/usr" "$R/proc" "$R/dev"
mount --rbind /usr "$R/usr"
for d in "$@"; do
  [ "$d" = "$R" ] && continue
  mkdir -p "$R$d"; mount --rbind "$d" "$R$d"
done
: > "$R/dev/null"; mount --bind /dev/null "$R/dev/null"
: > "$R/dev/urandom"; mount --bind /dev/urandom "$R/dev/urandom"
mount -t proc proc "$R/proc"
mount -t binfmt_misc binfmt_misc "$R/proc/sys/fs/binfmt_misc"
printf '%s' "$REGISTER" > "$R/proc/sys/fs/binfmt_misc/register"
echo ready
exec sleep 2147483647
"""


class TestPhone:
    __test__ = False  # not a pytest test class

    def __init__(self, profile: DeviceProfile | str, root: str | Path, serialno: str = "",
                 state: str = "device"):
        self.profile = get_profile(profile) if isinstance(profile, str) else profile
        self.root = Path(root).resolve()
        self.serialno = serialno or f"EVIT{self.profile.name.upper()}"
        self.state = state
        self.fault: str | None = None
        self.slowdown_us = 0.0
        self.hangup_kills = True
        self.thermal_status = 0
        self._throttle_until = 0.0
        self.server: AdbdServer | None = None
        self.log: list[str] = []  # every shell command line received
        self._init: subprocess.Popen | None = None
        self._procs: set[subprocess.Popen] = set()
        self._lock = threading.Lock()
        self._build_root()

    # -- lifecycle -------------------------------------------------------------------------
    def start(self, port: int = 0) -> TestPhone:
        ok, why = available()
        if not ok:
            raise RuntimeError(f"the test phone cannot run here: {why}")
        self._start_namespace()
        self.server = AdbdServer(self, port)
        _RUNNING.add(self)
        return self

    def _start_namespace(self) -> None:
        # the handler's path is resolved when a file is run: inside the phone's root
        register = (f":evit-aarch64:M:0:{_esc(_MAGIC)}:{_esc(_MASK)}:"
                    "/system/bin/.evit_benchmark_model:")
        binds = sorted({sys.base_prefix, sys.prefix, str(REPO)})
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "REGISTER": register}
        self._init = subprocess.Popen(
            ["unshare", "--user", "--map-root-user", "--mount", "--pid", "--fork",
             "--propagation", "private", "sh", "-c", _INIT, "init", str(self.root), *binds],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
            start_new_session=True)
        line = self._init.stdout.readline()
        if line.strip() != b"ready":
            err = self._init.stderr.read().decode(errors="replace")
            self._init.kill()
            raise RuntimeError(f"the test phone's namespace did not start: {err.strip()}")
        # unshare stays outside the new PID namespace; its child is the namespace's init
        kids = Path(f"/proc/{self._init.pid}/task/{self._init.pid}/children").read_text()
        self._ns_pid = int(kids.split()[0])

    @property
    def port(self) -> int:
        assert self.server is not None, "start() the phone first"
        return self.server.port

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def vanish(self) -> None:
        """The phone disappears: its connections drop and everything on it stops."""
        if self.server is not None:
            self.server.close()
        self._kill_all()
        if self._init is not None and self._init.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._init.pid, signal.SIGKILL)  # the PID namespace dies with it
            self._init.wait()

    stop = vanish

    def throttle(self, seconds: float, status: int = 3) -> None:
        self.thermal_status = status
        self._throttle_until = time.monotonic() + seconds

    @property
    def throttled(self) -> bool:
        if self._throttle_until and time.monotonic() >= self._throttle_until:
            self._throttle_until, self.thermal_status = 0.0, 0
        return self.thermal_status >= 2

    @property
    def benchmark_runs(self) -> int:
        p = self.root / ".evit/benchmark_runs"
        return len(p.read_text().splitlines()) if p.is_file() else 0

    @property
    def last_benchmark_argv(self) -> list[str]:
        """The arguments the last benchmark_model run received, as the shell split them."""
        p = self.root / ".evit/benchmark_argv"
        return p.read_text().split("\0")[:-1] if p.is_file() else []

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

    # -- the phone's file system -----------------------------------------------------------
    def _cpus(self) -> list[tuple[int, float]]:
        return sorted((c, cl.max_mhz) for cl in self.profile.clusters for c in cl.cpus)

    def _build_root(self) -> None:
        r = self.root
        for d in ("system/bin", "data/local/tmp", ".evit", "tmp", "sys/devices/system/cpu",
                  "sys/class/thermal"):
            (r / d).mkdir(parents=True, exist_ok=True)
        for link, target in (("bin", "usr/bin"), ("lib", "usr/lib"), ("lib64", "usr/lib64")):
            if not (r / link).is_symlink():
                (r / link).symlink_to(target)
        b = r / "system/bin"
        if Path(MKSH).is_file() and not (b / "sh").exists():
            shutil.copy2(MKSH, b / "sh")
        if Path(TOYBOX).is_file() and not (b / "toybox").exists():
            shutil.copy2(TOYBOX, b / "toybox")
            applets = subprocess.run([TOYBOX], capture_output=True, text=True).stdout.split()
            for a in applets:
                if a not in STAND_INS and a != "sh" and not (b / a).exists():
                    (b / a).symlink_to("toybox")
        ncpu = os.cpu_count() or 1
        scripts = {"getprop": _GETPROP, "dumpsys": _DUMPSYS, "cmd": _CMD,
                   "taskset": _TASKSET.replace("@HOSTMASK@", f"{(1 << ncpu) - 1:x}"),
                   ".evit_benchmark_model": _BENCHMARK.replace("@PYTHON@", sys.executable)
                   .replace("@PYTHONPATH@", str(REPO))}
        for name, text in scripts.items():
            tmp = b / f".{name}.new"  # replaced, not rewritten: a running phone may hold it
            tmp.write_text(text)
            os.chmod(tmp, 0o755)
            os.replace(tmp, b / name)
        (r / ".evit/battery").write_text("Current Battery Service state:\n  AC powered: false\n"
                                         "  USB powered: true\n  level: 87\n  temperature: 312\n")
        self._write_state()

    def _write_state(self) -> None:
        """The profile- and state-derived files, as they are now (before every command;
        rewritten only when the state changed)."""
        r = self.root
        throttled = self.throttled
        key = (throttled, self.thermal_status, self.fault, self.slowdown_us)
        if key == getattr(self, "_state_key", None):
            return
        self._state_key = key
        (r / ".evit/props").write_text("".join(f"{k}={v}\n" for k, v in
                                               sorted(self.props().items())))
        (r / ".evit/thermalservice").write_text(self.dumpsys_thermal())
        (r / ".evit/fault").write_text(self.fault or "")
        (r / ".evit/slowdown_us").write_text(f"{self.slowdown_us:g}" if self.slowdown_us else "")
        cpus = self._cpus()
        (r / "sys/devices/system/cpu/possible").write_text(f"0-{len(cpus) - 1}\n")
        top = max(m for _, m in cpus)
        for cpu, mhz in cpus:
            d = r / f"sys/devices/system/cpu/cpu{cpu}/cpufreq"
            d.mkdir(parents=True, exist_ok=True)
            khz = int(mhz * 1000)
            capped = int(khz * 0.6) if throttled and mhz == top else khz
            related = [c for cl in self.profile.clusters if cpu in cl.cpus for c in cl.cpus]
            for leaf, value in (("cpuinfo_max_freq", khz), ("scaling_max_freq", capped),
                                ("scaling_cur_freq", capped), ("scaling_governor", "schedutil"),
                                ("related_cpus", " ".join(map(str, related)))):
                (d / leaf).write_text(f"{value}\n")
        for zone, (kind, temp) in enumerate((("cpu-big", 41000), ("skin", 33000))):
            d = r / f"sys/class/thermal/thermal_zone{zone}"
            d.mkdir(parents=True, exist_ok=True)
            (d / "type").write_text(f"{kind}\n")
            (d / "temp").write_text(f"{temp + (30000 if throttled else 0)}\n")

    def _read_back_state(self) -> None:
        """What the phone's own commands changed (``cmd thermalservice ...``)."""
        p = self.root / ".evit/thermal_override"
        if p.is_file():
            v = p.read_text().strip()
            p.unlink()
            if v == "reset":
                self.thermal_status, self._throttle_until = 0, 0.0
            elif v.isdigit():
                self.thermal_status = int(v)

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

    def host_path(self, device_path: str, cwd: str = "/") -> Path:
        """Map a device path into the phone's root folder (never outside it)."""
        p = PurePosixPath(cwd) / device_path
        parts: list[str] = []
        for part in p.parts[1:]:
            if part == "..":
                if parts:
                    parts.pop()
            elif part not in (".", ""):
                parts.append(part)
        return self.root.joinpath(*parts)

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
        """Run one command line in the phone's mksh; relay its output (v2: with the exit
        status), as adbd does."""
        self.log.append(cmd)

        def packet(kind: int, data: bytes) -> None:
            if data:
                stream.write(bytes([kind]) + struct.pack("<I", len(data)) + data)

        out = (lambda b: packet(1, b)) if v2 else stream.write
        err = (lambda b: packet(2, b)) if v2 else stream.write
        with self._lock:
            self._write_state()
            runs_before = self.benchmark_runs
        env = {"PATH": ANDROID_PATH, "HOME": "/", "TMPDIR": "/data/local/tmp",
               "ANDROID_ROOT": "/system", "ANDROID_DATA": "/data", "USER": "shell"}
        proc = subprocess.Popen(
            [shutil.which("nsenter") or "nsenter", "--target", str(self._ns_pid), "--user",
             "--mount", "--pid", "--preserve-credentials", "--",
             shutil.which("chroot") or "chroot", str(self.root),
             "/system/bin/sh", "-c", cmd],  # chroot inside the namespace: its mounts apply
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
            start_new_session=True)
        with self._lock:
            self._procs.add(proc)
        try:
            rc = self._relay(proc, stream, out, err, runs_before)
        except StreamClosed:
            return
        finally:
            if not self.hangup_kills and proc.poll() is None:
                proc.wait()  # left running: a kill on the phone or vanish() ends it
            with self._lock:
                self._procs.discard(proc)
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)  # the host hung up: adbd kills the shell
                proc.wait()
            with self._lock:
                self._read_back_state()
        if rc is not None and v2:
            stream.write(bytes([3]) + struct.pack("<I", 1) + bytes([rc & 0xFF]))

    def _relay(self, proc: subprocess.Popen, stream: Stream, out, err,
               runs_before: int) -> int | None:
        sel = selectors.DefaultSelector()
        sel.register(proc.stdout, selectors.EVENT_READ, out)
        sel.register(proc.stderr, selectors.EVENT_READ, err)
        bufs = {proc.stdout: b"", proc.stderr: b""}
        lines = 0
        while sel.get_map():
            if stream.closed.is_set():
                return None
            for key, _ in sel.select(timeout=0.1):
                data = os.read(key.fd, 65536)
                if not data:
                    sel.unregister(key.fileobj)
                    continue
                key.data(data)
                bufs[key.fileobj] += data
                lines += data.count(b"\n")
            if self.fault in ("disconnect", "hang") and lines >= 4 and \
                    self.benchmark_runs > runs_before:
                if self.fault == "disconnect":
                    self.vanish()
                    return None
                while not stream.closed.is_set() and self.server is not None:
                    time.sleep(0.05)  # stops answering until the host gives up
                return None
        return proc.wait()

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

    def _kill_all(self) -> int:
        with self._lock:
            procs = list(self._procs)
        for p in procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGKILL)
        return len(procs)
