"""``evit-export``: a subnet as a deployable, parity-checked .tflite or .onnx.

    evit-export --model elasticvit_s1                         # named model, fresh weights
    evit-export --arch subnet.json --supernet runs/train/supernet.pt --format tflite
    evit-export --model elasticvit_t0 --supernet ckpt.pt --precision int8 --out t0.tflite

With --supernet, the subnet's weights are sliced from the checkpoint (EMA weights) and its BN
statistics recalibrated on the checkpoint's training data (or --data). The input is NHWC float32
for .tflite (--input-layout nchw for the old layout; --input-type uint8 takes RGB bytes, the
normalization in the graph). Writes the artifact, with its metadata embedded (`evit inspect
FILE` prints it), and ARTIFACT.json (arch, MFLOPs, params, precision, input shape and
normalization, labels, parity, graph report, tool versions, checkpoint hash, file size and
hash). Default output: exports/<name>_<precision>.<fmt>.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from toolkit.checkpoint import CheckpointError, load_checkpoint, supernet_from_checkpoint
from toolkit.data.datasets import DataError, build_datasets, calibration_images
from toolkit.space import ArchConfig, ArchError
from toolkit.zoo import get_arch, list_models


def _norm_info(data_name: str, image_size: int, resolution: int) -> dict:
    if data_name == "digits":
        return {"mean": [0.5] * 3, "std": [0.5] * 3, "scale": "pixel/16 for sklearn digits",
                "preprocess": f"8x8 digit → 32x32 bilinear, gray→3 channels, bicubic to "
                              f"{resolution}x{resolution}"}
    return {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225], "scale": "pixel/255",
            "preprocess": f"resize short side to {round(image_size / 0.875)} (bicubic), centre "
                          f"crop {image_size}, bicubic to {resolution}x{resolution}"}


def run(args: argparse.Namespace) -> dict:
    from toolkit.evaluate import recalibrate_bn
    from toolkit.export import export_subnet
    from toolkit.fileio import sha256_file
    from toolkit.supernet import StaticViT

    if bool(args.model) == bool(args.arch):
        raise ArchError("give exactly one of --model NAME or --arch subnet.json")
    arch = get_arch(args.model) if args.model else ArchConfig.load(args.arch)
    name = args.model or Path(args.arch).stem
    out = output_path(args.out, f"{name}_{args.precision}.{args.format}", args.format)
    r = arch.resolution
    source: dict = {"model": args.model, "arch_file": args.arch}
    calib = parity = labels = None
    norm = {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225], "scale": "pixel/255"}
    if args.supernet:
        ck = load_checkpoint(args.supernet)
        data_dir = args.data if args.data is not None else ck.get("config", {}).get("data")
        if data_dir is None and "config" not in ck and int(ck.get("num_classes", 10)) != 10:
            raise DataError(f"{args.supernet} records no training data and has "
                            f"{ck['num_classes']} classes (the default data, the embedded "
                            "digits, has 10); pass --data with its data set for BN "
                            "recalibration (e.g. --data /data/imagenet)")
        image_size = ck.get("config", {}).get("image_size", 224)
        data = build_datasets(data_dir, image_size)
        supernet = supernet_from_checkpoint(ck, args.supernet)  # read once, not twice
        if data.num_classes != supernet.num_classes:
            raise DataError(f"the calibration data has {data.num_classes} classes, the supernet "
                            f"{supernet.num_classes}")
        g = torch.Generator().manual_seed(0)
        idx = torch.randperm(len(data.train), generator=g)[:args.bn_batches * 32]
        batches = [torch.stack([data.train[int(i)][0] for i in idx[k:k + 32]])
                   for k in range(0, len(idx), 32)]
        resize = lambda x: torch.nn.functional.interpolate(  # noqa: E731
            x, size=(r, r), mode="bicubic", align_corners=False)
        recalibrate_bn(supernet, arch, batches)
        net = supernet.extract(arch).eval()
        vals = torch.stack([data.val[i][0] for i in range(min(args.parity_samples,
                                                               len(data.val)))])
        parity = resize(vals)
        if args.precision == "int8":  # 64 un-augmented training images: see converters.quantize
            calib = [resize(calibration_images(data_dir, 64, image_size))]
        norm = _norm_info(data.name, image_size, r)
        classes = getattr(data.train, "classes", None)
        labels = ([str(c) for c in classes] if classes is not None
                  else [str(i) for i in range(10)] if data.name == "digits" else None)
        source.update({"supernet": str(args.supernet), "supernet_sha256":
                       sha256_file(args.supernet), "data": data_dir,
                       "bn_recalibration_images": len(idx),
                       "calibration_data": data.name, "weights": "supernet EMA"})
    else:
        torch.manual_seed(args.seed)
        net = StaticViT(arch, args.num_classes).eval()
        source["weights"] = "random (no --supernet given): for latency and size work only"
        if args.precision == "int8":
            calib = [torch.randn(16, 3, r, r)]
            source["calibration_data"] = "random normal (no --supernet/--data)"
    if args.parity_samples and parity is None:
        parity = torch.randn(args.parity_samples, 3, r, r,
                             generator=torch.Generator().manual_seed(1))
    res = export_subnet(net, out, args.format, args.precision, parity, calib, norm, source,
                        input_layout=args.input_layout, input_type=args.input_type,
                        labels=labels)
    return res.meta | {"artifact": str(res.artifact), "sidecar": str(res.sidecar)}


def output_path(out: str | None, default_name: str, fmt: str) -> Path:
    """Where the artifact goes, checked before any work: a folder (existing, or given with a
    trailing /) gets the default file name; a file must have the format's suffix and a
    writable folder."""
    import os

    if not out:
        return Path("exports") / default_name
    path = Path(out)
    if path.is_dir() or out.endswith(("/", os.sep)):
        path = path / default_name
    if path.suffix != f".{fmt}":
        raise ValueError(f"--out {out}: a {fmt} artifact needs the .{fmt} suffix (or give a "
                         "folder to get the default name)")
    if path.exists() and not path.is_file():
        raise ValueError(f"--out {path} exists and is not a file")
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise ValueError(f"--out {path}: cannot write into {parent}")
    return path


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="evit-export", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", help=f"a named model ({', '.join(list_models())})")
    p.add_argument("--arch", help="an arch JSON file (e.g. from evit-search)")
    p.add_argument("--supernet", help="supernet checkpoint to take the weights from")
    p.add_argument("--data", help="data for BN recalibration/calibration/parity (default: the "
                   "checkpoint's training data)")
    p.add_argument("--format", choices=("tflite", "onnx"), default="tflite",
                   help="artifact format (default: tflite)")
    p.add_argument("--precision", choices=("fp32", "fp16", "int8-dynamic", "int8"),
                   default="fp32", help="fp32 | fp16 | int8-dynamic | int8 (full integer, "
                   "calibrated) (default: fp32)")
    p.add_argument("--input-layout", choices=("nhwc", "nchw"), default=None,
                   help="the file's input layout (default: nhwc for tflite, as Android "
                   "camera pipelines hand images over; nchw for onnx)")
    p.add_argument("--input-type", choices=("float32", "uint8"), default="float32",
                   help="float32: normalized input; uint8: RGB bytes 0-255, the "
                   "normalization folded into the graph (default: float32)")
    p.add_argument("--out", help="artifact path, or a folder for the default file name "
                   "(default: exports/<name>_<precision>.<format>)")
    p.add_argument("--num-classes", type=int, default=1000,
                   help="classes when no --supernet is given (default: 1000)")
    p.add_argument("--bn-batches", type=int, default=8,
                   help="batches of 32 for BN recalibration (default: 8)")
    p.add_argument("--parity-samples", type=int, default=16,
                   help="inputs compared against PyTorch (default: 16)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print the sidecar as JSON")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        meta = run(args)
    except (ArchError, KeyError, CheckpointError, DataError, ValueError, OSError) as e:
        msg = e.args[0] if isinstance(e, KeyError) and e.args else e
        print(f"evit-export: error: {msg}", file=sys.stderr)
        return 2
    except Exception as e:  # conversion failures name the op/layer
        from converters import ConversionError

        if isinstance(e, ConversionError):
            print(f"evit-export: error: {e}", file=sys.stderr)
            return 2
        raise
    if args.json:
        print(json.dumps(meta, indent=1))
    else:
        p = meta["parity"]
        print(f"{meta['artifact']}: {meta['size_bytes'] / 1e6:.2f} MB "
              f"({meta['size_over_fp32_weights']:.2f}x fp32 weights), {meta['mflops']:.1f} "
              f"MFLOPs, {meta['precision']}; parity vs PyTorch: max abs err "
              f"{p['max_abs_error']:.2e}, top-1 agreement {p['top1_agreement'] * 100:.0f}% "
              f"({p['samples']} inputs)")
        print(f"metadata: {meta['sidecar']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
