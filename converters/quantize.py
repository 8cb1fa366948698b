"""Quantize a float .tflite in place of a second conversion: fp16, dynamic int8, full int8.

The model is converted once (fp32) and the flatbuffer is quantized with ai-edge-quantizer,
op by op, with evit's recipes. The recipes keep float exactly the ops that XNNPACK has no
int8 kernel for (they would split the graph into CPU islands) and the few whose int8
rounding costs top-1 agreement; every other op runs in int8. What was kept float and why is
in :data:`INT8_FLOAT_OPS` and returned with the file, so the sidecar can record it.
"""

from __future__ import annotations

import contextlib
import io
import logging
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from converters.fileio import atomic_write

__all__ = ["QUANTIZED_PRECISIONS", "INT8_FLOAT_OPS", "DYNAMIC_FLOAT_OPS", "quantize_tflite"]

QUANTIZED_PRECISIONS = ("fp16", "int8-dynamic", "int8")

# Full int8: ops kept float, each for a reason measured on ai-edge-litert 2.3 (XNNPACK).
INT8_FLOAT_OPS = {
    "HARD_SWISH": "no int8 XNNPACK kernel",
    "SOFTMAX": "no int8 XNNPACK kernel",
    "BATCH_MATMUL": "no int8 x int8 XNNPACK kernel (attention q@k, attn@v)",
    "AVERAGE_POOL_2D": "no int8 XNNPACK kernel",
    "ADD": "residual sums: per-tensor int8 drowns the branch in the skip's range",
    "LayerNorm": "MEAN/SQUARED_DIFFERENCE/RSQRT/SUB have no int8 XNNPACK kernel",
    "INPUT": "the file keeps the float (or uint8) input an app feeds",
    "OUTPUT": "float logits out",
    "classifier": "the op producing the logits: their calibrated range would clip",
}
# Dynamic int8 (int8 weights, activations quantized per inference): XNNPACK runs hybrid
# CONV_2D/FULLY_CONNECTED but not hybrid depthwise convs, which would fall off the delegate.
DYNAMIC_FLOAT_OPS = {"DEPTHWISE_CONV_2D": "no hybrid (dynamic-range) XNNPACK kernel"}

# LayerNorm ops by module name (op output tensors are named after the module path):
# torch's LayerNorm, and the affine-free form an evit export leaves (toolkit.export)
_NORM_SCOPES = "LayerNorm|NormalizeOnly"
_CLIP_GRID = np.linspace(0.3, 1.0, 15)  # fractions of the observed range tried per tensor
_SAMPLES_PER_TENSOR = 4096              # values kept per tensor per image for the range fit


@contextlib.contextmanager
def _quiet():
    """ai-edge-quantizer logs a line per op and a size summary per call: absl's logger is
    raised to ERROR for the call and restored after it."""
    log = logging.getLogger("absl")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.setLevel(level)


def _static_op_config():
    from ai_edge_quantizer import qtyping

    T = qtyping.TensorQuantizationConfig
    return qtyping.OpQuantizationConfig(
        activation_tensor_config=T(num_bits=8, symmetric=False,
                                   granularity=qtyping.QuantGranularity.TENSORWISE),
        weight_tensor_config=T(num_bits=8, symmetric=True,
                               granularity=qtyping.QuantGranularity.CHANNELWISE),
        compute_precision=qtyping.ComputePrecision.INTEGER, explicit_dequantize=False)


def _output_producer(path: str) -> str:
    """Name of the tensor the graph's output is computed into (the classifier's output)."""
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=path)
    return it.get_output_details()[0]["name"]


def _recipe(q, precision: str, src: str) -> None:
    from ai_edge_quantizer import qtyping
    from ai_edge_quantizer.algorithm_manager import AlgorithmName

    OP = qtyping.TFLOperationName
    keep = AlgorithmName.NO_QUANTIZE
    if precision == "fp16":
        q.update_quantization_recipe(".*", OP.ALL_SUPPORTED, qtyping.OpQuantizationConfig(
            weight_tensor_config=qtyping.TensorQuantizationConfig(
                num_bits=16, symmetric=True, granularity=qtyping.QuantGranularity.TENSORWISE,
                dtype=qtyping.TensorDataType.FLOAT),
            compute_precision=qtyping.ComputePrecision.FLOAT, explicit_dequantize=True),
            algorithm_key=AlgorithmName.FLOAT_CASTING)
        return
    if precision == "int8-dynamic":
        q.update_quantization_recipe(".*", OP.ALL_SUPPORTED, qtyping.OpQuantizationConfig(
            weight_tensor_config=qtyping.TensorQuantizationConfig(
                num_bits=8, symmetric=True, granularity=qtyping.QuantGranularity.CHANNELWISE),
            compute_precision=qtyping.ComputePrecision.INTEGER, explicit_dequantize=False))
        for op in DYNAMIC_FLOAT_OPS:
            q.update_quantization_recipe(".*", OP(op), algorithm_key=keep)
        return
    q.update_quantization_recipe(".*", OP.ALL_SUPPORTED, _static_op_config())
    for op in INT8_FLOAT_OPS:
        if op.isupper():
            q.update_quantization_recipe(".*", OP(op), algorithm_key=keep)
    q.update_quantization_recipe(_NORM_SCOPES, OP.ALL_SUPPORTED, algorithm_key=keep)
    # an op's scope is its output tensors' names, each followed by ";"
    q.update_quantization_recipe("(^|;)" + re.escape(_output_producer(src)) + ";",
                                 OP.ALL_SUPPORTED, algorithm_key=keep)


def _hard_swish(v: np.ndarray) -> np.ndarray:
    return v * np.clip(v + 3.0, 0.0, 6.0) / 6.0


