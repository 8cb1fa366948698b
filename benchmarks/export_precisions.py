"""Issue 23 benchmark: every .tflite precision of S1, T0 and L1 from a trained supernet.

    python benchmarks/export_precisions.py [--supernet runs/train_default/supernet.pt]
                                           [--runs 30] [--rounds 5]

Each named subnet is sliced from the (digits-trained) supernet, its BN statistics recalibrated
on 256 training images, and exported with ``export_subnet`` in fp32, fp16, int8-dynamic and
int8 (calibrated on 64 un-augmented training images): NHWC float32 input, as ``evit-export``
writes it. For each file:
top-1 agreement with PyTorch and max |logit error| on the whole validation split, top-1
accuracy on it (the float model's beside it), whether XNNPACK takes the whole graph, the
conversion and quantization seconds, and the host latency (ai-edge-litert, XNNPACK, 1 thread:
median of ``runs`` invocations, median over ``rounds`` rounds interleaved over all twelve
files, so drift hits every file alike). For the int8 flips: the PyTorch margin (top-1 minus
top-2 logit) of each flipped image.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import write_section  # noqa: E402

from converters.app_input import AppInput  # noqa: E402
from converters.runtime import TFLiteRunner  # noqa: E402
from toolkit.checkpoint import load_checkpoint, supernet_from_checkpoint  # noqa: E402
from toolkit.data.datasets import build_datasets, calibration_images  # noqa: E402
from toolkit.evaluate import recalibrate_bn  # noqa: E402
from toolkit.export import export_subnet, optimize_for_export  # noqa: E402
from toolkit.zoo import get_arch  # noqa: E402

MODELS = ("elasticvit_s1", "elasticvit_t0", "elasticvit_l1")
PRECISIONS = ("fp32", "fp16", "int8-dynamic", "int8")
NORM = {"mean": [0.5] * 3, "std": [0.5] * 3, "scale": "pixel/16 for sklearn digits"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--supernet", default="runs/train_default/supernet.pt")
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    if not Path(args.supernet).is_file():
        sys.exit(f"{args.supernet} not found: train the default supernet first "
                 "(python benchmarks/train_default.py, or evit-train)")
    ck = load_checkpoint(args.supernet)
    cfg = ck.get("config", {})
    data = build_datasets(cfg.get("data"), cfg.get("image_size", 224))
    supernet = supernet_from_checkpoint(ck, args.supernet)
    g = torch.Generator().manual_seed(0)
    idx = torch.randperm(len(data.train), generator=g)[:256]
    batches = [torch.stack([data.train[int(i)][0] for i in idx[k:k + 32]])
               for k in range(0, 256, 32)]
    vals = torch.stack([data.val[i][0] for i in range(len(data.val))])
    calib = calibration_images(cfg.get("data"), 64, cfg.get("image_size", 224))
    labels = np.array([int(data.val[i][1]) for i in range(len(data.val))])
    tmp = Path(tempfile.mkdtemp(prefix="evit_precisions_"))
    rows: dict[tuple[str, str], dict] = {}
    for name in MODELS:
        arch = get_arch(name)
        r = arch.resolution

        def resize(x, r=r):
            return torch.nn.functional.interpolate(x, size=(r, r), mode="bicubic",
                                                   align_corners=False)

        recalibrate_bn(supernet, arch, batches)
        net = supernet.extract(arch).eval()
        with torch.no_grad():
            ref = net(resize(vals)).numpy()
        app_vals = AppInput(net, "nhwc", "float32", NORM["mean"], NORM["std"]).to_app(
            resize(vals)).numpy()
        margin = np.sort(ref, 1)[:, -1] - np.sort(ref, 1)[:, -2]
        app = AppInput(optimize_for_export(net), "nhwc", "float32", NORM["mean"], NORM["std"])
        t = time.perf_counter()  # the torch.export share of a conversion
        torch.export.export(app.eval(), (app.example(r),))
        export_s = time.perf_counter() - t
        for prec in PRECISIONS:
            res = export_subnet(net, tmp / f"{name}_{prec}.tflite", "tflite", prec,
                                parity_inputs=resize(vals), calibration=[resize(calib)],
                                normalization=NORM)
            runner = TFLiteRunner(res.artifact)
            out = np.concatenate([runner(app_vals[i:i + 1]) for i in range(len(app_vals))])
            flips = np.flatnonzero(out.argmax(1) != ref.argmax(1))
            rows[(name, prec)] = {
                "path": res.artifact, "agree": res.meta["parity"]["top1_agreement"],
                "max_err": res.meta["parity"]["max_abs_error"],
                "acc": float(np.mean(out.argmax(1) == labels)),
                "acc_torch": float(np.mean(ref.argmax(1) == labels)),
                "flip_margins": [round(float(margin[i]), 2) for i in flips],
                "xnnpack": res.meta["graph"]["fully_xnnpack"],
                "ops": sum(res.meta["graph"]["ops"].values()),
                "convert_s": res.meta["timing_s"]["convert"], "export_s": export_s,
                "quantize_s": res.meta["timing_s"].get("quantize"),
                "size_mb": res.meta["size_bytes"] / 1e6, "mflops": res.meta["mflops"],
                "medians": []}
            print(f"{name} {prec}: agreement {rows[(name, prec)]['agree']:.4f}, flips at "
                  f"margins {rows[(name, prec)]['flip_margins']}, convert "
                  f"{rows[(name, prec)]['convert_s']} s, quantize "
                  f"{rows[(name, prec)]['quantize_s']} s", flush=True)
    runners = {k: TFLiteRunner(v["path"], threads=1) for k, v in rows.items()}
    inputs = {k: np.zeros(run.input_shape, np.float32) for k, run in runners.items()}
    for _ in range(args.rounds):
        for k, run in runners.items():
            rows[k]["medians"].append(statistics.median(run.time(inputs[k], args.runs, 5)))
    for v in rows.values():
        v["ms"] = statistics.median(v["medians"])
    n_val = len(vals)
    lines = [f"Supernet `{args.supernet}` (digits), subnets sliced and BN-recalibrated on 256 "
             f"training images; NHWC float32 input; agreement, error and accuracy on all "
             f"{n_val} validation images; int8 calibrated on 64 un-augmented training "
             f"images. Latency: ai-edge-litert, XNNPACK, 1 thread, median of {args.runs} runs, "
             "median of "
             f"{args.rounds} interleaved rounds. `convert` = litert-torch fp32 conversion; "
             "`quantize` = ai-edge-quantizer on that file (the other precisions reuse it).", "",
             "| model | precision | ms | vs fp32 | top-1 agreement | max abs err | top-1 "
             "(PyTorch) | fully XNNPACK | ops | MB | convert s | quantize s | flips: PyTorch "
             "margins |", "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    met = []
    for (name, prec), v in rows.items():
        base = rows[(name, "fp32")]["ms"]
        q = "–" if v["quantize_s"] is None else f"{v['quantize_s']:.1f}"
        lines.append(f"| {name} ({v['mflops']:.0f} MFLOPs) | {prec} | {v['ms']:.2f} | "
                     f"{v['ms'] / base:.2f} | {v['agree'] * 100:.1f}% | {v['max_err']:.2g} | "
                     f"{v['acc'] * 100:.1f}% ({v['acc_torch'] * 100:.1f}%) | {v['xnnpack']} | "
                     f"{v['ops']} | {v['size_mb']:.1f} | {v['convert_s']:.1f} | {q} | "
                     f"{v['flip_margins'] or '–'} |")
        if prec == "int8":
            met.append((name, v["ms"] / base <= 0.6, v["agree"] >= 0.99, v["xnnpack"]))
    int8 = [v for (_, p), v in rows.items() if p == "int8"]
    conv = {n: rows[(n, "fp32")] for n in MODELS}
    lines += ["", f"int8: every flip is an image PyTorch itself nearly ties (largest margin "
              f"{max(m for v in int8 for m in v['flip_margins'] or [0]):.2f} logits); top-1 "
              f"accuracy within {max(abs(v['acc'] - v['acc_torch']) for v in int8) * 100:.1f} "
              "points of PyTorch's. Conversion (fp32): " + ", ".join(
                  f"{n} {v['convert_s']:.1f} s (torch.export {v['export_s']:.1f} s of it)"
                  for n, v in conv.items()) + "; the rest is litert-torch's lowering."]
    lines += ["", "int8 targets (≤ 0.6× fp32, ≥ 99% agreement, fully delegated): " + "; ".join(
        f"{n}: latency {'met' if a else 'NOT met'}, agreement {'met' if b else 'NOT met'}, "
        f"delegation {'met' if c else 'NOT met'}" for n, a, b, c in met) + "."]
    write_section("export_precisions", "Export: precisions of S1/T0/L1 on this CPU (issue 23)",
                  "\n".join(lines))


if __name__ == "__main__":
    main()
