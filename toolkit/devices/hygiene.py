"""Measurement hygiene: thermal status and CPU frequencies, before and after every run.

Sources (reference/device_benchmarking.md §10): ``dumpsys thermalservice`` (Android 10+;
``Thermal Status: 0..6``, per-sensor temperatures), ``/sys/class/thermal/thermal_zone*/temp``
(milli-°C) as a fallback, and ``/sys/devices/system/cpu/cpu*/cpufreq/{scaling_cur_freq,
scaling_max_freq, cpuinfo_max_freq, scaling_governor}``: a ``scaling_max_freq`` below
``cpuinfo_max_freq`` means the kernel has capped the core.
"""

from __future__ import annotations

import re
import shlex
import time
from collections.abc import Callable

from .base import Snapshot

_STATUS = re.compile(r"Thermal Status:\s*(\d+)")
_TEMP = re.compile(r"Temperature\{mValue=([-\d.]+), mType=(\d+)")
FREQ_FILES = ("scaling_cur_freq", "scaling_max_freq", "cpuinfo_max_freq", "scaling_governor")
THERMAL_ZONES = 16


def parse_thermalservice(text: str) -> tuple[int | None, float | None]:
    """(global status, hottest CPU/SKIN temperature in °C) from ``dumpsys thermalservice``."""
    m = _STATUS.search(text)
    status = int(m.group(1)) if m else None
    temps = [float(v) for v, t in _TEMP.findall(text) if t in ("0", "3")]  # CPU, SKIN
    return status, (max(temps) if temps else None)


def snapshot_command(cpus: list[int]) -> str:
    """One shell line that prints KEY=VALUE for every file hygiene reads (arguments quoted)."""
    parts = []
    for c in cpus:
        for leaf in FREQ_FILES:
            path = f"/sys/devices/system/cpu/cpu{c}/cpufreq/{leaf}"
            parts.append(f"echo {shlex.quote(f'cpu{c}.{leaf}')}=$(cat {shlex.quote(path)} "
                         "2>/dev/null)")
    for z in range(THERMAL_ZONES):
        path = f"/sys/class/thermal/thermal_zone{z}/temp"
        parts.append(f"echo {shlex.quote(f'zone{z}')}=$(cat {shlex.quote(path)} 2>/dev/null)")
    return "; ".join(parts)


def parse_snapshot(kv_text: str, thermal_text: str = "") -> Snapshot:
    snap = Snapshot()
    zone_temps = []
    for line in kv_text.splitlines():
        key, _, value = line.strip().partition("=")
        value = value.strip()
        if not value:
            continue
        if key.startswith("cpu") and "." in key:
            cpu_s, leaf = key[3:].split(".", 1)
            if not cpu_s.isdigit():
                continue
            cpu = int(cpu_s)
            if leaf == "scaling_governor":
                snap.governor[cpu] = value
            elif value.isdigit():
                {"scaling_cur_freq": snap.cur_khz, "scaling_max_freq": snap.scaling_max_khz,
                 "cpuinfo_max_freq": snap.cpuinfo_max_khz}[leaf][cpu] = int(value)
        elif key.startswith("zone") and value.lstrip("-").isdigit():
            zone_temps.append(int(value) / 1000)
    status, temp = parse_thermalservice(thermal_text) if thermal_text else (None, None)
    snap.thermal_status = status
    snap.max_temp_c = temp if temp is not None else (max(zone_temps) if zone_temps else None)
    return snap


def wait_for_cooldown(read: Callable[[], Snapshot], max_wait_s: float, poll_s: float,
                      sleep: Callable[[float], None] = time.sleep) -> tuple[Snapshot, float]:
    """Poll until the device is not throttled or ``max_wait_s`` has passed (bounded)."""
    start = time.monotonic()
    snap = read()
    while snap.throttled and time.monotonic() - start < max_wait_s:
        sleep(min(poll_s, max(0.0, max_wait_s - (time.monotonic() - start))))
        snap = read()
    return snap, time.monotonic() - start
