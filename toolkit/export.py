"""Export-time optimization of static ElasticViT subnets, and the ``evit-export`` pipeline.

``optimize_for_export`` returns a copy of a :class:`StaticViT` with every BatchNorm folded
into the preceding conv/linear and the relative position bias precomputed for the subnet's
token grid (a constant, so the graph has no gather). Each LayerNorm's affine and the attention
scale move into the following linear. The result computes the same function (eval mode) and
converts to a graph XNNPACK runs end to end.
"""

from __future__ import annotations

import contextlib
import copy
import platform
import shutil
import tempfile
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from toolkit.fileio import atomic_write_json, sha256_file, sweep_temps
from toolkit.flops import flops
from toolkit.space import HEAD_DIM, ArchConfig
from toolkit.supernet.layers import JointLayerNorm
from toolkit.supernet.static import FFN, Attention, MBConv, StaticViT

__all__ = ["optimize_for_export", "fold_bn", "fold_layer_norm", "NormalizeOnly", "ExportResult",
           "export_subnet", "quantization_recipe", "tool_versions"]


@torch.no_grad()
def fold_bn(layer: nn.Module, bn: nn.modules.batchnorm._BatchNorm) -> nn.Module:
    """A copy of conv/linear ``layer`` with ``bn`` (eval statistics) folded in, with bias."""
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    shift = bn.bias - bn.running_mean * scale
    new = copy.deepcopy(layer)
    shape = (-1,) + (1,) * (layer.weight.ndim - 1)
    new.weight.copy_(layer.weight * scale.view(shape))
    old_bias = layer.bias if layer.bias is not None else torch.zeros_like(shift)
    new.bias = nn.Parameter(old_bias * scale + shift)
    return new


class NormalizeOnly(nn.Module):
    """LayerNorm's normalization without its affine (folded into the next linear), written as
    the seven ops a converter keeps (mean, sub, mul, mean, add, rsqrt, mul) instead of the
    twelve nn.LayerNorm lowers to. ``joint``: over tokens x channels (the release's LN)."""

    def __init__(self, eps: float, joint: bool):
        super().__init__()
        self.eps, self.joint = eps, joint

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dims = tuple(range(1, x.ndim)) if self.joint else (-1,)
        d = x - x.mean(dims, keepdim=True)
        return d * torch.rsqrt((d * d).mean(dims, keepdim=True) + self.eps)


@torch.no_grad()
def fold_layer_norm(norm: nn.LayerNorm, linear: nn.Linear) -> tuple[nn.Module, nn.Linear]:
    """(normalization, linear) computing ``linear(norm(x))``: the per-channel affine
    γ·x̂ + β moves into the linear (W·diag(γ), b + W·β). Also keeps int8 ranges tight: x̂
    carries no per-channel γ outliers."""
    c = linear.in_features
    gamma, beta = norm.weight[:c], norm.bias[:c]
    new = copy.deepcopy(linear)
    new.weight.copy_(linear.weight * gamma[None, :])
    old_bias = linear.bias if linear.bias is not None else linear.weight.new_zeros(
        linear.out_features)
    new.bias = nn.Parameter(old_bias + linear.weight @ beta)
    return NormalizeOnly(norm.eps, joint=isinstance(norm, JointLayerNorm)), new


@torch.no_grad()
def optimize_for_export(net: StaticViT) -> StaticViT:
    net = copy.deepcopy(net).eval()
    net.first_conv = fold_bn(net.first_conv, net.first_bn)
    net.first_bn = nn.Identity()
    for m in list(net.modules()):
        if isinstance(m, MBConv):
            for conv, bn in (("pw", "pw_bn"), ("dw", "dw_bn"), ("pwl", "pwl_bn")):
                if hasattr(m, conv):
                    setattr(m, conv, fold_bn(getattr(m, conv), getattr(m, bn)))
                    setattr(m, bn, nn.Identity())
        elif isinstance(m, Attention):
            m.freeze_position_bias()
            m.norm, m.qkv = fold_layer_norm(m.norm, m.qkv)
            q_rows = m.heads * HEAD_DIM  # the attention scale, folded into q's weights/bias
            m.qkv.weight[:q_rows] *= m.q_scale
            m.qkv.bias[:q_rows] *= m.q_scale
            m.q_scale = 1.0
        elif isinstance(m, FFN):
            m.norm, m.fc1 = fold_layer_norm(m.norm, m.fc1)
    net.head.pre0 = fold_bn(net.head.pre0, net.head.bn)
    net.head.bn = nn.Identity()
    return net


def quantization_recipe(precision: str, calibration_images: int) -> dict[str, Any]:
    """What a quantized .tflite's recipe kept float and why (see converters.quantize)."""
    from converters.quantize import DYNAMIC_FLOAT_OPS, INT8_FLOAT_OPS

    if precision == "fp16":
        return {"weights": "float16", "compute": "float32 on CPU (fp16 on the GPU delegate)"}
    if precision == "int8-dynamic":
        return {"weights": "int8 per channel", "activations": "quantized per inference",
                "kept_float": DYNAMIC_FLOAT_OPS}
    return {"weights": "int8 per channel, symmetric", "activations":
            "int8 per tensor, asymmetric, ranges fitted (least squared error) on calibration "
            "images", "calibration_images": calibration_images, "kept_float": INT8_FLOAT_OPS}


