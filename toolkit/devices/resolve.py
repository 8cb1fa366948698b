"""Devices by the names users give: one resolution path for every command.

A name is a profile name or any name the profile answers to (``device_profiles``: aliases,
marketing names, the SoC; the host's aliases are those ``device_profiles/host.yaml`` lists),
``all`` (every attached phone, in a suite), or an attached phone's adb serial.
"""

from __future__ import annotations

from collections.abc import Callable

from device_profiles import DeviceProfile, ProfileError, get_profile
from toolkit.devices.base import DeviceError

__all__ = ["lookup_profile", "is_host", "open_device", "resolve_devices"]


def lookup_profile(name: str) -> tuple[DeviceProfile | None, str]:
    """(the profile ``name`` names, "") or (None, why it names none)."""
    try:
        return get_profile(name), ""
    except ProfileError as e:
        return None, str(e)


def is_host(name: str) -> bool:
    """Whether ``name`` names this machine (``host`` or an alias from host.yaml)."""
    profile, _ = lookup_profile(name)
    return profile is not None and profile.is_host


def _matching(attached: list, name: str, profile: DeviceProfile | None,
              serial: str | None = None) -> list:
    """The usable attached phones that ``name`` (a profile, or else a serial) and
    ``serial`` select."""
    return [d for d in attached if d.state == "device"
            and (serial is None or d.serial == serial)
            and (d.serial == name if profile is None
                 else d.profile is not None and d.profile.name == profile.name)]


def open_device(name: str, serial: str | None = None, binary=None, adb_port: int | None = None):
    """One device by profile name/alias (the host's: this machine) or by adb serial; an
    error says what is attached and how to choose."""
    from toolkit.devices.host import HostDevice

    profile, unknown = lookup_profile(name)
    if profile is not None and profile.is_host:
        return HostDevice(profile)
    from toolkit.devices.adb import AdbDevice, client, list_attached

    c = client(adb_port)
    attached = list_attached(c)
    if profile is None and not any(d.serial == name for d in attached):
        raise DeviceError(f"--device {name!r} is not an attached phone's serial either: {unknown}")
    ready = _matching(attached, name, profile, serial)
    if not ready:
        seen = "; ".join(d.describe() for d in attached) or "none"
        raise DeviceError(
            f"no attached phone matches --device {name}{f' --serial {serial}' if serial else ''}"
            f" (attached: {seen}). Connect one with USB debugging on, or use --device host"
        )
    if len(ready) > 1 and serial is None:
        raise DeviceError(f"{len(ready)} phones match {name}: "
                          f"{', '.join(d.serial for d in ready)}; pick one with --serial")
    return AdbDevice(c, ready[0].serial, profile=ready[0].profile, binary=binary)


def _attached_phones(adb_port: int | None, log: Callable[[str], None]) -> tuple[object, list]:
    """(adb client, usable attached phones with a profile); no adb server: (None, [])."""
    from toolkit.devices.adb import client, list_attached

    try:
        c = client(adb_port)
        return c, [d for d in list_attached(c) if d.state == "device" and d.profile]
    except (DeviceError, OSError) as e:
        log(f"no adb server: {e}")
        return None, []


def resolve_devices(names: list[str], adb_port: int | None = None, binary=None,
                    fallback_host: bool = False, log: Callable[[str], None] = print) -> list:
    """Every device a suite names, at once: the host (by any of its names), phones by
    profile or serial, ``all`` attached phones. No phone matching: an error, or the host
    with ``fallback_host``. Phones need ``binary`` (benchmark_model)."""
    from toolkit.devices.adb import AdbDevice
    from toolkit.devices.host import HostDevice

    hosts = [n for n in names if is_host(n)]
    devices: list = [HostDevice()] if hosts else []
    wanted = [n for n in names if n not in hosts]
    if not wanted:
        return devices
    c, attached = _attached_phones(adb_port, log)
    chosen = {}
    for n in wanted:
        hits = attached if n == "all" else _matching(attached, n, lookup_profile(n)[0])
        chosen.update((d.serial, d) for d in hits)
    if not chosen:
        if not fallback_host:
            raise DeviceError(f"no attached phone matches {wanted}; attach one, or run with "
                              "--fallback-host to use this machine")
        log(f"no attached phone matches {wanted}: falling back to the host")
        return devices or [HostDevice()]
    if binary is None:
        raise DeviceError("phones need TFLite's benchmark_model: pass --benchmark-binary PATH")
    return devices + [AdbDevice(c, d.serial, profile=d.profile, binary=binary)
                      for d in chosen.values()]
