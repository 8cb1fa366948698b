"""Issue 23 benchmark: the exported graph before and after the lean layout, vs MobileNetV3-L.

    python benchmarks/export_graph.py [--before 7d2b3da] [--runs 50] [--rounds 7]

"Before" is the code of a git revision (default: the last commit before the lean graph),
unpacked with ``git archive`` into a temporary folder; "after" is this checkout. Each side
converts S1, T0 and L1 (random weights, seed 0, BN folded, NHWC float32 input, fp32) in its
own subprocess with the same snippet; MobileNetV3-Large (benchmarks/peers.py) is converted
the same way. All files are then timed in this process, interleaved: ai-edge-litert, XNNPACK,
1 thread, median of ``runs`` invocations, median of ``rounds`` rounds.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import write_section  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
MODELS = ("elasticvit_s1", "elasticvit_t0", "elasticvit_l1")
SNIPPET = """
import json, sys, time, torch
from converters import convert_tflite
from converters.app_input import AppInput
from toolkit.export import optimize_for_export
from toolkit.supernet import StaticViT
from toolkit.zoo import get_arch
out = {}
for name in sys.argv[2:]:
    torch.manual_seed(0)
    arch = get_arch(name)
    app = AppInput(optimize_for_export(StaticViT(arch).eval()), "nhwc", "float32",
                   [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]).eval()
    t = time.perf_counter()
    convert_tflite(app, (app.example(arch.resolution),), f"{sys.argv[1]}/{name}.tflite")
    out[name] = time.perf_counter() - t
print(json.dumps(out))
"""


def _convert(code_root: Path, out: Path) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(code_root)}
    res = subprocess.run([sys.executable, "-c", SNIPPET, str(out), *MODELS], cwd=code_root,
                         env=env, capture_output=True, text=True, check=False)
    if res.returncode:
        sys.exit(f"conversion in {code_root} failed:\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def _ops(path: Path) -> collections.Counter:
    from converters.report import graph_report

    return collections.Counter(graph_report(path).ops)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--before", default="7d2b3da", help="git revision of the 'before' code")
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--rounds", type=int, default=7)
    args = ap.parse_args()
    import torch
    from peers import PEERS

    from converters import convert_tflite
    from converters.runtime import TFLiteRunner

    tmp = Path(tempfile.mkdtemp(prefix="evit_graph_"))
    old_code = tmp / "before_code"
    old_code.mkdir()
    archive = subprocess.run(["git", "archive", args.before], cwd=ROOT, capture_output=True,
                             check=True).stdout
    (tmp / "before.tar").write_bytes(archive)
    with tarfile.open(tmp / "before.tar") as tf:
        tf.extractall(old_code, filter="data")
    (tmp / "before").mkdir()
    (tmp / "after").mkdir()
    conv = {"before": _convert(old_code, tmp / "before"), "after": _convert(ROOT, tmp / "after")}
    torch.manual_seed(0)
    mnv3 = PEERS["mobilenetv3_large_100"]().eval()
    x = torch.zeros(1, 3, 224, 224).permute(0, 2, 3, 1)

    class NHWC(torch.nn.Module):  # the same NHWC input as the ElasticViT files
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, x):
            return self.m(x.permute(0, 3, 1, 2))

    convert_tflite(NHWC(mnv3).eval(), (x,), tmp / "mnv3.tflite")
    files = {("mobilenetv3_large_100", "-"): tmp / "mnv3.tflite"}
    for side in ("before", "after"):
        for name in MODELS:
            files[(name, side)] = tmp / side / f"{name}.tflite"
    runners = {k: TFLiteRunner(p, threads=1) for k, p in files.items()}
    med = collections.defaultdict(list)
    for _ in range(args.rounds):
        for k, run in runners.items():
            med[k].append(statistics.median(run.time(
                np.zeros(run.input_shape, np.float32), args.runs, 10)))
    ms = {k: statistics.median(v) for k, v in med.items()}
    base = ms[("mobilenetv3_large_100", "-")]
    lines = [f"Before = `git archive {args.before}`, after = this checkout; same converter "
             "(litert-torch), same snippet, random weights, NHWC float32 input, fp32. "
             f"ai-edge-litert, XNNPACK, 1 thread, median of {args.runs} runs, median of "
             f"{args.rounds} interleaved rounds.", "",
             "| model | graph | ops | TRANSPOSE | RESHAPE | LayerNorm ops (MEAN+SQDIFF+RSQRT"
             "+SUB) | ms | vs MobileNetV3-L | convert s |", "|---|---|---|---|---|---|---|---|---|"]
    for (name, side), path in files.items():
        ops = _ops(path)
        ln = sum(ops.get(k, 0) for k in ("MEAN", "SQUARED_DIFFERENCE", "RSQRT", "SUB"))
        c = conv.get(side, {}).get(name)
        lines.append(f"| {name} | {side} | {sum(ops.values())} | {ops.get('TRANSPOSE', 0)} | "
                     f"{ops.get('RESHAPE', 0)} | {ln} | {ms[(name, side)]:.2f} | "
                     f"{ms[(name, side)] / base:.2f} | {'–' if c is None else f'{c:.1f}'} |")
    r0, r1 = (ms[("elasticvit_s1", s)] / base for s in ("before", "after"))
    lines += ["", f"S1 / MobileNetV3-L: before **{r0:.2f}**, after **{r1:.2f}** (target ≤ 1.0: "
              f"{'met' if r1 <= 1.0 else 'not met'}). MEAN also counts the SE blocks' pooling."]
    write_section("export_graph", "Export: lean graph before/after, vs MobileNetV3-L (issue 23)",
                  "\n".join(lines))


if __name__ == "__main__":
    main()
