"""Export one subnet as a parity-checked .tflite / .onnx: the job behind ``evit-export``.

:class:`ExportRequest` says what to export (a named model or an arch file; weights sliced
from a supernet checkpoint, or fresh ones) and how; :func:`run_export` prepares what the
conversion needs from the checkpoint (BN recalibration batches, parity inputs, int8
calibration images, normalization, labels) and calls :func:`toolkit.export.export_subnet`.

>>> meta = run_export(ExportRequest(arch="best.json", supernet="runs/train/supernet.pt"))
>>> meta["artifact"], meta["parity"]["top1_agreement"]
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

__all__ = ["ExportRequest", "ExportError", "run_export", "output_path", "normalization_info",
           "bn_batches", "FORMATS", "PRECISIONS", "INPUT_LAYOUTS", "INPUT_TYPES",
           "BN_BATCH_SIZE"]

FORMATS = ("tflite", "onnx")
PRECISIONS = ("fp32", "fp16", "int8-dynamic", "int8")
INPUT_LAYOUTS = ("nhwc", "nchw")
INPUT_TYPES = ("float32", "uint8")
BN_BATCH_SIZE = 32  # images per BN recalibration batch
IMAGENET_NORM = {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225],
                 "scale": "pixel/255"}


class ExportError(ValueError):
    """An export request that cannot be carried out; the message names the field."""


@dataclass
class ExportRequest:
    """One export. Exactly one of ``model`` (a named model) or ``arch`` (an arch JSON file).
    With ``supernet`` the weights are the checkpoint's EMA weights, BN recalibrated on
    ``bn_batches`` x 32 images of ``data`` (default: the checkpoint's training data); else
    fresh weights for ``num_classes`` classes (for latency and size work)."""

    model: str | None = None
    arch: str | None = None
    supernet: str | None = None
    data: str | None = None
    format: str = "tflite"
    precision: str = "fp32"
    input_layout: str | None = None  # None: nhwc for tflite, nchw for onnx
    input_type: str = "float32"
    out: str | None = None  # a file, or a folder for the default name; None: exports/
    num_classes: int = 1000  # without a supernet only
    bn_batches: int = 8
    parity_samples: int = 16
    seed: int = 0

    def validate(self) -> None:
        """Raise ExportError naming the field, its value and what is allowed."""
        if bool(self.model) == bool(self.arch):
            raise ExportError(f"model = {self.model!r}, arch = {self.arch!r}: give exactly one "
                              "of model (a named model, --model NAME) or arch (an arch JSON "
                              "file, --arch subnet.json)")
        for name, allowed in (("format", FORMATS), ("precision", PRECISIONS),
                              ("input_layout", (None, *INPUT_LAYOUTS)),
                              ("input_type", INPUT_TYPES)):
            v = getattr(self, name)
            if v not in allowed:
                raise ExportError(f"{name} = {v!r} is not allowed; choose one of "
                                  f"{', '.join(str(a) for a in allowed)}")
        for name, low in (("num_classes", 1), ("bn_batches", 1), ("parity_samples", 0)):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < low:
                raise ExportError(f"{name} = {v!r} is not allowed; give a whole number >= {low}")

    @property
    def name(self) -> str:
        return self.model or Path(self.arch or "subnet").stem

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def normalization_info(data_name: str, image_size: int, resolution: int) -> dict[str, Any]:
    """The input normalization and preprocessing a subnet trained on ``data_name`` expects."""
    if data_name == "digits":
        return {"mean": [0.5] * 3, "std": [0.5] * 3, "scale": "pixel/16 for sklearn digits",
                "preprocess": f"8x8 digit → 32x32 bilinear, gray→3 channels, bicubic to "
                              f"{resolution}x{resolution}"}
    return {**IMAGENET_NORM,
            "preprocess": f"resize short side to {round(image_size / 0.875)} (bicubic), centre "
                          f"crop {image_size}, bicubic to {resolution}x{resolution}"}


def output_path(out: str | None, default_name: str, fmt: str) -> Path:
    """Where the artifact goes, checked before any work: a folder (existing, or given with a
    trailing /) gets the default file name; a file must have the format's suffix and a
    writable folder."""
    if not out:
        return Path("exports") / default_name
    path = Path(out)
    if path.is_dir() or out.endswith(("/", os.sep)):
        path = path / default_name
    if path.suffix != f".{fmt}":
        raise ExportError(f"--out {out}: a {fmt} artifact needs the .{fmt} suffix (or give a "
                          "folder to get the default name)")
    if path.exists() and not path.is_file():
        raise ExportError(f"--out {path} exists and is not a file")
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise ExportError(f"--out {path}: cannot write into {parent}")
    return path


def bn_batches(train_set, batches: int, batch_size: int = BN_BATCH_SIZE, seed: int = 0):
    """``batches`` batches of training images, drawn without replacement (fixed seed)."""
    import torch

    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(train_set), generator=g)[:batches * batch_size]
    return [torch.stack([train_set[int(i)][0] for i in idx[k:k + batch_size]])
            for k in range(0, len(idx), batch_size)]


@dataclass
class _Prepared:
    """What the conversion takes besides the network."""

    net: Any
    parity: Any = None
    calibration: list | None = None
    normalization: dict | None = None
    labels: list[str] | None = None


def _resize(x, r: int):
    import torch

    return torch.nn.functional.interpolate(x, size=(r, r), mode="bicubic", align_corners=False)


def _from_supernet(req: ExportRequest, arch, source: dict[str, Any]) -> _Prepared:
    import torch

    from toolkit.checkpoint import load_checkpoint, supernet_from_checkpoint
    from toolkit.data import DataError, build_datasets, calibration_images
    from toolkit.evaluate import recalibrate_bn
    from toolkit.fileio import sha256_file

    ck = load_checkpoint(req.supernet)
    cfg = ck.get("config", {}) or {}
    data_dir = req.data if req.data is not None else cfg.get("data")
    if data_dir is None and "config" not in ck and int(ck.get("num_classes", 10)) != 10:
        raise DataError(f"{req.supernet} records no training data and has "
                        f"{ck['num_classes']} classes (the default data, the embedded "
                        "digits, has 10); pass --data with its data set for BN "
                        "recalibration (e.g. --data /data/imagenet)")
    image_size = cfg.get("image_size", 224)
    data = build_datasets(data_dir, image_size)
    supernet = supernet_from_checkpoint(ck, req.supernet)  # read once, not twice
    if data.num_classes != supernet.num_classes:
        raise DataError(f"the calibration data has {data.num_classes} classes, the supernet "
                        f"{supernet.num_classes}")
    batches = bn_batches(data.train, req.bn_batches)
    recalibrate_bn(supernet, arch, batches)
    r = arch.resolution
    n_val = min(req.parity_samples, len(data.val))
    parity = _resize(torch.stack([data.val[i][0] for i in range(n_val)]), r) if n_val else None
    calib = None
    if req.precision == "int8":  # 64 un-augmented training images: see converters.quantize
        calib = [_resize(calibration_images(data_dir, 64, image_size), r)]
    classes = getattr(data.train, "classes", None)
    labels = ([str(c) for c in classes] if classes is not None
              else [str(i) for i in range(10)] if data.name == "digits" else None)
    source.update({"supernet": str(req.supernet), "supernet_sha256": sha256_file(req.supernet),
                   "data": data_dir, "bn_recalibration_images": sum(len(b) for b in batches),
                   "calibration_data": data.name, "weights": "supernet EMA"})
    return _Prepared(supernet.extract(arch).eval(), parity, calib,
                     normalization_info(data.name, image_size, r), labels)


def _fresh(req: ExportRequest, arch, source: dict[str, Any]) -> _Prepared:
    import torch

    from toolkit.supernet import StaticViT

    torch.manual_seed(req.seed)
    net = StaticViT(arch, req.num_classes).eval()
    source["weights"] = "random (no --supernet given): for latency and size work only"
    calib = None
    if req.precision == "int8":
        r = arch.resolution
        calib = [torch.randn(16, 3, r, r)]
        source["calibration_data"] = "random normal (no --supernet/--data)"
    return _Prepared(net, calibration=calib, normalization=dict(IMAGENET_NORM))


def run_export(req: ExportRequest) -> dict[str, Any]:
    """Export as requested; the sidecar's metadata plus ``artifact`` and ``sidecar`` paths.

    Raises ExportError / ArchError / DataError / CheckpointError for bad input (before any
    conversion), converters.ConversionError when a conversion fails."""
    import torch

    from toolkit.export import export_subnet
    from toolkit.space import ArchConfig
    from toolkit.zoo import get_arch

    req.validate()
    arch = get_arch(req.model) if req.model else ArchConfig.load(req.arch)
    out = output_path(req.out, f"{req.name}_{req.precision}.{req.format}", req.format)
    source: dict[str, Any] = {"model": req.model, "arch_file": req.arch}
    prep = (_from_supernet if req.supernet else _fresh)(req, arch, source)
    parity = prep.parity
    if req.parity_samples and parity is None:
        r = arch.resolution
        parity = torch.randn(req.parity_samples, 3, r, r,
                             generator=torch.Generator().manual_seed(1))
    res = export_subnet(prep.net, out, req.format, req.precision, parity, prep.calibration,
                        prep.normalization, source, input_layout=req.input_layout,
                        input_type=req.input_type, labels=prep.labels)
    return res.meta | {"artifact": str(res.artifact), "sidecar": str(res.sidecar)}
