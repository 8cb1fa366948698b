"""``import_release``: the release's supernet checkpoint as an evit supernet checkpoint.

The release writes (``util/checkpoint.py: save_checkpoint``)::

    {"epoch": int, "state_dict": ..., "optimizer": ..., "bank": [[[arch, -loss], ...], ...],
     "arch": str, "extras": {...}, "model_ema": ...}

and evaluates with the ``model_ema`` weights when they are there (its ``load_checkpoint``).
:func:`import_release` reads such a file with ``weights_only=True``, maps every key of both
weight sets onto ``Supernet(layout="release")`` and checks every shape, dtype and index range
before anything is written; the memory banks become evit's banks (per complexity level) for
search to start from. Keys no subnet can ever use (the 1x1 shortcut convs the release creates
in every MBConv but only the first of a stage can use) are dropped and counted.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from toolkit.checkpoint import TORCH_LOAD_ERRORS, CheckpointError, atomic_save
from toolkit.flops import flops
from toolkit.release.arch import from_release
from toolkit.space import STAGE_SPACES, ArchError

__all__ = ["import_release", "release_key", "ImportReport", "RELEASE_BANK_LEVELS"]

# The release's bank levels (final_3min_space.yaml: 100..500 step 100, big banks 700/900/1200)
# and sizes (bank_size 150 below 500 MFLOPs, big_bank_size 50 from 500).
RELEASE_BANK_LEVELS = (100.0, 200.0, 300.0, 400.0, 500.0, 700.0, 900.0, 1200.0)

_MB = {"pw": "pw_conv", "pw_bn": "pw_bn", "dw": "dw_conv", "dw_bn": "dw_bn",
       "se_reduce": "se_conv1", "se_expand": "se_conv2", "pwl": "pwl_conv", "pwl_bn": "pwl_bn",
       "shortcut": "shortcut_conv"}
_ATTN = {"qkv": "qkv.weight", "dw_v": "dw_v_conv.weight", "proj_weight": "proj.weight",
         "proj_bias": "proj.bias", "rel_bias": "attention_bias",
         "rel_index": "relative_position_index", "norm.weight": "norm1.weight",
         "norm.bias": "norm1.bias"}
_HEAD = {"pre0": "pre_head_0", "bn": "pre_head_norm_0", "pre1": "pre_head_1",
         "classifier": "classifer"}
_TOP = {"first_conv.weight": "first_conv.weight"}
# shortcut convs of MBConvs after a stage's first: their input is always as wide as their output
_NEVER_USED = re.compile(r"(conv_stem|feature_exactor\.[01])\.layers\.([1-9]\d*)\.0\."
                         r"shortcut_conv\.weight$")


def _mbconv(rel_prefix: str, rest: str) -> str:
    mod, _, tail = rest.partition(".")
    if mod not in _MB:
        raise KeyError(rest)
    return f"{rel_prefix}{_MB[mod]}.{tail}"


def release_key(key: str) -> str:
    """The release's state-dict key holding evit's (release-layout) tensor ``key``."""
    if key in _TOP:
        return _TOP[key]
    if key.startswith("first_bn."):
        return "first_conv_bn." + key[len("first_bn."):]
    if key.startswith("head."):
        mod, _, tail = key[len("head."):].partition(".")
        return f"{_HEAD[mod]}.{tail}"
    m = re.fullmatch(r"stages\.(\d+)\.(.+)", key)
    if not m:
        raise KeyError(key)
    s, rest = int(m.group(1)), m.group(2)
    outer = "conv_stem" if s == 0 else f"feature_exactor.{s - 1}"
    if STAGE_SPACES[s].kind == "conv":
        b = re.fullmatch(r"blocks\.(\d+)\.(.+)", rest)
        return _mbconv(f"{outer}.layers.{b.group(1)}.0.", b.group(2))
    if rest.startswith("reduction."):
        return _mbconv(f"{outer}.layers.0.reduction.", rest[len("reduction."):])
    a = re.fullmatch(r"(attns|ffns)\.(\d+)\.(.+)", rest)
    j, tail = int(a.group(2)), a.group(3)
    if a.group(1) == "attns":
        return f"{outer}.layers.{2 * j}.{_ATTN[tail]}"
    return f"{outer}.layers.{2 * j + 1}.{tail.replace('norm.', 'norm1.')}"


def _numpy_scalar_globals() -> list:
    """numpy scalars and dtypes, the one kind of non-tensor object a release checkpoint may
    hold (subnets drawn from the release's pickled FLOPs tables can carry numpy ints). They
    rebuild a number from bytes and call nothing else; the numpy 1.x path is named too."""
    import importlib

    try:  # numpy 2 (numpy 1.26 also has the numpy._core alias)
        scalar = importlib.import_module("numpy._core.multiarray").scalar
    except ImportError:
        scalar = importlib.import_module("numpy.core.multiarray").scalar
    dtypes = getattr(np, "dtypes", None)
    return [(scalar, "numpy._core.multiarray.scalar"), (scalar, "numpy.core.multiarray.scalar"),
            np.dtype, *(getattr(dtypes, n) for n in (
                "Int64DType", "Int32DType", "Int16DType", "Int8DType", "UInt8DType",
                "Float64DType", "Float32DType", "Float16DType", "BoolDType")
                if hasattr(dtypes, n))]


def _load_error(e: Exception) -> str:
    """torch's reason in one line: the line naming the refused global when there is one."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(e))
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    pick = next((ln for ln in lines if "nsupported global" in ln.lower()
                 or "unsupported GLOBAL" in ln), lines[0] if lines else "")
    return f"{type(e).__name__}: {pick[:240]}"


def _plain(v: Any) -> Any:
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, (list, tuple)):
        return [_plain(e) for e in v]
    return v


