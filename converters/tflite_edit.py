"""Small, checked edits of a converted .tflite flatbuffer (object API, atomic rewrite).

``uint8_input_via_dequantize``: litert-torch lowers ``x.to(float32)`` on a uint8 input to a
CAST, which XNNPACK does not take, so the first op of an app-ready model would run on the
reference kernels and split the graph. A DEQUANTIZE with scale 1 and zero point 0 computes
the same values (float(x) exactly, for every byte) and XNNPACK does take it.
"""

from __future__ import annotations

from pathlib import Path

from converters.fileio import atomic_write

__all__ = ["load_model", "save_model", "uint8_input_via_dequantize"]


def load_model(path: str | Path):
    """The model as the flatbuffer object API's ``ModelT`` (and the file size). Buffers stored
    after the flatbuffer (offset/size, as ai-edge-quantizer writes them) are read inline, so
    a repack keeps them."""
    import numpy as np
    from ai_edge_litert import schema_py_generated as fb

    buf = Path(path).read_bytes()
    if len(buf) < 8 or buf[4:8] != b"TFL3":
        raise ValueError(f"{path} is not a .tflite file (no TFL3 identifier)")
    model = fb.ModelT.InitFromPackedBuf(buf, 0)
    for b in model.buffers or []:
        if getattr(b, "offset", 0) > 1:
            end = b.offset + b.size
            if end > len(buf):
                raise ValueError(f"{path}: a buffer at {b.offset}+{b.size} lies past the end "
                                 f"of the file ({len(buf)} bytes)")
            b.data = np.frombuffer(buf, dtype=np.uint8, count=b.size, offset=b.offset)
            b.offset = b.size = 0
    return model, len(buf)


class _AlignedBuilder:
    """A flatbuffers Builder whose byte vectors (the weight buffers) start on 16 bytes, as
    the TFLite converter lays them out (the schema's force_align: 16)."""

    def __new__(cls, size: int):
        import flatbuffers

        class Builder(flatbuffers.Builder):
            def CreateNumpyVector(self, x):  # noqa: N802 - the library's name
                if x.dtype.itemsize != 1 or x.ndim != 1:
                    return super().CreateNumpyVector(x)
                self.StartVector(1, x.size, 16)
                payload = x.tobytes()
                self.head = self.head - len(payload)
                self.Bytes[self.head:self.head + len(payload)] = payload
                self.vectorNumElems = x.size
                return self.EndVector()

        return Builder(size)


def save_model(model, path: str | Path, size_hint: int = 1 << 20) -> None:
    builder = _AlignedBuilder(size_hint + 4096)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    atomic_write(path, bytes(builder.Output()))


def _opcode_index(model, code: int) -> int:
    from ai_edge_litert import schema_py_generated as fb

    for i, oc in enumerate(model.operatorCodes):
        if max(oc.builtinCode, oc.deprecatedBuiltinCode) == code:
            return i
    oc = fb.OperatorCodeT()
    oc.builtinCode, oc.deprecatedBuiltinCode, oc.version = code, min(code, 127), 1
    model.operatorCodes.append(oc)
    return len(model.operatorCodes) - 1


def uint8_input_via_dequantize(path: str | Path) -> int:
    """Turn each CAST uint8 graph input -> float32 into DEQUANTIZE (scale 1, zero point 0);
    returns how many were rewritten (the file is rewritten only if any)."""
    from ai_edge_litert import schema_py_generated as fb

    model, size = load_model(path)
    T, Op = fb.TensorType, fb.BuiltinOperator
    cast = [i for i, oc in enumerate(model.operatorCodes)
            if max(oc.builtinCode, oc.deprecatedBuiltinCode) == Op.CAST]
    done = 0
    for sg in model.subgraphs:
        inputs = set(sg.inputs if sg.inputs is not None else [])
        for op in sg.operators:
            if op.opcodeIndex not in cast or len(op.inputs) != 1:
                continue
            src, dst = sg.tensors[op.inputs[0]], sg.tensors[op.outputs[0]]
            if op.inputs[0] not in inputs or src.type != T.UINT8 or dst.type != T.FLOAT32:
                continue
            q = fb.QuantizationParametersT()
            q.scale, q.zeroPoint, q.quantizedDimension = [1.0], [0], 0
            src.quantization = q
            op.opcodeIndex = _opcode_index(model, Op.DEQUANTIZE)
            op.builtinOptionsType, op.builtinOptions = fb.BuiltinOptions.NONE, None
            done += 1
    if done:
        save_model(model, path, size)
    return done
