"""Supernet checkpoint files: written atomically, read with ``weights_only=True``.

Layout (a plain dict of tensors and builtins, no pickled objects)::

    {"format": "evit-supernet", "version": 1 | 2, "num_classes": int,
     "layout": "evit" | "release" (absent: "evit"),
     "model": state_dict, "ema": state_dict | absent, ...training state (evit-train),
     "banks": [{"level", "capacity", "archs", "scores"}] | absent (imported memory banks)}

Version 2 marks the release layout (an evit that predates it refuses the file instead of
misreading it); evit-layout files stay version 1.

When an ``ema`` state is present, :func:`load_supernet` uses it (evaluation and export use the
EMA weights, as the release does) unless ``use_ema=False``.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import torch

from toolkit.fileio import atomic_open

__all__ = ["CheckpointError", "atomic_save", "save_supernet", "load_checkpoint", "load_supernet",
           "supernet_from_checkpoint", "checkpoint_header", "checkpoint_banks"]

FORMAT = "evit-supernet"
VERSION = 2  # the newest version this evit reads
RELEASE_LAYOUT_VERSION = 2


# what ``torch.load(..., weights_only=True)`` raises on a file that is not a clean state:
# truncated zip (RuntimeError), disallowed or garbled pickle (UnpicklingError), empty (EOFError),
# not a torch file (KeyError), unreadable (OSError)
TORCH_LOAD_ERRORS = (RuntimeError, pickle.UnpicklingError, EOFError, KeyError, ValueError,
                     OSError)


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used; the message says why and what to do."""


def atomic_save(obj: Any, path: str | Path) -> None:
    """``torch.save`` to a temporary file in the same folder, fsync, then rename over ``path``
    (a temp a killed write left behind is swept by ``toolkit.fileio.sweep_temps``)."""
    with atomic_open(path, "wb") as f:
        torch.save(obj, f)


def checkpoint_header(layout: str, num_classes: int) -> dict[str, Any]:
    """The format fields every evit supernet checkpoint starts with."""
    return {"format": FORMAT, "version": RELEASE_LAYOUT_VERSION if layout == "release" else 1,
            "layout": layout, "num_classes": num_classes}


def save_supernet(model: torch.nn.Module, path: str | Path, **extra: Any) -> None:
    state = {**checkpoint_header(getattr(model, "layout", "evit"), model.num_classes),
             "model": model.state_dict(), **extra}
    atomic_save(state, path)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read and check a checkpoint file (tensors and builtins only; never arbitrary pickles)."""
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"checkpoint {str(p)!r} does not exist; train one with `evit-train` "
                              "or pass the path of an existing supernet checkpoint")
    try:
        ckpt = torch.load(p, map_location=map_location, weights_only=True)
    except TORCH_LOAD_ERRORS as e:
        raise CheckpointError(f"checkpoint {str(p)!r} cannot be read ({type(e).__name__}: "
                              f"{str(e).splitlines()[0][:200]}); it is corrupt, truncated or not "
                              "an evit checkpoint") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(f"{str(p)!r} is not an evit supernet checkpoint (no "
                              f"format={FORMAT!r} entry)")
    v = ckpt.get("version", 0)
    if not isinstance(v, int) or v > VERSION:
        raise CheckpointError(f"{str(p)!r} has checkpoint version {v!r}; this evit "
                              f"reads up to version {VERSION}: upgrade evit")
    for key in ("model", "ema"):  # the weights: a mapping of names to tensors
        w = ckpt.get(key)
        if key == "ema" and w is None:
            continue
        if not isinstance(w, dict) or not w or not all(
                isinstance(k, str) and isinstance(t, torch.Tensor) for k, t in w.items()):
            what = "no" if w is None else "a damaged"
            raise CheckpointError(f"{str(p)!r} holds {what} {key!r} entry (the supernet's "
                                  "weights: names to tensors); it is damaged or was not "
                                  "written by evit: re-train, re-import or restore it")
    nc = ckpt.get("num_classes", 1000)
    if isinstance(nc, bool) or not isinstance(nc, int) or not 1 <= nc <= 1_000_000:
        raise CheckpointError(f"{str(p)!r} has num_classes = {nc!r}; expected a positive "
                              "integer: the file is damaged")
    return ckpt


def load_supernet(path: str | Path, use_ema: bool = True,
                  map_location: str | torch.device = "cpu"):
    """A :class:`~toolkit.supernet.Supernet` with the checkpoint's weights (EMA ones if present)."""
    ckpt = load_checkpoint(path, map_location)
    return supernet_from_checkpoint(ckpt, path, use_ema).to(map_location)


