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

from toolkit.console import HelpFormatter, fail
from toolkit.export_job import (
    BN_BATCH_SIZE,
    FORMATS,
    INPUT_LAYOUTS,
    INPUT_TYPES,
    PRECISIONS,
    ExportRequest,
    run_export,
)
from toolkit.zoo import list_models


def build_parser() -> argparse.ArgumentParser:
    d = ExportRequest()
    p = argparse.ArgumentParser(prog="evit-export", description=__doc__,
                                formatter_class=HelpFormatter)
    p.add_argument("--model", help=f"a named model ({', '.join(list_models())})")
    p.add_argument("--arch", help="an arch JSON file (e.g. from evit-search)")
    p.add_argument("--supernet", help="supernet checkpoint to take the weights from")
    p.add_argument("--data", help="data for BN recalibration/calibration/parity (default: the "
                   "checkpoint's training data)")
    p.add_argument("--format", choices=FORMATS, default=d.format, help="artifact format")
    p.add_argument("--precision", choices=PRECISIONS, default=d.precision,
                   help="fp32 | fp16 | int8-dynamic | int8 (full integer, calibrated)")
    p.add_argument("--input-layout", choices=INPUT_LAYOUTS, default=d.input_layout,
                   help="the file's input layout (default: nhwc for tflite, as Android "
                   "camera pipelines hand images over; nchw for onnx)")
    p.add_argument("--input-type", choices=INPUT_TYPES, default=d.input_type,
                   help="float32: normalized input; uint8: RGB bytes 0-255, the "
                   "normalization folded into the graph")
    p.add_argument("--out", help="artifact path, or a folder for the default file name "
                   "(default: exports/<name>_<precision>.<format>)")
    p.add_argument("--num-classes", type=int, default=d.num_classes,
                   help="classes when no --supernet is given")
    p.add_argument("--bn-batches", type=int, default=d.bn_batches,
                   help=f"batches of {BN_BATCH_SIZE} for BN recalibration")
    p.add_argument("--parity-samples", type=int, default=d.parity_samples,
                   help="inputs compared against PyTorch")
    p.add_argument("--seed", type=int, default=d.seed, help="seed of fresh weights")
    p.add_argument("--json", action="store_true", help="print the sidecar as JSON")
    return p


def request_from_args(args: argparse.Namespace) -> ExportRequest:
    return ExportRequest(**{k: v for k, v in vars(args).items() if k != "json"})


def _print(meta: dict) -> None:
    p = meta["parity"]
    print(f"{meta['artifact']}: {meta['size_bytes'] / 1e6:.2f} MB "
          f"({meta['size_over_fp32_weights']:.2f}x fp32 weights), {meta['mflops']:.1f} "
          f"MFLOPs, {meta['precision']}; parity vs PyTorch: max abs err "
          f"{p['max_abs_error']:.2e}, top-1 agreement {p['top1_agreement'] * 100:.0f}% "
          f"({p['samples']} inputs)")
    print(f"metadata: {meta['sidecar']}")


def main(argv: list[str] | None = None) -> int:
    from converters import ConversionError
    from toolkit.checkpoint import CheckpointError
    from toolkit.data import DataError
    from toolkit.space import ArchError

    args = build_parser().parse_args(argv)
    try:
        meta = run_export(request_from_args(args))
    except (ArchError, KeyError, CheckpointError, DataError, ValueError, OSError,
            ConversionError) as e:  # a conversion failure names the op/layer
        return fail("evit-export", e)
    if args.json:
        print(json.dumps(meta, indent=1))
    else:
        _print(meta)
    return 0


if __name__ == "__main__":
    sys.exit(main())
