"""Foundation benchmarks: FLOPs evaluations/s, sample_at/s per level, supernet slicing overhead.

    python benchmarks/foundation.py [--quick]

Targets (issue 2): flops(arch) >= 20,000/s; sample_at >= 1,000/s at every level with the
window [F, F+20]; supernet forward(x, arch) time / extracted static model time <= 1.10
(CPU, batch 32, res 224).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import write_section  # noqa: E402

from toolkit.flops import flops, flops_encoded  # noqa: E402
from toolkit.space import SPACE, SearchSpace  # noqa: E402
from toolkit.supernet import Supernet  # noqa: E402
from toolkit.zoo import get_arch, hss_archs  # noqa: E402

LEVELS = (100, 200, 300, 400, 500, 700, 900, 1200)


def bench_flops(n: int) -> tuple[float, float]:
    s = SearchSpace(seed=0)
    archs = [s.decode(r) for r in s.sample_encoded(n)]
    t = time.perf_counter()
    for a in archs:
        flops(a)
    scalar = n / (time.perf_counter() - t)
    enc = s.sample_encoded(200_000)
    t = time.perf_counter()
    flops_encoded(enc)
    vec = len(enc) / (time.perf_counter() - t)
    return scalar, vec


def bench_sample_at(n: int) -> dict[int, float]:
    out = {}
    for lvl in LEVELS:
        s = SearchSpace(seed=lvl)  # fresh: includes the cold start of each window
        t = time.perf_counter()
        for _ in range(n):
            s.sample_at(lvl, lvl + 20)
        out[lvl] = n / (time.perf_counter() - t)
    return out


def bench_overhead(batch: int, repeats: int) -> list[tuple[str, float, float, float]]:
    torch.manual_seed(0)
    sup = Supernet().eval()
    s = SearchSpace(seed=3)
    archs = {"elasticvit_s2": get_arch("elasticvit_s2"), "elasticvit_m": get_arch("elasticvit_m"),
             "hss min_3": hss_archs()["min_3"], "min @224": SPACE.min().replace(resolution=224),
             "max @224": SPACE.max().replace(resolution=224)}
    while len(archs) < 8:
        a = s.sample()
        archs[f"random #{len(archs) - 4}"] = a.replace(resolution=224)
    x = torch.randn(batch, 3, 224, 224)
    rows = []
    with torch.inference_mode():
        for name, a in archs.items():
            net = sup.extract(a).eval()
            sup(x, a), net(x)  # warm-up
            ts, tt = [], []
            for _ in range(repeats):  # interleaved, so drift hits both alike
                t0 = time.perf_counter()
                sup(x, a)
                t1 = time.perf_counter()
                net(x)
                t2 = time.perf_counter()
                ts.append(t1 - t0)
                tt.append(t2 - t1)
            ms, mt = statistics.median(ts), statistics.median(tt)
            rows.append((f"{name} ({flops(a.replace(resolution=224)):.0f} MF)", ms * 1e3,
                         mt * 1e3, ms / mt))
            print(f"  {rows[-1][0]:<32} supernet {ms * 1e3:7.1f} ms  static {mt * 1e3:7.1f} ms"
                  f"  ratio {ms / mt:.3f}", flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer repeats (smoke run, no write)")
    args = ap.parse_args()
    scalar, vec = bench_flops(2_000 if args.quick else 50_000)
    print(f"flops(arch): {scalar:,.0f}/s scalar, {vec:,.0f}/s vectorized")
    per_level = bench_sample_at(200 if args.quick else 5_000)
    print("sample_at/s:", {k: round(v) for k, v in per_level.items()})
    rows = bench_overhead(4 if args.quick else 32, 2 if args.quick else 7)
    if args.quick:
        return
    ratios = [r[3] for r in rows]
    body = [
        "| metric | value | target |", "|---|---|---|",
        f"| `flops(arch)` evaluations per second (scalar, uncached) | {scalar:,.0f} | ≥ 20,000 |",
        f"| `flops_encoded` (vectorized numpy) per second | {vec:,.0f} | – |",
    ]
    for lvl, v in per_level.items():
        body.append(f"| `sample_at({lvl}, {lvl + 20})` per second (5,000 calls, cold start "
                    f"included) | {v:,.0f} | ≥ 1,000 |")
    body += ["", "Slicing overhead: `Supernet.forward(x, arch)` vs the extracted static model, "
             "CPU, batch 32, res 224, fp32, eval, `torch.inference_mode`, median of 7 interleaved "
             "runs (target ratio ≤ 1.10):", "",
             "| subnet (MFLOPs at 224) | supernet ms | static ms | ratio |", "|---|---|---|---|"]
    body += [f"| {n} | {a:.1f} | {b:.1f} | {r:.3f} |" for n, a, b, r in rows]
    body.append(f"\nRatio: median {statistics.median(ratios):.3f}, max {max(ratios):.3f}.")
    write_section("foundation", "Foundation: FLOPs, sampling, slicing overhead (issue 2)",
                  "\n".join(body))


if __name__ == "__main__":
    main()
