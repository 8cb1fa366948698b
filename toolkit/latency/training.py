"""A device's latency predictor trained from a kernel table, checked on random subnets.

    evit-profile --device pixel4 --train-from-table data/elasticvit_block_lut/pixel4.json
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .predictor import LatencyPredictor
from .table import LatencyTable, TableError, import_lut

__all__ = ["TableFit", "read_table", "train_from_table"]

CHECK_SUBNETS, CHECK_SEED = 500, 2023  # random subnets the fit is checked on


@dataclass
class TableFit:
    predictor: LatencyPredictor
    path: Path  # where it was saved
    kernels: int  # table rows trained on
    within10: float  # share of CHECK_SUBNETS random subnets within ±10% of the table sum
    within5: float


def read_table(path: str | Path, device: str) -> LatencyTable:
    """An evit latency table, or else a phone table of data/elasticvit_block_lut."""
    try:
        return LatencyTable.load(path)
    except TableError:  # not our format: a phone table ({key: ms}), or an error naming it
        return import_lut(path, device)


def train_from_table(device: str, table_path: str | Path, out: str | Path | None = None
                     ) -> TableFit:
    """Fit the device's predictor on every row of the table, check it against the table sums
    of random subnets and save it to ``out`` (default: the user predictor folder)."""
    from device_profiles import get_profile
    from toolkit.space import SPACE, SearchSpace

    from . import kernels, user_predictor_dir

    name = get_profile(device).name
    table = read_table(table_path, name)
    codes, ms = table.arrays()
    pred = LatencyPredictor.fit(name, codes, ms, convention=table.convention,
                                provenance={"source": str(table_path)})
    sp = SearchSpace(seed=CHECK_SEED)
    archs = [sp.sample() for _ in range(CHECK_SUBNETS)]
    truth = np.array([table.lookup_sum(kernels(a, table.convention)) for a in archs])
    err = pred.predict_encoded(np.stack([SPACE.encode(a) for a in archs])) / truth - 1
    path = Path(out) if out else user_predictor_dir() / f"{name}.json"
    pred.save(path)
    return TableFit(pred, path, len(table), float(np.mean(np.abs(err) <= 0.1)),
                    float(np.mean(np.abs(err) <= 0.05)))
