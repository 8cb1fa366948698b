"""Kernel latency tables and gradient-boosted latency predictors (see kernels.py, predictor.py).

    from toolkit.latency import load_predictor
    load_predictor("pixel4").predict(arch)      # ms, from the shipped predictor
"""

from __future__ import annotations

import os
from pathlib import Path

from .kernels import Kernel, kernel_codes, kernels, parse_key
from .predictor import LatencyPredictor, PredictorError
from .table import LatencyTable, TableError, import_lut

__all__ = ["Kernel", "kernels", "kernel_codes", "parse_key", "LatencyPredictor",
           "PredictorError", "LatencyTable", "TableError", "import_lut", "load_predictor",
           "predictor_path", "user_predictor_dir", "install_predictor"]


def user_predictor_dir() -> Path:
    return Path(os.environ.get("EVIT_PREDICTORS",
                               Path.home() / ".local" / "share" / "evit" / "predictors"))


def predictor_path(device: str) -> Path | None:
    """The installed predictor for a device: the user's (from a campaign) before the shipped."""
    from device_profiles import PREDICTORS, get_profile

    name = get_profile(device).name
    for folder in (user_predictor_dir(), PREDICTORS):
        p = folder / f"{name}.json"
        if p.is_file():
            return p
    return None


def load_predictor(device: str) -> LatencyPredictor:
    path = predictor_path(device)
    if path is None:
        raise PredictorError(
            f"no latency predictor for {device}: run `evit-profile --device {device}` to profile "
            "it (the host, or a phone), or train one from a kernel table with "
            f"`evit-profile --device {device} --train-from-table TABLE.json`"
        )
    return LatencyPredictor.load(path)


def install_predictor(src: str | os.PathLike, device: str) -> Path:
    """Copy a trained predictor into the user predictor folder, atomically: a search reading
    it meanwhile sees the old file or the new one, never half of one."""
    from toolkit.fileio import atomic_copy

    dest = user_predictor_dir() / f"{device}.json"
    atomic_copy(src, dest)
    return dest
