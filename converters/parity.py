"""Parity of a converted model against PyTorch, with the real runtimes."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from converters.runtime import runner_for

__all__ = ["Parity", "check_parity"]


@dataclass
class Parity:
    max_abs_error: float
    mean_abs_error: float
    top1_agreement: float
    samples: int
    runtime: str
    max_abs_reference: float = 0.0  # largest |logit| of PyTorch, for scale

    def to_dict(self) -> dict:
        return asdict(self)


@torch.no_grad()
def check_parity(model: torch.nn.Module, artifact: str | Path, inputs: torch.Tensor,
                 threads: int = 1) -> Parity:
    """Run each input (batch of one) through PyTorch and the artifact; compare logits."""
    run = runner_for(artifact, threads)
    model = model.eval()
    errs, means, agree, scale = [], [], 0, 0.0
    for i in range(len(inputs)):
        x = inputs[i:i + 1]
        ref = model(x).float().numpy()
        got = run(x.numpy())
        d = np.abs(ref - got)
        errs.append(float(d.max()))
        scale = max(scale, float(np.abs(ref).max()))
        means.append(float(d.mean()))
        agree += int(ref.argmax(-1)[0] == got.argmax(-1)[0])
    name = "ai-edge-litert" if Path(artifact).suffix == ".tflite" else "onnxruntime"
    return Parity(max(errs), float(np.mean(means)), agree / len(inputs), len(inputs), name,
                  scale)
