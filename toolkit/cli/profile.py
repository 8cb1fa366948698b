"""``evit-profile``: measure models on a phone (or this machine) and store the results.

    evit-profile --device host --tflite m.tflite                 # this machine's CPU
    evit-profile --device pixel6 --tflite m.tflite --per-layer \\
        --benchmark-binary ~/android_aarch64_benchmark_model    # an attached Pixel 6
    evit-profile --device host [--kernels 150] [--mflops 70 140]  # a campaign: the predictor
    evit-profile --device pixel4 --train-from-table pixel4.json   # a predictor from a table
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from toolkit.console import HelpFormatter, deprecated_option, fail
from toolkit.devices.base import ACCELERATORS, DeviceError, RunSpec, resolve_delegate
from toolkit.devices.resolve import open_device
from toolkit.devices.store import ResultStore, StoreError, default_store
from toolkit.latency import install_predictor
from toolkit.space import SPACE

__all__ = ["build_parser", "main", "resolve_store", "install_predictor", "resolve_delegate",
           "check_model_file"]

PROG = "evit-profile"
# a single model is measured longer than each of a campaign's many kernels
RUNS = {"model": RunSpec.num_runs, "campaign": 30}
REPEATS = {"model": RunSpec.repeats, "campaign": 3}


def resolve_store(store: str | None) -> str:
    """--store, else $EVIT_STORE, else runs/results.sqlite."""
    return store or default_store("results")


def check_model_file(path: str) -> None:
    """A .tflite to measure: it exists and is a TFLite flatbuffer (identifier TFL3)."""
    try:
        with open(path, "rb") as f:
            head = f.read(8)
    except OSError as e:
        raise ValueError(f"--tflite {path}: cannot read it ({e.strerror})") from None
    if head[4:8] != b"TFL3":
        raise ValueError(f"--tflite {path} is not a .tflite model (no TFL3 identifier); export "
                         "one with evit-export --format tflite")


def _device_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("device")
    g.add_argument("--device", required=True,
                   help="profile name or alias (pixel1, pixel4, pixel6, xiaomi11, host and "
                   "the aliases of its YAML) or an adb serial")
    g.add_argument("--serial", help="which phone, when several match --device")
    g.add_argument("--adb-port", type=int, default=None,
                   help="the adb server's port (default: $ANDROID_ADB_SERVER_PORT, else 5037)")
    g.add_argument("--benchmark-binary", help="TFLite benchmark_model for android_aarch64")
    g.add_argument("--download-binary", action="store_true",
                   help="download the official nightly benchmark_model (needs internet)")
    g.add_argument("--binary-sha256", help="refuse a binary whose sha256 differs")


def _run_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("how to measure")
    g.add_argument("--mode", default="", help="a profile mode (e.g. gold-1t); default: the "
                   "profile's default_mode (see `evit devices`)")
    g.add_argument("--mask", default="", help="taskset mask in hex (overrides the mode's)")
    g.add_argument("--threads", type=int, default=0,
                   help="threads (overrides the mode's; 0: the mode's)")
    g.add_argument("--runs", type=int, default=None,
                   help=f"timed runs per invocation (default: {RUNS['model']} for --tflite, "
                   f"{RUNS['campaign']} in a campaign)")
    g.add_argument("--warmup", type=int, default=RunSpec.warmup_runs,
                   help="warm-up runs per invocation")
    g.add_argument("--repeats", type=int, default=None,
                   help=f"benchmark_model invocations (default: {REPEATS['model']} for "
                   f"--tflite, {REPEATS['campaign']} in a campaign)")
    g.add_argument("--min-secs", type=float, default=0.0,
                   help="each invocation also runs at least this many seconds (spreads the "
                   "runs past a shared machine's slow phases; 0: exactly --runs)")
    g.add_argument("--accelerator", choices=ACCELERATORS, default=None,
                   help="cpu (XNNPACK), gpu (--use_gpu) or nnapi (--use_nnapi); checked "
                        "against the device profile's delegates (default: cpu)")
    g.add_argument("--delegate", default=None, choices=["xnnpack", "cpu", "gpu", "nnapi"],
                   help="the delegate itself: xnnpack, cpu (TFLite's own kernels, no "
                        "XNNPACK), gpu, nnapi (default: xnnpack)")
    g.add_argument("--timeout", type=float, default=RunSpec.timeout_s,
                   help="seconds per invocation")
    g.add_argument("--max-cooldown", type=float, default=RunSpec.max_cooldown_s,
                   help="seconds to wait for a throttled phone to cool down")


def _model_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("one model (--tflite)")
    g.add_argument("--tflite", dest="model", metavar="FILE",
                   help=".tflite file to measure (without it: a campaign)")
    deprecated_option(g, "--model", "--tflite", dest="model")
    g.add_argument("--per-layer", action="store_true", help="also profile every op")
    g.add_argument("--store", default=None,
                   help="SQLite result store (default: $EVIT_STORE, else runs/results.sqlite)")
    g.add_argument("--label", default="", help="free-form label stored with the result")
    g.add_argument("--json", action="store_true", help="print the stored result as JSON")


def _campaign_options(p: argparse.ArgumentParser) -> None:
    c = p.add_argument_group("profiling campaign (no --tflite)")
    c.add_argument("--kernels", type=int, default=150, help="kernels to measure")
    c.add_argument("--subnets", type=int, default=12,
                   help="whole subnets measured end to end (overhead fit and check)")
    c.add_argument("--subnet-repeats", type=int, default=0,
                   help="the whole subnets' invocations each (0: --repeats; they are few and "
                   "fit the overhead, so they can afford more)")
    c.add_argument("--subnet-min-secs", type=float, default=None,
                   help="the whole subnets' seconds per invocation (default: --min-secs)")
    c.add_argument("--mflops", type=float, nargs=2, metavar=("LO", "HI"),
                   help="profile the part of the space you will search: kernels and subnets "
                   "drawn from subnets of LO-HI MFLOPs (default: the whole space)")
    c.add_argument("--workers", type=int, default=None,
                   help="processes converting kernels to .tflite (default: min(2, cpus))")
    c.add_argument("--num-classes", type=int, default=1000, help="classifier size of the head")
    c.add_argument("--report", action="store_true",
                   help="write predicted-vs-measured plots (PNG) and print the accuracy")
    c.add_argument("--overwrite", action="store_true",
                   help="start over in --out even though it holds another campaign (deletes it)")
    c.add_argument("--no-install", action="store_true",
                   help="do not install the trained predictor for the device")
    c.add_argument("--train-from-table", metavar="TABLE",
                   help="instead of measuring: train the device's predictor from a kernel "
                   "table (a phone table of data/elasticvit_block_lut or an evit latency "
                   "table) and install it")
    c.add_argument("--out", help="the campaign's folder (default: runs/profile_<device>); "
                   "with --train-from-table, the predictor file (default: the user predictor "
                   "folder, $EVIT_PREDICTORS)")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0],
                                formatter_class=HelpFormatter)
    _device_options(p)
    _run_options(p)
    _model_options(p)
    _campaign_options(p)
    return p


def bad_values(args: argparse.Namespace) -> str | None:
    """What is wrong with the numbers given, before any work; None: nothing."""
    for flag, v in (("--runs", args.runs), ("--repeats", args.repeats)):
        if v is not None and v < 1:
            return f"{flag} {v}: give at least 1"
    if args.subnet_repeats < 0:
        return f"--subnet-repeats {args.subnet_repeats}: give 1 or more (0: as --repeats)"
    for flag, v in (("--min-secs", args.min_secs), ("--subnet-min-secs", args.subnet_min_secs)):
        if v is not None and not 0 <= v <= 60:
            return f"{flag} {v:g}: give 0-60 seconds"
    if args.mflops is not None and not 0 < args.mflops[0] < args.mflops[1]:
        lo, hi = SPACE.mflops_range()
        return (f"--mflops {args.mflops[0]:g} {args.mflops[1]:g}: give LO HI with 0 < LO < HI "
                f"(the space spans {lo:.1f}-{hi:.1f} MFLOPs)")
    return None


def _given(value, what: str, dflt: dict):
    return dflt[what] if value is None else value


def _say(message: str) -> None:
    from tqdm import tqdm

    tqdm.write(message, file=sys.stderr)  # above the progress bars, if any


def campaign(args: argparse.Namespace, device) -> int:
    from toolkit.latency.campaign import CampaignConfig, run_campaign
    from toolkit.latency.report import report, summary_lines

    out = args.out or os.path.join("runs", f"profile_{device.profile.name}")
    cfg = CampaignConfig(kernels=args.kernels, subnets=args.subnets,
                         num_classes=args.num_classes,
                         runs=_given(args.runs, "campaign", RUNS), warmup=args.warmup,
                         repeats=_given(args.repeats, "campaign", REPEATS),
                         min_secs=args.min_secs, subnet_repeats=args.subnet_repeats,
                         subnet_min_secs=args.subnet_min_secs,
                         mflops=tuple(args.mflops) if args.mflops else None)
    summary = run_campaign(device, out, cfg, progress=_say, workers=args.workers,
                           overwrite=args.overwrite)
    print("\n".join(summary_lines(summary)))
    if args.report:
        for path in report(summary, out):
            print(f"plot: {path}")
    if not args.no_install:
        dest = install_predictor(summary["predictor"], summary["device"])
        print(f"installed the {summary['device']} predictor: {dest}")
    return 0


def train_from_table(device: str, table_path: str, out: str | None) -> int:
    from toolkit.latency.training import CHECK_SUBNETS, train_from_table

    fit = train_from_table(device, table_path, out)
    print(f"trained on {fit.kernels} kernels; {CHECK_SUBNETS} random subnets vs table sums: "
          f"{100 * fit.within10:.1f}% within ±10%, {100 * fit.within5:.1f}% within ±5%; "
          f"saved {fit.path}")
    return 0


def measure_model(args: argparse.Namespace, device, store_path: str) -> int:
    from toolkit.devices.measure import layer_table, measure, summary

    delegate = resolve_delegate(args.accelerator, args.delegate, device.profile)
    spec = RunSpec(mode=args.mode, mask=args.mask, threads=args.threads,
                   warmup_runs=args.warmup, num_runs=_given(args.runs, "model", RUNS),
                   repeats=_given(args.repeats, "model", REPEATS), min_secs=args.min_secs,
                   op_profiling=args.per_layer, delegate=delegate,
                   timeout_s=args.timeout, max_cooldown_s=args.max_cooldown)
    spec.resolve(device.profile)  # an unknown --mode or a bad --mask: before the store
    with ResultStore(store_path) as store:
        result = measure(device, args.model, spec, store=store, label=args.label,
                         progress=_say)
    if args.json:
        from dataclasses import asdict

        print(json.dumps(asdict(result), indent=1, default=str))
        return 0
    print(summary(result))
    if args.per_layer:
        print(layer_table(result))
    print(f"stored as result {result.id} in {store_path}")
    return 0


def _open(args: argparse.Namespace):
    """The device first (a typo is named as such), then its benchmark binary."""
    device = open_device(args.device, args.serial, None, args.adb_port)
    if not device.profile.is_host:
        from toolkit.devices.binary import resolve_binary

        device.binary = resolve_binary(args.benchmark_binary, args.download_binary,
                                       sha256=args.binary_sha256)
    return device


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from toolkit.devices.measure import MeasurementError
    from toolkit.latency import PredictorError, TableError

    wrong = bad_values(args)
    if wrong:
        return fail(PROG, wrong)
    store = resolve_store(args.store)
    try:
        if args.train_from_table:
            return train_from_table(args.device, args.train_from_table, args.out)
        if args.model:
            check_model_file(args.model)
        device = _open(args)
        return measure_model(args, device, store) if args.model else campaign(args, device)
    except MeasurementError as e:
        return fail(PROG, f"{e}\n(recorded as invalid in {store})", 1)
    except (DeviceError, StoreError, TableError, PredictorError, ValueError) as e:
        return fail(PROG, e, 1)


if __name__ == "__main__":
    sys.exit(main())