def supernet_from_checkpoint(ckpt: dict[str, Any], path: str | Path = "checkpoint",
                             use_ema: bool = True):
    """The supernet of an already loaded (and checked) checkpoint dict."""
    from toolkit.supernet import Supernet

    layout = ckpt.get("layout", "evit")
    if layout not in ("evit", "release"):
        raise CheckpointError(f"{str(path)!r} has layout {layout!r}; this evit knows evit and "
                              "release")
    model = Supernet(num_classes=int(ckpt.get("num_classes", 1000)), layout=layout)
    state = ckpt["ema"] if use_ema and ckpt.get("ema") is not None else ckpt["model"]
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as e:  # shape mismatches
        raise CheckpointError(f"{str(path)!r} does not match the ElasticViT supernet: "
                              f"{str(e).splitlines()[-1].strip()[:300]}") from None
    bad = [k for k in missing if not k.endswith("num_batches_tracked")]
    if bad or unexpected:
        raise CheckpointError(f"{str(path)!r} does not match the ElasticViT supernet "
                              f"(layout {layout}): "
                              f"{len(bad)} missing tensors (e.g. {bad[:3]}), {len(unexpected)} "
                              f"unexpected (e.g. {list(unexpected)[:3]})")
    return model


def checkpoint_banks(ckpt: dict[str, Any]) -> list[dict[str, Any]]:
    """The memory banks a checkpoint holds, best first in each: ``[{"level": MFLOPs,
    "archs": [ArchConfig], "scores": [float]}]`` from an imported release checkpoint
    (``banks``) or an evit-trained conflict-aware one (its sampler state); [] if none.
    Entries that are not valid subnets are skipped (the file is untrusted input)."""
    from toolkit.space import ArchConfig, ArchError

    raw = ckpt.get("banks")
    if raw is None:
        sampler = ckpt.get("sampler") or {}
        levels = sampler.get("levels") or []
        raw = [{"level": lv, **b} for lv, b in zip(levels, sampler.get("banks") or [])]
    out = []
    for b in raw if isinstance(raw, list) else []:
        if not isinstance(b, dict):
            continue
        pairs = []
        for a, sc in zip(b.get("archs") or [], b.get("scores") or []):
            try:
                pairs.append((float(sc), ArchConfig.from_dict(a)))
            except (ArchError, TypeError, ValueError):
                continue
        pairs.sort(key=lambda p: -p[0])
        out.append({"level": b.get("level"), "archs": [a for _, a in pairs],
                    "scores": [s for s, _ in pairs]})
    return out


def trained_rules(ckpt: dict[str, Any], net) -> str:
    """The sub-space rules (``SearchSpace(rules=...)``) of the subnets a checkpoint's weights
    were trained on: a release-layout supernet knows only the release sampler's subnets, and
    an evit one trained with sub-spaces (``--subspace hss`` or ``release``, the default) drew
    every subnet under the release's channel rules (the conv stem as wide as the first conv,
    no stage narrower than the one before); subnets outside them use weights (such as the
    stem's shortcut conv) that never trained. "none" for a supernet trained without."""
    if net.subnet_rules != "none":
        return net.subnet_rules
    config = ckpt.get("config")
    sub = config.get("subspace") if isinstance(config, dict) else None
    return "release" if sub in ("hss", "release") else "none"
