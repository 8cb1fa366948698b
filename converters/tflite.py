"""PyTorch → .tflite with litert-torch (no TensorFlow), in four precisions.

The model is converted once, to fp32; the other precisions quantize that file
(:mod:`converters.quantize`, ai-edge-quantizer) instead of converting again:

* ``fp16``: float16 weights, computed in fp32 on CPUs (the GPU delegate runs fp16).
* ``int8-dynamic``: int8 weights, activations quantized on the fly (dynamic range).
* ``int8``: full integer (static) quantization, ranges fitted on calibration images.
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path

import torch

from converters.fileio import replace_into
from converters.quantize import quantize_tflite

__all__ = ["PRECISIONS", "ConversionError", "convert_tflite", "locate_failure"]

PRECISIONS = ("fp32", "fp16", "int8-dynamic", "int8")


class ConversionError(RuntimeError):
    """A model that cannot be converted; the message names the failing op or layer."""


def locate_failure(model: torch.nn.Module, example: tuple[torch.Tensor, ...]) -> str | None:
    """Export the model with torch.export and name the first op/layer that fails, if any."""
    try:
        torch.export.export(model, example)
        return None
    except Exception as e:  # noqa: BLE001 - we want the message, whatever the type
        msg = str(e)
        where = re.findall(r"File \"[^\"]*\", line \d+, in (\w+)", msg)
        op = re.search(r"(aten::\w+|torch\.ops\.[\w.]+|aten\.\w+)", msg)
        parts = []
        if op:
            parts.append(f"op {op.group(1)}")
        if where:
            parts.append(f"in {where[-1]}()")
        head = msg.strip().splitlines()[0][:300] if msg.strip() else type(e).__name__
        return f"{' '.join(parts) or type(e).__name__}: {head}"


def quiet_converter() -> None:
    """Keep a conversion's log to what matters: litert-torch's imports say that torchao's CUDA
    kernels are absent and that torch deprecates an enum registration. (Its per-stage progress
    lines and the C++ INFO lines are environment settings, which only entry points change:
    ``toolkit/cli/__init__.py`` turns them off unless LITERT_TORCH_SHOW_PROGRESS=y or
    TF_CPP_MIN_LOG_LEVEL=0 is set.)"""
    for name in ("torchao", "torch.utils._pytree"):
        logging.getLogger(name).setLevel(logging.ERROR)


def convert_tflite(model: torch.nn.Module, example: Sequence[torch.Tensor], out: str | Path,
                   precision: str = "fp32",
                   calibration: Iterable[Sequence[torch.Tensor]] | None = None) -> Path:
    """Convert ``model`` (eval mode) traced on ``example`` to ``out`` (.tflite).

    The file is written to a temporary name and renamed, so ``out`` is never half-written.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision = {precision!r} is not allowed; choose one of "
                         f"{', '.join(PRECISIONS)}")
    if precision == "int8" and calibration is None:
        raise ValueError("precision int8 (full integer) needs a calibration set: pass a few "
                         "representative input batches")
    quiet_converter()
    import litert_torch

    model = model.eval()
    example = tuple(example)
    out = Path(out)
    try:
        with warnings.catch_warnings():
            # torch.export's own deprecation note, raised several times per traced module
            warnings.filterwarnings("ignore", message=".*LeafSpec.*", category=FutureWarning)
            edge = litert_torch.convert(model, example)
    except Exception as e:  # noqa: BLE001
        where = locate_failure(model, example)
        detail = where or f"{type(e).__name__}: {str(e).strip().splitlines()[0][:300]}"
        raise ConversionError(f"cannot convert {type(model).__name__} to TFLite "
                              f"({precision}): {detail}") from e
    out.parent.mkdir(parents=True, exist_ok=True)  # the temp beside it: the rename is atomic
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.{os.getpid()}-", suffix=".tmp",
                               dir=out.parent)
    os.close(fd)
    try:
        edge.export(tmp)
        if precision == "fp32":
            return replace_into(tmp, out)
        images = None if calibration is None else [
            x[i:i + 1].detach().numpy() for b in calibration for x in (tuple(b)[0],)
            for i in range(len(x))]
        return quantize_tflite(tmp, out, precision, images)
    finally:
        Path(tmp).unlink(missing_ok=True)

