"""``evit``: small utilities over the search space and the model zoo.

    evit models [PATTERN] [--json]      named models with MFLOPs and params
    evit space [--json]                 the search space (Table 1) and its size
    evit flops NAME_OR_ARCH.json        MFLOPs / params of one subnet (with per-part breakdown)
    evit sample [-n N] [--mflops LO HI] [--seed S]   random subnets as JSON lines
    evit devices [--json]               attached phones (matched to profiles) and known profiles
    evit import-release CKPT --out supernet.pt   the authors' released supernet as an evit one
    evit arch NAME_OR_ARCH.json --to-release     a subnet as the release's 10-field list
    evit arch --from-release LIST_OR_YAML [--name elastic_M] [--out arch.json]
    evit inspect MODEL.tflite|MODEL.onnx [--json]   the metadata evit-export embedded in it
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from toolkit.checkpoint import CheckpointError
from toolkit.console import HelpFormatter, fail
from toolkit.flops import flops, flops_breakdown, params
from toolkit.space import SPACE, ArchConfig, ArchError, SearchSpace
from toolkit.zoo import get_model_info, list_models


def _arch_arg(value: str) -> ArchConfig:
    if value in list_models():
        return get_model_info(value).arch
    if Path(value).suffix == ".json" or Path(value).exists():
        return ArchConfig.load(value)
    raise ArchError(f"{value!r} is neither a named model ({', '.join(list_models())}) nor an "
                    "arch JSON file")


def cmd_models(args: argparse.Namespace) -> int:
    rows = []
    for name in list_models(args.pattern):
        info = get_model_info(name)
        rows.append({"name": name, "resolution": info.arch.resolution,
                     "mflops": round(flops(info.arch, args.num_classes), 2),
                     "params_m": round(params(info.arch, args.num_classes) / 1e6, 3),
                     "paper_top1": info.paper_top1, "paper_latency_ms": info.paper_latency_ms,
                     "paper_device": info.paper_device, "arch": info.arch.to_dict()})
    if not rows:
        print(f"no model matches {args.pattern!r}; known: {', '.join(list_models())}",
              file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    print(f"{'name':<17}{'res':>5}{'MFLOPs':>9}{'params(M)':>11}{'paper top1':>12}"
          f"{'paper latency':>20}")
    for r in rows:
        lat = (f"{r['paper_latency_ms']} ms {r['paper_device']}" if r["paper_latency_ms"]
               else "-")
        top1 = "-" if r["paper_top1"] is None else f"{r['paper_top1']}%"
        print(f"{r['name']:<17}{r['resolution']:>5}{r['mflops']:>9.1f}{r['params_m']:>11.2f}"
              f"{top1:>12}{lat:>20}")
    return 0


def cmd_space(args: argparse.Namespace) -> int:
    lo, hi = flops(SPACE.min()), flops(SPACE.max())
    if args.json:
        out = {"size": SPACE.size(), "mflops_min": lo, "mflops_max": hi,
               "columns": list(SPACE.columns), "choices": [list(c) for c in SPACE.choices],
               "min": SPACE.min().to_dict(), "max": SPACE.max().to_dict()}
        print(json.dumps(out, indent=1))
    else:
        print(SPACE.describe())
        print(f"MFLOPs range [{lo:.2f}, {hi:.2f}]")
    return 0


def cmd_flops(args: argparse.Namespace) -> int:
    arch = _arch_arg(args.arch)
    out = {"mflops": flops(arch, args.num_classes), "params": params(arch, args.num_classes),
           "breakdown_mflops": flops_breakdown(arch, args.num_classes), "arch": arch.to_dict()}
    if args.json:
        print(json.dumps(out, indent=1))
    else:
        print(f"{arch.short()}\nMFLOPs {out['mflops']:.2f}   params {out['params'] / 1e6:.3f} M")
        for k, v in out["breakdown_mflops"].items():
            print(f"  {k:<11}{v:9.2f}")
    return 0


def cmd_sample(args: argparse.Namespace) -> int:
    space = SearchSpace(seed=args.seed)
    for _ in range(args.n):
        a = space.sample_at(*args.mflops) if args.mflops else space.sample()
        print(json.dumps({"mflops": round(flops(a), 3), "arch": a.to_dict()}))
    return 0


def cmd_devices(args: argparse.Namespace) -> int:
    from subprocess import SubprocessError

    from adbutils import AdbError

    from device_profiles import list_profiles
    from toolkit.devices.adb import client, list_attached
    from toolkit.devices.base import DeviceError

    profiles = list_profiles()
    attached, adb_error = [], None
    try:
        attached = list_attached(client(args.adb_port, start=not args.no_start_server))
    except (DeviceError, OSError, AdbError, SubprocessError) as e:  # no adb: not fatal here
        adb_error = f"adb server not reachable ({e}); phones cannot be listed"
    if args.json:
        print(json.dumps({
            "attached": [{"serial": d.serial, "state": d.state,
                          "profile": d.profile.name if d.profile else None,
                          "props": d.props} for d in attached],
            "adb_error": adb_error,
            "profiles": [p.to_dict() for p in profiles.values()],
        }, indent=1))
        return 0
    print("attached:")
    if adb_error:
        print(f"  ({adb_error})")
    elif not attached:
        print("  (no phone attached: plug one in with USB debugging on, or `adb connect IP:PORT`;"
              " `--device host` always works)")
    for d in attached:
        print(f"  {d.describe()}")
    _print_profiles(profiles)
    return 0


def _print_profiles(profiles: dict) -> None:
    print("profiles (any name listed works wherever a device is asked for):")
    for p in profiles.values():
        modes = ", ".join(f"{k}={m.mask}/{m.threads}t" for k, m in p.modes.items())
        print(f"  {p.name:<10} {p.display:<38} predictor: {_predictor_kind(p.name)}")
        print(f"  {'':<10} modes: {modes}")
        names = ", ".join(dict.fromkeys([*p.names, *p.aliases]))
        if names:
            print(f"  {'':<10} names: {names}")


def _predictor_kind(device: str) -> str:
    """'installed' (a campaign's, in the user's folder), 'shipped' or 'none'."""
    from device_profiles import PREDICTORS
    from toolkit.latency import predictor_path

    path = predictor_path(device)
    if path is None:
        return "none"
    return "shipped" if path.parent.resolve() == Path(PREDICTORS).resolve() else "installed"


def cmd_predict(args: argparse.Namespace) -> int:
    from toolkit.latency.predict import predict_table

    rows = predict_table(args.model, args.arch, args.archs, args.device)
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    devices = list(dict.fromkeys(r["device"] for r in rows))
    subnets = list(dict.fromkeys(r["subnet"] for r in rows))
    ms = {(r["subnet"], r["device"]): r["latency_ms"] for r in rows}
    mf = {r["subnet"]: r["mflops"] for r in rows}
    width = max([len(s) for s in subnets] + [6])
    print(f"{'subnet':<{width}} {'MFLOPs':>8}" + "".join(f" {d:>10}" for d in devices))
    for s in subnets:
        print(f"{s:<{width}} {mf[s]:>8.1f}" + "".join(f" {ms[(s, d)]:>7.2f} ms" for d in devices))
    return 0


def cmd_import_release(args: argparse.Namespace) -> int:
    from toolkit.release.checkpoint import import_release

    _, rep = import_release(args.checkpoint, args.out)
    if args.json:
        print(json.dumps(dict(rep), indent=1))
        return 0
    banks = ", ".join(f"{b['level']:g}: {b['entries']}" for b in rep["banks"]
                      if b["level"] is not None) or "none"
    print(f"{rep['source']} (epoch {rep['epoch']}, {rep['num_classes']} classes): "
          f"{rep['tensors']} tensors mapped and checked; weights for evaluation: {rep['weights']}")
    print(f"  memory banks (MFLOPs: subnets): {banks}"
          + (f"; {rep['bank_entries_skipped']} entries skipped ({rep['bank_skip_reasons'][0]})"
             if rep["bank_entries_skipped"] else ""))
    if rep["dropped_unused"]:
        print(f"  {rep['dropped_unused']} shortcut convs dropped (no subnet can use them)")
    print(f"evit supernet (layout release): {args.out}")
    return 0


def _release_archs(src: str, name: str | None) -> dict[str, ArchConfig]:
    """``--from-release``: the subnets of a release YAML (or its model ``name``), or one
    release arch list given as JSON text or a JSON file."""
    from toolkit.release.arch import from_release, release_named_models

    if src.endswith((".yaml", ".yml")):
        models = release_named_models(src)
        if name and name not in models:
            raise ArchError(f"{src} has no model {name!r}; it has {', '.join(models)}")
        return {name: models[name]} if name else models
    try:  # JSON text first: a long list is no file name (and may be too long for one)
        data = json.loads(src)
    except json.JSONDecodeError as e:
        try:
            data = json.loads(Path(src).read_text())
        except (OSError, json.JSONDecodeError):
            raise ArchError(f"--from-release: {src[:80]!r} is neither a YAML file nor a "
                            f"JSON list (as JSON: {e.msg})") from None
    return {name or "arch": from_release(data)}


def cmd_arch(args: argparse.Namespace) -> int:
    from toolkit.release.arch import release_violations, to_release

    if bool(args.arch) == bool(args.from_release):
        raise ArchError("give a subnet (a named model or arch JSON) with --to-release, or "
                        "--from-release LIST_OR_YAML")
    if args.arch:
        arch = _arch_arg(args.arch)
        print(json.dumps(to_release(arch) if args.to_release else arch.to_dict()))
        for v in release_violations(arch):
            print(f"note: the release's sampler would not draw this subnet: {v}",
                  file=sys.stderr)
        return 0
    models = _release_archs(args.from_release, args.name)
    if args.out:
        if len(models) != 1:
            raise ArchError(f"--out writes one subnet; {args.from_release} has {len(models)}: "
                            f"pick one with --name ({', '.join(models)})")
        next(iter(models.values())).save(args.out)
        print(f"{args.out}")
        return 0
    for name, arch in models.items():
        print(json.dumps({"name": name, "mflops": round(flops(arch), 2),
                          "arch": arch.to_dict()}) if len(models) > 1 or args.name
              else arch.to_json())
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    from converters.metadata import read_metadata

    meta = read_metadata(args.file)
    if meta is None:
        print(f"evit inspect: {args.file} holds no evit metadata (not written by evit-export, "
              "or by an evit older than the embedded metadata; its sidecar "
              f"{args.file}.json may have it)", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(meta, indent=1))
        return 0
    inp, par = meta.get("input", {}), meta.get("parity", {})
    arch = meta.get("arch")
    src = meta.get("source", {})
    rows = [
        ("format", f"{meta.get('format')} {meta.get('precision')}"),
        ("arch", json.dumps(arch) if arch is not None else "-"),
        ("MFLOPs / params", f"{meta.get('mflops')} / {meta.get('params')}"),
        ("input", f"{inp.get('shape')} {inp.get('layout')} {inp.get('dtype')}"
                  + (f", {inp['normalization_in_graph']} in the graph"
                     if inp.get("normalization_in_graph") else "")),
        ("normalization", f"mean {inp.get('mean')} std {inp.get('std')} "
                          f"({inp.get('scale', '-')})"),
        ("output", f"{meta.get('output', {}).get('shape')} "
                   f"{meta.get('output', {}).get('meaning', '')}"),
        ("labels", ", ".join(map(str, meta["labels"][:10])) + (" ..." if len(meta["labels"]) > 10
                                                               else "")
         if meta.get("labels") else "-"),
        ("parity", f"max |error| {par.get('max_abs_error')}, top-1 agreement "
                   f"{par.get('top1_agreement')} on {par.get('samples')} inputs "
                   f"({par.get('runtime')})" if par else "-"),
        ("source", ", ".join(f"{k} {v}" for k, v in src.items() if v is not None) or "-"),
        ("tools", ", ".join(f"{k} {v}" for k, v in meta.get("tools", {}).items())),
    ]
    for k, v in rows:
        print(f"{k:<16}{v}")
    return 0


def _add(sub, name: str, func, help: str) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help=help, formatter_class=HelpFormatter)
    p.set_defaults(func=func)
    return p


def _json_flag(p: argparse.ArgumentParser, help: str = "machine-readable output") -> None:
    p.add_argument("--json", action="store_true", help=help)


def _zoo_commands(sub) -> None:
    m = _add(sub, "models", cmd_models, "list the named models")
    m.add_argument("pattern", nargs="?", default="*", help="shell-style name filter")
    m.add_argument("--num-classes", type=int, default=1000, help="classifier size")
    _json_flag(m)
    _json_flag(_add(sub, "space", cmd_space, "describe the search space"))
    f = _add(sub, "flops", cmd_flops, "MFLOPs and params of a subnet")
    f.add_argument("arch", help="a named model or an arch JSON file")
    f.add_argument("--num-classes", type=int, default=1000, help="classifier size")
    _json_flag(f)
    r = _add(sub, "sample", cmd_sample, "random subnets as JSON lines")
    r.add_argument("-n", type=int, default=1, help="how many")
    r.add_argument("--mflops", type=float, nargs=2, metavar=("LO", "HI"),
                   help="only subnets with MFLOPs in [LO, HI]")
    r.add_argument("--seed", type=int, default=0, help="sampling seed")


def _device_commands(sub) -> None:
    d = _add(sub, "devices", cmd_devices, "attached phones and device profiles")
    _json_flag(d)
    d.add_argument("--adb-port", type=int, default=None,
                   help="adb server port (default: $ANDROID_ADB_SERVER_PORT or 5037)")
    d.add_argument("--no-start-server", action="store_true",
                   help="do not start an adb server if none is running")
    pr = _add(sub, "predict", cmd_predict,
              "predicted latency of subnets on devices with a latency predictor")
    what = pr.add_mutually_exclusive_group(required=True)
    what.add_argument("--model", help="a named model (e.g. elasticvit_s1)")
    what.add_argument("--arch", help="an arch JSON file")
    what.add_argument("--archs", help="a file of many subnets, one JSON per line (arch objects, "
                                      "or objects with an 'arch' key, e.g. `evit sample`'s)")
    pr.add_argument("--device", default="all",
                    help="a device by any of its names (e.g. 'Google Pixel 4'), or all: every "
                         "device with a shipped or installed predictor")
    _json_flag(pr, "rows as JSON")


def _release_commands(sub) -> None:
    i = _add(sub, "import-release", cmd_import_release,
             "read the ElasticViT release's supernet checkpoint into an evit supernet "
             "checkpoint (layout release)")
    i.add_argument("checkpoint", help="the release's checkpoint file (e.g. the authors' "
                                      "'Supernet Weight' download)")
    i.add_argument("--out", required=True, help="evit supernet checkpoint to write")
    _json_flag(i, "print the import report as JSON")
    a = _add(sub, "arch", cmd_arch,
             "convert subnets between evit's JSON and the release's arch lists")
    a.add_argument("arch", nargs="?", help="a named model or an arch JSON file")
    a.add_argument("--to-release", action="store_true",
                   help="print ARCH as the release's 10-field list")
    a.add_argument("--from-release", metavar="LIST_OR_YAML",
                   help="a release arch list (JSON text or file) or a release YAML with "
                        "named models (e.g. final_3min_space_eval.yaml)")
    a.add_argument("--name", help="with a YAML: the model to take (e.g. elastic_M)")
    a.add_argument("--out", help="write the converted subnet to this arch JSON file")
    n = _add(sub, "inspect", cmd_inspect,
             "print the metadata evit-export embedded in a .tflite / .onnx")
    n.add_argument("file", help="a .tflite or .onnx file")
    _json_flag(n, "the metadata as JSON")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="evit", description=__doc__, formatter_class=HelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    for add in (_zoo_commands, _device_commands, _release_commands):
        add(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ArchError, KeyError, CheckpointError, ValueError, OSError) as e:
        return fail(f"evit {args.command}", e)


if __name__ == "__main__":
    sys.exit(main())
