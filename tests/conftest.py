"""Shared fixtures. The reference data in ../shared is read in place, never copied."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


@pytest.fixture(scope="session")
def reference_models() -> dict:
    """../shared/reference/named_models.json when present (CI has it), else the packaged copy."""
    p = SHARED / "reference" / "named_models.json"
    if not p.is_file():
        from importlib import resources

        p = Path(str(resources.files("toolkit").joinpath("named_models.json")))
    return json.loads(p.read_text())


def randomize_norms(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Give every BN/LN non-trivial affine params and running stats (fresh init hides bugs)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                n = m.num_features
                m.weight.copy_(torch.rand(n, generator=g) + 0.5)
                m.bias.copy_(torch.randn(n, generator=g) * 0.1)
                m.running_mean.copy_(torch.randn(n, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
            elif isinstance(m, torch.nn.LayerNorm):
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
    return model


@pytest.fixture(scope="session")
def supernet():
    from toolkit.supernet import Supernet

    torch.manual_seed(0)
    return randomize_norms(Supernet(num_classes=10)).eval()


@pytest.fixture(scope="session")
def conv_tflite(tmp_path_factory):
    """A small conv net as .tflite (converted once per session)."""
    from converters import convert_tflite

    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 32, 3, 2, 1), torch.nn.ReLU(),
        torch.nn.Conv2d(32, 32, 3, 1, 1, groups=32), torch.nn.Hardswish(),
        torch.nn.Conv2d(32, 64, 1), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
        torch.nn.Linear(64, 10)).eval()
    out = tmp_path_factory.mktemp("bench") / "conv.tflite"
    convert_tflite(net, (torch.randn(1, 3, 96, 96),), out)
    return out


@pytest.fixture(scope="session", autouse=True)
def _evit_cache(tmp_path_factory):
    """A cache of the session's own (the embedded digits teacher is trained once per session,
    ~15 s, never read from or written to the user's ~/.cache)."""
    import os

    old = os.environ.get("EVIT_CACHE")
    os.environ["EVIT_CACHE"] = str(tmp_path_factory.mktemp("evit_cache"))
    yield Path(os.environ["EVIT_CACHE"])
    if old is None:
        os.environ.pop("EVIT_CACHE", None)
    else:
        os.environ["EVIT_CACHE"] = old


# search tests: a small evolution config and a deterministic stand-in for top-1
def _small_search():
    from toolkit.search.evolution import SearchConfig

    return SearchConfig(population=24, generations=4, parents=12, mutations=6, crossovers=6,
                        seed=3)


SMALL = _small_search()


def proxy_fitness(archs):
    """A deterministic stand-in for top-1 (the real one is tested through the CLI)."""
    from toolkit.flops import flops

    return [flops(a) / 4000 + (a.stages[4].width % 48) / 1000 for a in archs]


@pytest.fixture(scope="module")
def pixel4():
    from toolkit.latency import load_predictor
    from toolkit.search.evolution import Cost

    return Cost("latency", load_predictor("pixel4"))
