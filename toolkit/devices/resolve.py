"""A device by the name a user gives: a profile name or alias (``host`` = this machine, with
the aliases ``device_profiles/host.yaml`` lists) or an attached phone's adb serial."""

from __future__ import annotations

from toolkit.devices.base import DeviceError

__all__ = ["open_device"]


def open_device(name: str, serial: str | None = None, binary=None, adb_port: int | None = None):
    """A device by profile name/alias (``host`` = this machine) or by adb serial."""
    from device_profiles import ProfileError, get_profile
    from toolkit.devices.host import HostDevice

    try:
        profile = get_profile(name)
    except ProfileError as e:
        profile, unknown = None, str(e)
    if profile is not None and profile.is_host:
        return HostDevice(profile)
    from toolkit.devices.adb import AdbDevice, client, list_attached

    c = client(adb_port)
    attached = list_attached(c)
    if profile is None:  # maybe a serial
        hits = [d for d in attached if d.serial == name]
        if not hits:
            raise DeviceError(
                f"--device {name!r} is not an attached phone's serial either: {unknown}"
            )
        serial = name
    ready = [d for d in attached if d.state == "device"
             and (serial is None or d.serial == serial)
             and (profile is None or (d.profile and d.profile.name == profile.name))]
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
