"""``evit-demo``: the whole pipeline on embedded defaults, on this machine, in minutes.

    evit-demo                     # train -> profile the host -> search (host, pixel4) -> export
                                  # both -> benchmark them on the host beside the profile's
                                  # subnets (this machine's speed now) -> summary table
    evit-demo --out runs/demo2 --train-steps 60 --kernels 30    # smaller / faster

Every step prints its equivalent command (with its arguments, so you can run it yourself) and
leaves its files in --out. Run it again after an interruption and finished steps are kept:
training resumes from its last checkpoint, the profiling campaign and the searches resume from
their logs.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import fields

from toolkit.console import HelpFormatter, fail
from toolkit.demo import DemoConfig, DemoConfigError, DemoError, run_demo

_HELP = {
    "out": "folder for every step's files",
    "train_steps": "supernet training steps (batch 16)",
    "levels": "MFLOPs levels: trained, profiled and searched",
    "kernels": "host campaign kernels",
    "subnets": "host campaign subnets",
    "host_ms": "host latency budget (default: the median predicted latency of subnets at the "
               "middle level)",
    "pixel4_ms": "pixel4 latency budget (shipped predictor)",
    "references": "subnets of step 2 measured again beside the exports, for the "
                  "speed-rescaled error (0: none)",
    "population": "search: initial subnets per budget",
    "generations": "search: evolution generations",
    "calib_images": "search fitness: BN recalibration images",
    "search_images": "search fitness: search-split images",
    "seed": "seed of every step",
}


def build_parser() -> argparse.ArgumentParser:
    d = DemoConfig()
    p = argparse.ArgumentParser(prog="evit-demo", description=__doc__,
                                formatter_class=HelpFormatter)
    for f in fields(DemoConfig):
        default = getattr(d, f.name)
        kw: dict = {"help": _HELP[f.name], "default": default}
        if f.name == "levels":
            kw.update(type=float, nargs="+", default=list(default))
        elif f.name == "host_ms":
            kw["type"] = float
        elif not isinstance(default, str):
            kw["type"] = type(default)
        p.add_argument(f"--{f.name.replace('_', '-')}", **kw)
    return p


def main(argv: list[str] | None = None) -> int:
    a = build_parser().parse_args(argv)
    cfg = DemoConfig(**{k: tuple(v) if k == "levels" else v for k, v in vars(a).items()})
    try:
        run_demo(cfg, log=lambda m: print(m, flush=True))
    except DemoConfigError as e:
        return fail("evit-demo", e)
    except DemoError as e:
        return fail("evit-demo", e, code=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