class ImportReport(dict):
    """What the import found (a dict: written beside the weights, printed by the CLI)."""


def _weights(obj: Any, slot: str, path: str) -> dict[str, torch.Tensor]:
    if not isinstance(obj, dict) or not obj:
        raise CheckpointError(f"{path}: '{slot}' is not a state dict "
                              f"(got {type(obj).__name__})")
    out = {}
    for k, v in obj.items():
        if not isinstance(k, str) or not isinstance(v, torch.Tensor):
            raise CheckpointError(f"{path}: '{slot}' entry {k!r} is a {type(v).__name__}, "
                                  "not a tensor")
        out[k[len("module."):] if k.startswith("module.") else k] = v
    return out


def _map_weights(state: dict[str, torch.Tensor], slot: str, path: str,
                 model) -> tuple[dict[str, torch.Tensor], int]:
    """evit's state for ``model`` from a release state dict; errors name every problem."""
    want = model.state_dict()
    out, missing, bad = {}, [], []
    used = set()
    for key, ref in want.items():
        rk = release_key(key)
        if rk not in state:
            if key.endswith("num_batches_tracked"):
                out[key] = ref.clone()
                continue
            missing.append(rk)
            continue
        used.add(rk)
        v = state[rk]
        if tuple(v.shape) != tuple(ref.shape):
            bad.append(f"{rk}: shape {tuple(v.shape)}, expected {tuple(ref.shape)}")
            continue
        if ref.dtype == torch.int64:
            if v.dtype.is_floating_point or v.dtype == torch.bool:
                bad.append(f"{rk}: dtype {v.dtype}, expected an integer index")
                continue
            v = v.to(torch.int64)
            if key.endswith("rel_index"):
                rows = want[key[:-len("rel_index")] + "rel_bias"].shape[0]
                if v.numel() and (int(v.min()) < 0 or int(v.max()) >= rows):
                    bad.append(f"{rk}: index values in [{int(v.min())}, {int(v.max())}], the "
                               f"table has {rows} rows")
                    continue
        else:
            if not v.dtype.is_floating_point:
                bad.append(f"{rk}: dtype {v.dtype}, expected floating point")
                continue
            v = v.to(torch.float32)
            if not bool(torch.isfinite(v).all()):
                bad.append(f"{rk}: holds NaN or infinite values")
                continue
        out[key] = v.clone()
    dropped = [k for k in state if k not in used and _NEVER_USED.search(k)]
    unexpected = sorted(set(state) - used - set(dropped))
    problems = []
    if missing:
        problems.append(f"{len(missing)} tensor(s) missing (e.g. {', '.join(missing[:4])})")
    if bad:
        problems.append(f"{len(bad)} tensor(s) wrong: " + "; ".join(bad[:4]))
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected tensor(s) (e.g. "
                        f"{', '.join(unexpected[:4])})")
    if problems:
        raise CheckpointError(f"{path}: '{slot}' does not match the ElasticViT release's "
                              "supernet (final_3min_space.yaml): " + "; ".join(problems))
    return out, len(dropped)


def _banks(raw: Any, num_classes: int) -> tuple[list[dict[str, Any]], int, list[str]]:
    """evit bank entries from the release's ``bank`` list (one list of [arch, -loss] per
    level); entries evit cannot express are skipped and counted."""
    if raw is None:
        return [], 0, []
    if not isinstance(raw, (list, tuple)):
        raise CheckpointError(f"'bank' must be a list of banks, got {type(raw).__name__}")
    levels: list[float | None] = (list(RELEASE_BANK_LEVELS) if len(raw) == len(
        RELEASE_BANK_LEVELS) else [None] * len(raw))
    out, skipped, reasons = [], 0, []
    converted = []
    for level, bank in zip(levels, raw):
        archs, scores = [], []
        for item in bank if isinstance(bank, (list, tuple)) else []:
            try:
                arch_raw, score = _plain(item)
                arch = from_release(list(arch_raw))
                score = float(score)
                if not math.isfinite(score):
                    raise ValueError(f"score {score}")
            except (ArchError, TypeError, ValueError) as e:
                skipped += 1
                if len(reasons) < 3:
                    reasons.append(str(e)[:160])
                continue
            archs.append(arch)
            scores.append(score)
        converted.append((level, archs, scores))
    # a bank at level F holds subnets of F to F + 2·flops_bound MFLOPs (release: bound 10); if
    # the entries say otherwise the file came from another config: name each level by FLOPs
    mf = [[flops(a, num_classes) for a in archs] for _, archs, _ in converted]
    if not all(lv is not None and all(lv - 5 <= f <= lv + 60 for f in fs)
               for (lv, _, _), fs in zip(converted, mf)):
        converted = [(float(round(min(fs))) if fs else None, a, sc)
                     for (_, a, sc), fs in zip(converted, mf)]
    for level, archs, scores in converted:
        cap = 150 if level is None or level < 500 else 50
        out.append({"level": level, "capacity": max(cap, len(archs)),
                    "archs": [a.to_dict() for a in archs], "scores": scores})
    return out, skipped, reasons