def _fit_ranges(src: str, samples: list[dict], qsvs: dict) -> dict:
    """Per activation tensor, the clipping range (within the observed min/max) whose 8-bit
    grid has the least squared error on the calibration images: min/max alone spends the
    grid on rare extremes; a fitted range keeps the bulk of values fine-grained. A tensor
    read only by hard swish (kept float) is fitted on the error after the activation, and
    never spends grid below -3, where hard swish is 0."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    it = Interpreter(model_path=src, experimental_preserve_all_tensors=True,
                     experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    it.allocate_tensors()
    inp = it.get_input_details()[0]
    details = it.get_tensor_details()
    index = {t["name"]: t["index"] for t in details}
    readers: dict[int, set[str]] = {}
    for op in it._get_ops_details():  # noqa: SLF001 - the only op-graph view LiteRT offers
        for t in op["inputs"]:
            readers.setdefault(int(t), set()).add(op["op_name"])
    names = [k for k in qsvs if k in index]
    rng = np.random.default_rng(0)
    kept: dict[str, list[np.ndarray]] = {k: [] for k in names}
    lo = {k: np.inf for k in names}
    hi = {k: -np.inf for k in names}
    for s in samples:
        it.set_tensor(inp["index"], next(iter(s.values())))
        it.invoke()
        for k in names:
            v = it.get_tensor(index[k]).ravel()
            v = v[np.isfinite(v) & (np.abs(v) < 1e30)]  # padding constants etc. are no range
            if v.size == 0:
                continue
            lo[k], hi[k] = min(lo[k], float(v.min())), max(hi[k], float(v.max()))
            kept[k].append(v if v.size <= _SAMPLES_PER_TENSOR
                           else v[rng.integers(0, v.size, _SAMPLES_PER_TENSOR)])
    out = dict(qsvs)
    for k in names:
        if not kept[k]:
            continue
        v = np.concatenate(kept[k]).astype(np.float64)
        act = readers.get(index[k]) == {"HARD_SWISH"}
        low = max(lo[k], -3.0) if act else lo[k]
        ref = _hard_swish(v) if act else v
        best = (np.inf, low, hi[k])
        for a in _CLIP_GRID if hi[k] > low and v.size >= 64 else ():
            mn, mx = min(low * a, 0.0), max(hi[k] * a, 0.0)
            step = (mx - mn) / 255
            qv = np.clip(np.round((v - mn) / step), 0, 255) * step + mn
            err = np.mean(((_hard_swish(qv) if act else qv) - ref) ** 2)
            if err < best[0]:
                best = (err, mn, mx)
        shape = np.shape(qsvs[k]["min"])
        out[k] = {**qsvs[k], "min": np.full(shape, best[1], np.float32),
                  "max": np.full(shape, best[2], np.float32)}
    return out


def _calibration_samples(it, src: str, calibration) -> tuple[str, str, list[dict]]:
    """(signature, input name, one feed per image), each image checked against the input."""
    sig = it.get_signature_list()
    if len(sig) != 1 or len(next(iter(sig.values()))["inputs"]) != 1:
        raise ValueError(f"{src}: int8 calibration handles a model with one signature and "
                         f"one input; this one has {sig}")
    key = next(iter(sig))
    name = sig[key]["inputs"][0]
    inp = it.get_input_details()[0]
    shape, dtype = tuple(int(v) for v in inp["shape"]), np.dtype(inp["dtype"])
    samples = []
    for i, x in enumerate(calibration):
        x = np.asarray(x)
        if x.shape != shape or x.dtype != dtype:
            raise ValueError(f"calibration image {i}: {x.dtype}{list(x.shape)}, the model "
                             f"takes {dtype}{list(shape)} (one image per array, as the file's "
                             "input)")
        samples.append({name: x})
    return key, name, samples


def quantize_tflite(src: str | Path, out: str | Path, precision: str,
                    calibration: Sequence[np.ndarray] | None = None) -> Path:
    """Write ``out``: the float ``src`` quantized to ``precision`` (fp16, int8-dynamic, int8).

    ``calibration`` (int8 only): input arrays as the file takes them, one image each (batch
    1). Written to a temporary name and renamed, so ``out`` is never half-written.
    """
    if precision not in QUANTIZED_PRECISIONS:
        raise ValueError(f"precision = {precision!r} is not a quantized precision; choose one "
                         f"of {', '.join(QUANTIZED_PRECISIONS)}")
    if precision == "int8" and (calibration is None or len(calibration) == 0):
        raise ValueError("precision int8 (full integer) needs calibration images: pass a few "
                         "dozen representative inputs")
    from ai_edge_quantizer import calibrator, quantizer
    from ai_edge_quantizer.utils import qsv_utils

    src, out = str(src), Path(out)
    q = quantizer.Quantizer(src)
    q.load_quantization_recipe([])
    _recipe(q, precision, src)
    sink = io.StringIO()
    with _quiet(), contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
        qsvs = None
        if precision == "int8":
            from ai_edge_litert.interpreter import Interpreter

            key, name, samples = _calibration_samples(Interpreter(model_path=src), src,
                                                      calibration)
            # min/max over all images (the library's default, a moving average of per-image
            # ranges, clips the rarer large activations and logits)
            cal = calibrator.Calibrator(q._float_model_buffer, num_threads=1,  # noqa: SLF001
                                        qsv_update_func=qsv_utils.min_max_update)
            cal.calibrate({key: samples[:1]}, q._recipe_manager)  # noqa: SLF001
            qsvs = _fit_ranges(src, samples, cal.get_model_qsvs())
        result = q.quantize(qsvs)
    atomic_write(out, bytes(result.quantized_model))
    return out
