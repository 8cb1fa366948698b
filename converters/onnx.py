"""PyTorch → ONNX (torch.onnx, dynamo exporter), with onnxruntime int8 quantization."""

from __future__ import annotations

import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

import torch

from converters.fileio import atomic_copy
from converters.tflite import ConversionError, locate_failure

__all__ = ["ONNX_PRECISIONS", "convert_onnx"]

ONNX_PRECISIONS = ("fp32", "int8-dynamic", "int8")


def convert_onnx(model: torch.nn.Module, example: Sequence[torch.Tensor], out: str | Path,
                 precision: str = "fp32",
                 calibration: Iterable[Sequence[torch.Tensor]] | None = None) -> Path:
    """Export ``model`` to ``out`` (.onnx, input "input", output "logits"); int8 variants are
    quantized with onnxruntime (dynamic, or static QDQ with a calibration set)."""
    if precision not in ONNX_PRECISIONS:
        hint = " (fp16 is offered for .tflite)" if precision == "fp16" else ""
        raise ValueError(f"precision = {precision!r} is not allowed for onnx; choose one of "
                         f"{', '.join(ONNX_PRECISIONS)}{hint}")
    if precision == "int8" and calibration is None:
        raise ValueError("precision int8 (static) needs a calibration set")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    example = tuple(example)
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        fp32 = Path(tmp) / "model.onnx"
        try:
            prog = torch.onnx.export(model, example, dynamo=True, input_names=["input"],
                                     output_names=["logits"], verbose=False)
            prog.optimize()
            prog.save(str(fp32))
        except Exception as e:  # noqa: BLE001
            where = locate_failure(model, example) or f"{type(e).__name__}: {e}"
            raise ConversionError(f"cannot export {type(model).__name__} to ONNX: "
                                  f"{where}") from e
        final = fp32
        if precision != "fp32":
            from onnxruntime.quantization import QuantType, quantize_dynamic, quantize_static

            final = Path(tmp) / "model.int8.onnx"
            if precision == "int8-dynamic":
                quantize_dynamic(str(fp32), str(final), weight_type=QuantType.QInt8)
            else:
                quantize_static(str(fp32), str(final), _Reader(calibration),
                                activation_type=QuantType.QInt8, weight_type=QuantType.QInt8)
        atomic_copy(final, out)
    return out


class _Reader:
    """onnxruntime CalibrationDataReader over batches of torch tensors, one image per read
    (the graph's batch is 1)."""

    def __init__(self, batches: Iterable[Sequence[torch.Tensor]]):
        self.it = iter([{"input": x[i:i + 1].numpy()} for b in batches
                        for x in (tuple(b)[0],) for i in range(len(x))])

    def get_next(self):
        return next(self.it, None)
