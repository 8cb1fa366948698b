"""``evit predict``: predicted latency of named models / arch files on devices with a predictor."""

from __future__ import annotations

import json
from pathlib import Path

from toolkit.flops import flops
from toolkit.space import ArchConfig, ArchError

__all__ = ["predict_table", "devices_with_predictors", "read_archs"]


def devices_with_predictors() -> list[str]:
    """Profile names that have a shipped or installed latency predictor."""
    from device_profiles import list_profiles
    from toolkit.latency import predictor_path

    return [name for name in list_profiles() if predictor_path(name) is not None]


def read_archs(path: str | Path) -> list[tuple[str, ArchConfig]]:
    """Subnets of a JSON-lines file: each line an arch object or an object with 'arch'
    (optionally 'name'); errors name the file and the line."""
    p = Path(path)
    if not p.is_file():
        raise ArchError(f"--archs file {str(p)!r} does not exist")
    out = []
    for n, line in enumerate(p.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            d = json.loads(line)
            arch = ArchConfig.from_dict(d.get("arch", d) if isinstance(d, dict) else d)
        except (json.JSONDecodeError, ArchError) as e:
            raise ArchError(f"{p}, line {n}: {e}") from None
        out.append((str(d.get("name", f"line {n}")) if isinstance(d, dict) else f"line {n}",
                    arch))
    if not out:
        raise ArchError(f"--archs file {str(p)!r} holds no subnets")
    return out


def predict_table(model: str | None, arch: str | None, archs: str | None,
                  device: str = "all") -> list[dict]:
    """Rows {subnet, device, latency_ms, mflops} for every subnet on every device asked."""
    from device_profiles import get_profile
    from toolkit.latency import load_predictor
    from toolkit.zoo import get_arch

    if model:
        subnets = [(model, get_arch(model))]
    elif arch:
        subnets = [(Path(arch).stem, ArchConfig.load(arch))]
    else:
        subnets = read_archs(archs)
    if device == "all":
        names = devices_with_predictors()
        if not names:
            raise ValueError("no device has a latency predictor (none shipped or installed)")
    else:
        names = [get_profile(device).name]  # any name it answers to; unknown: close matches
    rows = []
    for dev in names:
        p = load_predictor(dev)
        for label, a in subnets:
            rows.append({"subnet": label, "device": dev, "latency_ms": round(p.predict(a), 3),
                         "mflops": round(flops(a), 2), "arch": a.to_dict()})
    return rows
