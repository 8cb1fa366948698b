"""Sub-space sampling speed (issue 21): subnets per second drawn uniformly from each level's
HSS sub-space ∩ [F, F+20] MFLOPs, after the one-off set-up of the level's strata.

    python benchmarks/subspace_sampling.py [--seconds 2]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import write_section  # noqa: E402

from toolkit.space import SPACE  # noqa: E402
from toolkit.train.samplers import LEVELS, hss_for_level  # noqa: E402
from toolkit.train.subspace import level_space  # noqa: E402
from toolkit.zoo import hss_archs  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seconds", type=float, default=2.0)
    args = ap.parse_args()
    hss = hss_archs()
    rows = ["| level (MFLOPs) | HSS | set-up (s) | subnets/s, `hss` | subnets/s, `off` (window "
            "only) |", "|---|---|---|---|---|"]
    worst = float("inf")
    for f in LEVELS:
        rates = []
        for mode in ("hss", "off"):
            sp = level_space(hss[hss_for_level(f)], mode, SPACE)
            g = np.random.default_rng(0)
            t = time.perf_counter()
            sp.sample_at(f, f + 20, rng=g)
            setup = time.perf_counter() - t
            n, t = 0, time.perf_counter()
            while time.perf_counter() - t < args.seconds:
                sp.sample_at(f, f + 20, rng=g)
                n += 1
            rates.append((setup, n / (time.perf_counter() - t)))
        worst = min(worst, rates[0][1])
        rows.append(f"| {f:g} | {hss_for_level(f)} | {rates[0][0]:.2f} | {rates[0][1]:,.0f} | "
                    f"{rates[1][1]:,.0f} |")
        print(rows[-1], flush=True)
    body = "\n".join(rows) + (f"\n\nSlowest level: {worst:,.0f} subnets/s (target ≥ 1,000). "
                              "Each draw is exact: uniform over sub-space ∩ window.")
    write_section("subspace_sampling", "Sub-space sampling speed (issue 21)", body)
    if worst < 1000:
        sys.exit(1)


if __name__ == "__main__":
    main()