def tool_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for pkg in ("evit", "torch", "litert-torch", "ai-edge-litert", "onnx", "onnxruntime",
                "numpy"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[pkg] = metadata.version(pkg)
    return out


@dataclass
class ExportResult:
    artifact: Path
    sidecar: Path
    meta: dict[str, Any]


def export_subnet(net: StaticViT, out: str | Path, fmt: str = "tflite",
                  precision: str = "fp32", parity_inputs: torch.Tensor | None = None,
                  calibration: list[torch.Tensor] | None = None,
                  normalization: dict[str, Any] | None = None,
                  source: dict[str, Any] | None = None, input_layout: str | None = None,
                  input_type: str = "float32", labels: list[str] | None = None
                  ) -> ExportResult:
    """Optimize, convert, parity-check and describe one static subnet.

    ``input_layout``: "nhwc" (the default for .tflite: what Android camera pipelines hand
    over) or "nchw" (the default for .onnx). ``input_type``: "float32" (normalized input) or
    "uint8" (RGB bytes; the normalization runs in the graph). ``parity_inputs`` and
    ``calibration`` are normalized NCHW float32 and are mapped to the file's input the way an
    app's images would be. Writes ``out`` (with the metadata embedded) and ``out`` + ``.json``
    (the sidecar: the same metadata plus the file's size and hash); both atomically.
    """
    from converters import check_parity, convert_onnx, convert_tflite, graph_report
    from converters.app_input import AppInput
    from converters.metadata import embed_metadata
    from converters.quantize import quantize_tflite
    from converters.runtime import runner_for
    from converters.tflite_edit import uint8_input_via_dequantize

    if fmt not in ("tflite", "onnx"):
        raise ValueError(f"format = {fmt!r} is not allowed; choose tflite or onnx")
    if precision == "int8" and not calibration:  # before the minutes of conversion
        raise ValueError("precision int8 (full integer) needs calibration images: pass a few "
                         "dozen representative inputs (normalized NCHW float32 batches)")
    norm = {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225], "scale": "pixel/255",
            **(normalization or {})}
    layout_in = input_layout or ("nhwc" if fmt == "tflite" else "nchw")
    arch: ArchConfig = net.arch
    r = arch.resolution
    app = AppInput(optimize_for_export(net), layout_in, input_type, norm["mean"], norm["std"])
    ref = AppInput(net.eval(), layout_in, input_type, norm["mean"], norm["std"]).eval()
    if labels is not None and len(labels) != net.num_classes:
        raise ValueError(f"labels: {len(labels)} given, the subnet has {net.num_classes} "
                         "classes")
    out = Path(out)
    sweep_temps(out.parent, {out.name, out.name + ".json"})  # what a killed export left
    example = (app.example(r),)
    calib = None if calibration is None else [(app.to_app(c),) for c in calibration]
    timing: dict[str, float] = {}
    t0 = time.perf_counter()
    if fmt == "tflite":
        # a quantized file is the float one quantized (no second conversion); the float one
        # lives in a temporary folder, so `out` is never a model of the wrong precision
        fp32 = (out if precision == "fp32"
                else Path(tempfile.mkdtemp(prefix="evit_fp32_")) / out.name)
        try:
            convert_tflite(app, example, fp32, "fp32")
            timing["convert"] = time.perf_counter() - t0
            if precision != "fp32":
                t0 = time.perf_counter()
                images = None if calib is None else [x[i:i + 1].numpy() for (x,) in calib
                                                     for i in range(len(x))]
                quantize_tflite(fp32, out, precision, images)
                timing["quantize"] = time.perf_counter() - t0
        finally:
            if fp32 != out:
                shutil.rmtree(fp32.parent, ignore_errors=True)
        if input_type == "uint8":
            uint8_input_via_dequantize(out)  # CAST would fall off XNNPACK
    else:
        convert_onnx(app, example, out, precision, calib)
        timing["convert"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    if parity_inputs is None:
        parity_inputs = torch.randn(8, 3, r, r, generator=torch.Generator().manual_seed(0))
    app_inputs = app.to_app(parity_inputs)
    parity = check_parity(ref, out, app_inputs)
    timing["parity"] = time.perf_counter() - t0
    layout = getattr(net, "layout", "evit")
    n_params = sum(p.numel() for p in net.parameters())  # = params(arch) but for a stored
    fp32_weight_bytes = 4 * n_params                      # index that an EMA changed
    shape = [1, r, r, 3] if layout_in == "nhwc" else [1, 3, r, r]
    meta: dict[str, Any] = {
        "format": fmt, "precision": precision, "arch": arch.to_dict(),
        "mflops": round(flops(arch, net.num_classes), 3),
        "params": n_params, "num_classes": net.num_classes,
        "layout": layout,
        "input": {"shape": shape, **app.describe(), **norm},
        "output": {"shape": [1, net.num_classes], "meaning": "logits"},
        "labels": labels,
        "parity": parity.to_dict(),
        "tools": tool_versions(), "source": source or {},
    }
    if fmt == "tflite" and precision != "fp32":
        meta["quantization"] = quantization_recipe(precision, sum(len(c[0]) for c in calib or []))
    first = runner_for(out)(app_inputs[:1].numpy())
    embed_metadata(out, meta)  # inside the file: survives the trip into an app
    if not np.array_equal(first, runner_for(out)(app_inputs[:1].numpy())):
        raise RuntimeError(f"{out}: embedding the metadata changed the model's output")
    meta["timing_s"] = {k: round(v, 2) for k, v in timing.items()}
    meta["size_bytes"] = out.stat().st_size
    meta["size_over_fp32_weights"] = round(out.stat().st_size / fp32_weight_bytes, 4)
    meta["sha256"] = sha256_file(out)
    if fmt == "tflite":
        rep = graph_report(out)
        meta["graph"] = {"ops": rep.ops, "custom_ops": rep.custom_ops, "flex_ops": rep.flex_ops,
                         "fully_xnnpack": rep.fully_xnnpack}
    sidecar = out.with_name(out.name + ".json")
    atomic_write_json(sidecar, meta, indent=1)
    return ExportResult(out, sidecar, meta)
