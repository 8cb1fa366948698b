"""The input an app hands over: channels-last, optionally raw bytes with the normalization in
the graph.

Android camera pipelines (CameraX, the TFLite support library's TensorImage) produce NHWC
RGB, often as uint8. ``AppInput`` wraps a model that takes normalized NCHW float32 so that
the converted file takes that directly; ``to_app`` maps the normalized inputs used for
parity and calibration to the same domain, so those checks run the same preprocessing path.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["INPUT_LAYOUTS", "INPUT_TYPES", "AppInput"]

INPUT_LAYOUTS = ("nhwc", "nchw")
INPUT_TYPES = ("float32", "uint8")


class AppInput(nn.Module):
    """``model`` fed in ``layout`` / ``dtype``. For uint8 the graph computes
    ``(x / 255 - mean) / std`` per channel (``mean``/``std`` in units of pixel / 255)."""

    def __init__(self, model: nn.Module, layout: str = "nhwc", dtype: str = "float32",
                 mean: Sequence[float] = (0.485, 0.456, 0.406),
                 std: Sequence[float] = (0.229, 0.224, 0.225)):
        super().__init__()
        if layout not in INPUT_LAYOUTS:
            raise ValueError(f"input_layout = {layout!r}; choose one of "
                             f"{', '.join(INPUT_LAYOUTS)}")
        if dtype not in INPUT_TYPES:
            raise ValueError(f"input_type = {dtype!r}; choose one of {', '.join(INPUT_TYPES)}")
        mean_t = torch.tensor([float(v) for v in mean])
        std_t = torch.tensor([float(v) for v in std])
        if mean_t.shape != std_t.shape or mean_t.ndim != 1 or not (std_t > 0).all():
            raise ValueError(f"mean {list(mean)} / std {list(std)}: one value per channel, "
                             "std > 0")
        self.model, self.layout, self.dtype = model, layout, dtype
        shape = (1, 1, 1, -1) if layout == "nhwc" else (1, -1, 1, 1)
        # one multiply-add per pixel: x * 1/(255 std) - mean/std
        self.register_buffer("scale", (1.0 / (255.0 * std_t)).view(shape), persistent=False)
        self.register_buffer("shift", (-mean_t / std_t).view(shape), persistent=False)
        self.register_buffer("mean", mean_t.view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", std_t.view(1, -1, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.dtype == "uint8":
            x = x.to(torch.float32) * self.scale + self.shift
        if self.layout == "nhwc":
            x = x.permute(0, 3, 1, 2)  # the converter cancels it against the first conv's own
        return self.model(x)

    def to_app(self, x: torch.Tensor) -> torch.Tensor:
        """Normalized NCHW float32 inputs as this wrapper takes them (uint8: rounded bytes,
        so a check on them runs exactly what an app's bytes would)."""
        if self.dtype == "uint8":
            x = ((x * self.std + self.mean) * 255.0).round().clamp(0, 255).to(torch.uint8)
        if self.layout == "nhwc":
            x = x.permute(0, 2, 3, 1).contiguous()
        return x

    def example(self, resolution: int) -> torch.Tensor:
        shape = ((1, resolution, resolution, 3) if self.layout == "nhwc"
                 else (1, 3, resolution, resolution))
        return torch.zeros(shape, dtype=torch.uint8 if self.dtype == "uint8" else torch.float32)

    def describe(self) -> dict:
        d = {"layout": self.layout.upper(), "dtype": self.dtype}
        if self.dtype == "uint8":
            d["normalization_in_graph"] = "(x / 255 - mean) / std per channel"
        return d