def import_release(src: str | Path, out: str | Path | None = None,
                   map_location: str = "cpu") -> tuple[dict[str, Any], ImportReport]:
    """Read a release checkpoint; return (and, with ``out``, atomically write) the evit
    checkpoint of ``Supernet(layout="release")`` and a report of what was found."""
    from toolkit.checkpoint import FORMAT, RELEASE_LAYOUT_VERSION
    from toolkit.fileio import sha256_file
    from toolkit.supernet import Supernet

    p = Path(src)
    if not p.is_file():
        raise CheckpointError(f"release checkpoint {str(p)!r} does not exist; download the "
                              "authors' supernet (linked as 'Supernet Weight' in the release's "
                              "README) and pass its path")
    if out is not None and Path(out).resolve() == p.resolve():
        raise CheckpointError(f"--out {str(out)!r} is the release checkpoint itself; write "
                              "the evit checkpoint to another file")
    allowed = _numpy_scalar_globals()
    try:
        with torch.serialization.safe_globals(allowed):
            ck = torch.load(p, map_location=map_location, weights_only=True)
    except TORCH_LOAD_ERRORS as e:
        raise CheckpointError(
            f"{str(p)!r} cannot be read as a release checkpoint ({_load_error(e)}); it is "
            "truncated, corrupt, or holds pickled objects other than tensors and plain values "
            "(evit never unpickles those)") from None
    if not isinstance(ck, dict):
        raise CheckpointError(f"{str(p)!r} is not a release checkpoint: a {type(ck).__name__}, "
                              "not a dict with 'state_dict' and 'model_ema'")
    if ck.get("format") == FORMAT:
        raise CheckpointError(f"{str(p)!r} is already an evit checkpoint; use it directly")
    slots = {k: ck.get(k) for k in ("state_dict", "model_ema") if ck.get(k) is not None}
    if not slots:
        raise CheckpointError(
            f"{str(p)!r} is not a release checkpoint: it has neither 'state_dict' nor "
            f"'model_ema' (keys: {', '.join(map(str, list(ck)[:8]))})")
    states = {k: _weights(v, k, str(p)) for k, v in slots.items()}
    any_state = states.get("model_ema") or states["state_dict"]
    cls_w = any_state.get("classifer.weight")
    if cls_w is None or cls_w.ndim != 2:
        raise CheckpointError(f"{str(p)!r}: no 'classifer.weight' (the release's classifier) "
                              "found; this is not an ElasticViT release supernet")
    num_classes = int(cls_w.shape[0])
    ref = Supernet(num_classes, layout="release")
    mapped, dropped = {}, 0
    for slot, st in states.items():
        mapped[slot], dropped = _map_weights(st, slot, str(p), ref)
    banks, skipped, reasons = _banks(ck.get("bank"), num_classes)
    extras = {}
    for k, v in (ck.get("extras") if isinstance(ck.get("extras"), dict) else {}).items():
        if isinstance(v, torch.Tensor) and v.numel() == 1:
            v = v.item()
        v = _plain(v)
        if isinstance(v, (int, float, str, bool)):
            extras[str(k)] = v
    report = ImportReport(
        source=str(p), source_sha256=sha256_file(p), epoch=_plain(ck.get("epoch")),
        num_classes=num_classes, ema=("model_ema" in mapped),
        weights="model_ema (the release evaluates these)" if "model_ema" in mapped
        else "state_dict (the file has no EMA weights)",
        tensors=len(ref.state_dict()), dropped_unused=dropped,
        banks=[{"level": b["level"], "entries": len(b["archs"])} for b in banks],
        bank_entries_skipped=skipped, bank_skip_reasons=reasons,
        extras=extras)
    ckpt: dict[str, Any] = {
        "format": FORMAT, "version": RELEASE_LAYOUT_VERSION, "layout": "release",
        "num_classes": num_classes,
        "model": mapped.get("state_dict", mapped.get("model_ema")),
        "banks": banks, "imported_from": dict(report)}
    if "model_ema" in mapped:
        ckpt["ema"] = mapped["model_ema"]
    if out is not None:
        atomic_save(ckpt, out)
    return ckpt, report
