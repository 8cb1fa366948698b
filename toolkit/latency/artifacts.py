"""The .tflite cache of a campaign: each kernel (and each whole subnet) converted once.

Files live in ``toolkit.fileio.cache_dir("kernels")`` (``$EVIT_CACHE/kernels``), named by
content: the kernel's key and code (or the subnet's arch JSON), the classes of the head, the
torch and litert-torch versions and a format tag; so they are shared by every device and
every campaign, and a new converter never reuses an old file.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch

from toolkit import fileio
from toolkit.space import ArchConfig

from .kernels import Kernel

__all__ = ["cache_dir", "kernel_path", "subnet_path", "kernel_tflite", "subnet_tflite"]

TAG = "v1"  # bump when a kernel's module changes (kernel_modules.py)


def cache_dir() -> Path:
    return fileio.cache_dir("kernels")


def _versions() -> str:
    from importlib.metadata import version

    return f"torch={torch.__version__};litert-torch={version('litert-torch')}"


def kernel_path(k: Kernel, num_classes: int = 1000) -> Path:
    """Where the kernel's .tflite lives in the cache (keyed by content: key, classes, tools)."""
    digest = hashlib.sha256(f"{k.key}|{k.code}|{num_classes}|{_versions()}|{TAG}".encode())
    return cache_dir() / f"{k.key}-{digest.hexdigest()[:12]}.tflite"


def subnet_path(arch: ArchConfig, num_classes: int = 1000) -> Path:
    digest = hashlib.sha256(f"{arch.to_json()}|{num_classes}|{_versions()}|{TAG}".encode())
    return cache_dir() / f"subnet-{digest.hexdigest()[:16]}.tflite"


def kernel_tflite(k: Kernel, num_classes: int = 1000) -> Path:
    """The kernel as a .tflite, built once and cached by content (key, classes, tools)."""
    from converters import convert_tflite

    from .kernel_modules import kernel_module

    path = kernel_path(k, num_classes)
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        m, x = kernel_module(k, num_classes)
        convert_tflite(m, (x,), path)  # written to a temporary name and renamed
    return path


def subnet_tflite(arch: ArchConfig, num_classes: int = 1000) -> Path:
    """A whole subnet (random weights, exported as evit-export does) as a cached .tflite."""
    from converters import convert_tflite
    from toolkit.export import optimize_for_export
    from toolkit.supernet.static import StaticViT

    path = subnet_path(arch, num_classes)
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.manual_seed(0)
        net = optimize_for_export(StaticViT(arch, num_classes).eval())
        r = arch.resolution
        convert_tflite(net, (torch.randn(1, 3, r, r),), path)
    return path
