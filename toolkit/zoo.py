"""Named models (ElasticViT-T0 ... L3) and the HSS subnets, timm style.

>>> from toolkit import create_model, list_models
>>> list_models("elasticvit_s*")
['elasticvit_s1', 'elasticvit_s2']
>>> net = create_model("elasticvit_s1")               # fresh weights
>>> net = create_model("elasticvit_s1", supernet="supernet.pt")   # sliced from a trained supernet
"""

from __future__ import annotations

import fnmatch
import json
from dataclasses import dataclass
from functools import cache, lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from toolkit.space import ArchConfig

__all__ = ["NamedModel", "list_models", "get_arch", "get_model_info", "create_model", "hss_archs"]


@dataclass(frozen=True)
class NamedModel:
    name: str
    arch: ArchConfig
    official_mflops: float
    source: str = ""
    paper_mflops: float | None = None
    paper_top1: float | None = None
    paper_latency_ms: float | None = None
    paper_device: str | None = None


@lru_cache(maxsize=1)
def _data() -> dict[str, Any]:
    return json.loads(resources.files("toolkit").joinpath("named_models.json").read_text())


@cache
def _registry() -> dict[str, NamedModel]:
    out = {}
    for name, d in _data()["models"].items():
        out[name] = NamedModel(name=name, arch=ArchConfig.from_dict(d),
                               official_mflops=d["official_mflops"], source=d.get("source", ""),
                               paper_mflops=d.get("paper_mflops"),
                               paper_top1=d.get("paper_top1"),
                               paper_latency_ms=d.get("paper_latency_ms"),
                               paper_device=d.get("paper_device"))
    return out


def list_models(pattern: str = "*") -> list[str]:
    """Names of the registered models matching a shell-style pattern, in size order."""
    return [n for n in _registry() if fnmatch.fnmatch(n, pattern)]


def get_model_info(name: str) -> NamedModel:
    reg = _registry()
    if name not in reg:
        raise KeyError(f"unknown model {name!r}; known models: {', '.join(reg)}")
    return reg[name]


def get_arch(name: str) -> ArchConfig:
    return get_model_info(name).arch


def hss_archs() -> dict[str, ArchConfig]:
    """The three hierarchical smallest subnets: min_1 (37 MFLOPs), min_2 (160), min_3 (289)."""
    return {k: ArchConfig.from_dict(v) for k, v in _data()["hss"].items()}


def create_model(name: str, num_classes: int = 1000, supernet: str | Path | None = None):
    """A static named model: fresh weights, or sliced from a supernet checkpoint file."""
    from toolkit.supernet import StaticViT

    arch = get_arch(name)
    if supernet is None:
        return StaticViT(arch, num_classes)
    from toolkit.checkpoint import load_supernet

    return load_supernet(supernet).extract(arch)
