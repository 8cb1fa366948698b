"""This machine's CPU as a device: the same interface as a phone, backed by ai-edge-litert.

Each benchmark runs ``python -m toolkit.devices.litert_bench`` (benchmark_model's flags and
output format) in a subprocess pinned to the mode's CPU mask, with a timeout that kills the
whole process group. Thermal and frequency state come from this machine's /sys where readable.
"""

from __future__ import annotations

import contextlib
import os
import platform
import signal
import subprocess
import sys
from pathlib import Path

from device_profiles import DeviceProfile, get_profile

from .base import DeviceError, DeviceTimeout, Snapshot
from .benchmark_model import BenchmarkFlags
from .hygiene import FREQ_FILES, THERMAL_ZONES, parse_snapshot


def _read(path: str) -> str:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return ""


def runtime_versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for pkg in ("ai-edge-litert", "litert-torch", "torch", "adbutils", "evit"):
        with contextlib.suppress(PackageNotFoundError):
            out[pkg] = version(pkg)
    return out


class HostDevice:
    runtime = "litert-host"

    def __init__(self, profile: DeviceProfile | None = None):
        self.profile = profile or get_profile("host")
        self.serial = platform.node() or "host"

    def fingerprint(self) -> dict:
        return {
            "serial": self.serial,
            "cpu": self.profile.soc,
            "cpus": sorted(c for cl in self.profile.clusters for c in cl.cpus),
            "machine": platform.machine(),
            "kernel": platform.release(),
            "ai-edge-litert": runtime_versions().get("ai-edge-litert", ""),
        }

    def runtime_id(self) -> tuple[str, str]:
        return self.runtime, f"ai-edge-litert=={runtime_versions().get('ai-edge-litert', '?')}"

    def prepare_model(self, local_path: str) -> str:
        if not os.path.isfile(local_path):
            raise DeviceError(f"model {local_path} does not exist")
        return str(Path(local_path).resolve())

    def run_benchmark(self, flags: BenchmarkFlags, mask: str, timeout: float) -> str:
        cmd = [sys.executable, "-m", "toolkit.devices.litert_bench", *flags.argv(),
               f"--cpu_mask={mask}"]
        # the installed package (pip install -e . or a wheel) is importable by any Python of
        # this environment: nothing to add to the child's path
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, start_new_session=True)
        try:
            out, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired as e:
            os.killpg(proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):  # a pipe a stray holds open
                proc.communicate(timeout=10)
            raise DeviceTimeout(f"host benchmark timed out after {timeout:.0f} s and was killed"
                                ) from e
        if proc.returncode != 0:
            raise DeviceError(f"host benchmark exited with {proc.returncode}: {out.strip()[-400:]}")
        return out

    def fetch_op_csv(self, remote_csv: str) -> str | None:
        return _read(remote_csv) or None

    def snapshot(self) -> Snapshot:
        lines = []
        for c in sorted(x for cl in self.profile.clusters for x in cl.cpus):
            for leaf in FREQ_FILES:
                lines.append(f"cpu{c}.{leaf}={_read(f'/sys/devices/system/cpu/cpu{c}/cpufreq/{leaf}')}")
        for z in range(THERMAL_ZONES):
            lines.append(f"zone{z}={_read(f'/sys/class/thermal/thermal_zone{z}/temp')}")
        return parse_snapshot("\n".join(lines))

    def cleanup(self) -> None:
        pass
