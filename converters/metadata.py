"""Metadata carried inside the model file, so it survives the trip into an app.

* ``.tflite``: a named entry of the flatbuffer's ``metadata`` table (the place TFLite keeps
  ``min_runtime_version`` and the support library's ``TFLITE_METADATA``), whose buffer holds
  UTF-8 JSON. Runtimes ignore entries they do not know.
* ``.onnx``: ``metadata_props`` (string key/value pairs), one key holding the same JSON.

Both are read back without running the model, and the file is treated as untrusted input.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from converters.fileio import atomic_write

__all__ = ["METADATA_NAME", "MetadataError", "embed_metadata", "read_metadata"]

METADATA_NAME = "evit"  # the entry (TFLite) / key (ONNX) evit writes
_MAX_BYTES = 1 << 20  # metadata is a few KB; a larger entry is not ours


class MetadataError(ValueError):
    pass


def _encode(meta: dict[str, Any]) -> bytes:
    blob = json.dumps(meta, sort_keys=True, separators=(",", ":")).encode()
    if len(blob) > _MAX_BYTES:
        raise MetadataError(f"metadata is {len(blob)} bytes; at most {_MAX_BYTES}")
    return blob


def _decode(blob: bytes, where: str) -> dict[str, Any]:
    if len(blob) > _MAX_BYTES:
        raise MetadataError(f"{where}: the {METADATA_NAME!r} metadata entry is {len(blob)} "
                            f"bytes (at most {_MAX_BYTES}); not written by evit")
    try:
        meta = json.loads(blob.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise MetadataError(f"{where}: the {METADATA_NAME!r} metadata entry is not JSON "
                            f"({e})") from None
    if not isinstance(meta, dict):
        raise MetadataError(f"{where}: the {METADATA_NAME!r} metadata entry is not a JSON "
                            "object")
    return meta


# --------------------------------------------------------------------------- TFLite

def _tflite_embed(path: Path, blob: bytes) -> None:
    import numpy as np
    from ai_edge_litert import schema_py_generated as fb

    from converters.tflite_edit import load_model, save_model

    try:
        model, size = load_model(path)
    except ValueError as e:
        raise MetadataError(f"{e}; cannot embed metadata (the sidecar .json still has it)"
                            ) from None

    def name(m) -> str:
        return m.name.decode() if isinstance(m.name, bytes) else str(m.name)

    model.metadata = list(model.metadata or [])
    ours = [m for m in model.metadata if name(m) == METADATA_NAME]
    data = np.frombuffer(blob, dtype=np.uint8)
    if ours and 0 <= ours[0].buffer < len(model.buffers):  # re-embed: reuse our buffer
        model.buffers[ours[0].buffer].data = data
        model.metadata = [m for m in model.metadata if m is ours[0] or name(m) != METADATA_NAME]
    else:
        model.metadata = [m for m in model.metadata if name(m) != METADATA_NAME]
        b = fb.BufferT()
        b.data = data
        model.buffers.append(b)
        entry = fb.MetadataT()
        entry.name = METADATA_NAME
        entry.buffer = len(model.buffers) - 1
        model.metadata.append(entry)
    save_model(model, path, size + len(blob))


def _tflite_read(path: Path) -> dict[str, Any] | None:
    from ai_edge_litert import schema_py_generated as fb

    buf = path.read_bytes()
    if len(buf) < 8 or buf[4:8] != b"TFL3":
        raise MetadataError(f"{path} is not a .tflite file (no TFL3 identifier)")
    try:
        m = fb.Model.GetRootAs(buf, 0)
        for i in range(m.MetadataLength()):
            entry = m.Metadata(i)
            if (entry.Name() or b"").decode("utf-8", "replace") != METADATA_NAME:
                continue
            idx = entry.Buffer()
            if not 0 <= idx < m.BuffersLength():
                raise MetadataError(f"{path}: metadata entry points at buffer {idx}, the file "
                                    f"has {m.BuffersLength()}")
            data = m.Buffers(idx).DataAsNumpy()
            return _decode(bytes(data) if not isinstance(data, int) else b"", str(path))
    except MetadataError:
        raise
    except Exception as e:  # noqa: BLE001 - a damaged flatbuffer raises anything
        raise MetadataError(f"{path}: cannot read its flatbuffer ({type(e).__name__}: "
                            f"{e})") from None
    return None


# --------------------------------------------------------------------------- ONNX

def _onnx_embed(path: Path, blob: bytes) -> None:
    import onnx

    model = onnx.load(str(path))
    keep = [p for p in model.metadata_props if p.key != METADATA_NAME]
    del model.metadata_props[:]
    model.metadata_props.extend(keep)
    model.metadata_props.add(key=METADATA_NAME, value=blob.decode())
    atomic_write(path, model.SerializeToString())


def _onnx_read(path: Path) -> dict[str, Any] | None:
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as e:  # noqa: BLE001 - protobuf's DecodeError and friends
        raise MetadataError(f"{path} is not an ONNX model ({type(e).__name__}: {e})") from None
    for p in model.metadata_props:
        if p.key == METADATA_NAME:
            return _decode(p.value.encode(), str(path))
    return None


# --------------------------------------------------------------------------- API

def _kind(path: Path) -> str:
    kind = path.suffix.lower().lstrip(".")
    if kind not in ("tflite", "onnx"):
        raise MetadataError(f"{path}: unknown model type {path.suffix!r}; evit reads metadata "
                            "from .tflite and .onnx files")
    return kind


def embed_metadata(path: str | Path, meta: dict[str, Any]) -> None:
    """Write ``meta`` (JSON-serialisable) into the model file at ``path`` (rewritten
    atomically; an earlier evit entry is replaced, other entries are kept)."""
    p = Path(path)
    blob = _encode(meta)
    (_tflite_embed if _kind(p) == "tflite" else _onnx_embed)(p, blob)


def read_metadata(path: str | Path) -> dict[str, Any] | None:
    """evit's metadata embedded in a .tflite / .onnx file; None when the file has none."""
    p = Path(path)
    kind = _kind(p)
    if not p.is_file():
        raise MetadataError(f"no file at {p}")
    return (_tflite_read if kind == "tflite" else _onnx_read)(p)
