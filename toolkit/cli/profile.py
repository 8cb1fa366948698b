"""``evit-profile``: measure models on a phone (or this machine) and store the results.

    evit-profile --device host --model m.tflite                 # this machine's CPU
    evit-profile --device pixel6 --model m.tflite --per-layer \\
        --benchmark-binary ~/android_aarch64_benchmark_model    # an attached Pixel 6
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from toolkit.devices.base import ACCELERATORS, DeviceError, RunSpec, resolve_delegate
from toolkit.devices.resolve import open_device
from toolkit.devices.store import ResultStore, StoreError


def default_store() -> str:
    return os.environ.get("EVIT_STORE", os.path.join("runs", "results.sqlite"))


def check_model_file(path: str) -> None:
    """A .tflite to measure: it exists and is a TFLite flatbuffer (identifier TFL3)."""
    try:
        with open(path, "rb") as f:
            head = f.read(8)
    except OSError as e:
        raise ValueError(f"--model {path}: cannot read it ({e.strerror})") from None
    if head[4:8] != b"TFL3":
        raise ValueError(f"--model {path} is not a .tflite model (no TFL3 identifier); export "
                         "one with evit-export --format tflite")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="evit-profile", description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--device", required=True,
                   help="profile name or alias (pixel1, pixel4, pixel6, xiaomi11, host) or "
                   "an adb serial")
    p.add_argument("--serial", help="which phone, when several match --device")
    p.add_argument("--model", help=".tflite file to measure")
    p.add_argument("--mode", default="", help="a profile mode (e.g. gold-1t); default: the "
                   "profile's default_mode (see `evit devices`)")
    p.add_argument("--mask", default="", help="taskset mask in hex (overrides the mode's)")
    p.add_argument("--threads", type=int, default=0, help="threads (overrides the mode's)")
    p.add_argument("--runs", type=int, default=None,
                   help="timed runs per invocation (default: 50; a campaign: 30)")
    p.add_argument("--warmup", type=int, default=5, help="warm-up runs per invocation")
    p.add_argument("--repeats", type=int, default=None,
                   help="benchmark_model invocations (default: 5; a campaign: 3)")
    p.add_argument("--min-secs", type=float, default=0.0,
                   help="each invocation also runs at least this many seconds (spreads the "
                   "runs past a shared machine's slow phases; default 0: exactly --runs)")
    p.add_argument("--subnet-repeats", type=int, default=0,
                   help="a campaign's whole subnets: invocations each (default 0: --repeats; "
                   "they are few and fit the overhead, so they can afford more)")
    p.add_argument("--subnet-min-secs", type=float, default=None,
                   help="a campaign's whole subnets: seconds per invocation (default: "
                   "--min-secs)")
    p.add_argument("--per-layer", action="store_true", help="also profile every op")
    p.add_argument("--accelerator", choices=ACCELERATORS, default=None,
                   help="cpu (XNNPACK), gpu (--use_gpu) or nnapi (--use_nnapi); checked "
                        "against the device profile's delegates (default: cpu)")
    p.add_argument("--delegate", default=None, choices=["xnnpack", "cpu", "gpu", "nnapi"],
                   help="the delegate itself: xnnpack, cpu (TFLite's own kernels, no "
                        "XNNPACK), gpu, nnapi (default: xnnpack)")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds per invocation")
    p.add_argument("--max-cooldown", type=float, default=120.0,
                   help="seconds to wait for a throttled phone to cool down")
    p.add_argument("--store", default=default_store(), help="SQLite result store")
    p.add_argument("--label", default="", help="free-form label stored with the result")
    p.add_argument("--benchmark-binary", help="TFLite benchmark_model for android_aarch64")
    p.add_argument("--download-binary", action="store_true",
                   help="download the official nightly benchmark_model (needs internet)")
    p.add_argument("--binary-sha256", help="refuse a binary whose sha256 differs")
    p.add_argument("--adb-port", type=int, default=None)
    p.add_argument("--json", action="store_true", help="print the stored result as JSON")
    p.add_argument("--train-from-table", metavar="TABLE",
                   help="train the device's latency predictor from a kernel table (a phone table "
                   "of data/elasticvit_block_lut or an evit latency table) and install it")
    p.add_argument("--out", help="where --train-from-table writes the predictor (default: the "
                   "user predictor folder, $EVIT_PREDICTORS); for a campaign, its folder "
                   "(default runs/profile_<device>)")
    c = p.add_argument_group("profiling campaign (no --model)")
    c.add_argument("--kernels", type=int, default=150, help="kernels to measure")
    c.add_argument("--subnets", type=int, default=12,
                   help="whole subnets measured end to end (overhead fit and check)")
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
    return p


def install_predictor(src: str | os.PathLike, device: str):
    """Copy a trained predictor into the user predictor folder, atomically: a search reading
    it meanwhile sees the old file or the new one, never half of one."""
    from toolkit.fileio import atomic_copy
    from toolkit.latency import user_predictor_dir

    dest = user_predictor_dir() / f"{device}.json"
    atomic_copy(src, dest)
    return dest


def campaign(args, device) -> int:
    from toolkit.latency.profiler import CampaignConfig, report, run_campaign

    out = args.out or os.path.join("runs", f"profile_{device.profile.name}")
    if args.mflops is not None and not 0 < args.mflops[0] < args.mflops[1]:
        raise ValueError(f"--mflops {args.mflops[0]:g} {args.mflops[1]:g}: give LO HI with "
                         "0 < LO < HI (the space spans 37.4-3191.5 MFLOPs)")
    cfg = CampaignConfig(kernels=args.kernels, subnets=args.subnets,
                         num_classes=args.num_classes, runs=args.runs or 30,
                         warmup=args.warmup, repeats=args.repeats or 3,
                         min_secs=args.min_secs, subnet_repeats=args.subnet_repeats,
                         subnet_min_secs=args.subnet_min_secs,
                         mflops=tuple(args.mflops) if args.mflops else None)
    summary = run_campaign(device, out, cfg, progress=lambda m: print(m, file=sys.stderr),
                           workers=args.workers, overwrite=args.overwrite)
    o = summary["overhead"]
    if o.get("form") == "per-kind":
        kinds = " + ".join(f"{v:.2f} x {k}" for k, v in o["kind_scale"].items())
        law = f"{kinds} (per-kind kernel sums)"
    elif o.get("form") == "weights":
        law = (f"{o['scale']:.3f} x kernel sum + {o['ms_per_mb']:.4f} ms per MB of weights "
               f"({1 / o['ms_per_mb'] if o['ms_per_mb'] else float('inf'):.0f} MB/ms)")
    else:
        law = f"{o['scale']:.3f} x kernel sum + {o['offset_ms']:.3f} ms"
    loo = ", ".join(f"{f} {100 * v:.1f}%" for f, v in (o.get("loo_rmspe") or {}).items())
    print(f"{summary['device']}: {summary['kernels']} kernels, {summary['subnets']} subnets "
          f"({summary['statistic']} latency); overhead: measured = {law}"
          + (f" [{o.get('form')}; leave-one-out RMSPE {loo}]" if loo else ""))
    if summary["subnets"]:
        print(f"held-out subnets ({summary['held_out']}) within ±10%: "
              f"{100 * summary['held_out_within10']:.0f}%, within ±5%: "
              f"{100 * summary['held_out_within5']:.0f}% (RMSPE "
              f"{100 * summary['held_out_rmspe']:.1f}%)")
    if args.report:
        for path in report(summary, out):
            print(f"plot: {path}")
    if not args.no_install:
        dest = install_predictor(summary["predictor"], summary["device"])
        print(f"installed the {summary['device']} predictor: {dest}")
    return 0


def train_from_table(device: str, table_path: str, out: str | None) -> int:
    import numpy as np

    from device_profiles import get_profile
    from toolkit.latency import LatencyPredictor, LatencyTable, import_lut, user_predictor_dir
    from toolkit.space import SPACE, SearchSpace

    name = get_profile(device).name
    try:
        table = LatencyTable.load(table_path)
    except Exception:  # noqa: BLE001 - not our format: try a phone table
        table = import_lut(table_path, name)
    codes, ms = table.arrays()
    pred = LatencyPredictor.fit(name, codes, ms, convention=table.convention,
                                provenance={"source": str(table_path)})
    sp = SearchSpace(seed=2023)
    archs = [sp.sample() for _ in range(500)]
    from toolkit.latency import kernels

    truth = np.array([table.lookup_sum(kernels(a, table.convention)) for a in archs])
    err = pred.predict_encoded(np.stack([SPACE.encode(a) for a in archs])) / truth - 1
    path = out or str(user_predictor_dir() / f"{name}.json")
    pred.save(path)
    print(f"trained on {len(table)} kernels; 500 random subnets vs table sums: "
          f"{100 * np.mean(np.abs(err) <= 0.1):.1f}% within ±10%, "
          f"{100 * np.mean(np.abs(err) <= 0.05):.1f}% within ±5%; saved {path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from toolkit.devices.measure import MeasurementError, layer_table, measure, summary

    for flag, v in (("--runs", args.runs), ("--repeats", args.repeats)):
        if v is not None and v < 1:
            print(f"evit-profile: error: {flag} {v}: give at least 1", file=sys.stderr)
            return 2
    if args.subnet_repeats < 0:
        print(f"evit-profile: error: --subnet-repeats {args.subnet_repeats}: give 1 or more "
              "(0: as --repeats)", file=sys.stderr)
        return 2
    for flag, v in (("--min-secs", args.min_secs), ("--subnet-min-secs", args.subnet_min_secs)):
        if v is not None and not 0 <= v <= 60:
            print(f"evit-profile: error: {flag} {v:g}: give 0-60 seconds", file=sys.stderr)
            return 2

    if args.train_from_table:
        from toolkit.latency import PredictorError, TableError

        try:
            return train_from_table(args.device, args.train_from_table, args.out)
        except (TableError, PredictorError, ValueError) as e:
            print(f"evit-profile: error: {e}", file=sys.stderr)
            return 1
    try:
        if args.model:
            check_model_file(args.model)
        # the device first (a typo is named as such), then its benchmark binary
        device = open_device(args.device, args.serial, None, args.adb_port)
        if not device.profile.is_host:
            from toolkit.devices.binary import resolve_binary

            device.binary = resolve_binary(args.benchmark_binary, args.download_binary,
                                           sha256=args.binary_sha256)
        if not args.model:
            return campaign(args, device)
        delegate = resolve_delegate(args.accelerator, args.delegate, device.profile)
        spec = RunSpec(mode=args.mode, mask=args.mask, threads=args.threads,
                       warmup_runs=args.warmup, num_runs=args.runs or 50,
                       repeats=args.repeats or 5, min_secs=args.min_secs,
                       op_profiling=args.per_layer, delegate=delegate,
                       timeout_s=args.timeout, max_cooldown_s=args.max_cooldown)
        spec.resolve(device.profile)  # an unknown --mode or a bad --mask: before the store
        with ResultStore(args.store) as store:
            result = measure(device, args.model, spec, store=store, label=args.label,
                             progress=lambda s: print(s, file=sys.stderr))
    except MeasurementError as e:
        print(f"evit-profile: error: {e}\n(recorded as invalid in {args.store})", file=sys.stderr)
        return 1
    except (DeviceError, StoreError, ValueError) as e:
        print(f"evit-profile: error: {e}", file=sys.stderr)
        return 1
    if args.json:
        from dataclasses import asdict

        print(json.dumps(asdict(result), indent=1, default=str))
        return 0
    print(summary(result))
    if args.per_layer:
        print(layer_table(result))
    print(f"stored as result {result.id} in {args.store}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
