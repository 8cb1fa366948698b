"""Run .tflite (ai-edge-litert, XNNPACK) and .onnx (onnxruntime) models on this CPU."""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from pathlib import Path

import numpy as np

__all__ = ["TFLiteRunner", "OnnxRunner", "runner_for", "capture_fd2"]


@contextlib.contextmanager
def capture_fd2():
    """Capture C-level stderr (the LiteRT runtime logs delegate creation there)."""
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as f:
        os.dup2(f.fileno(), 2)
        box: dict[str, str] = {}
        try:
            yield box
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            f.seek(0)
            box["text"] = f.read().decode(errors="replace")


class _Runner:
    def __call__(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def time(self, x: np.ndarray, runs: int = 50, warmup: int = 5) -> list[float]:
        """Milliseconds of each of ``runs`` invocations after ``warmup`` untimed ones."""
        for _ in range(warmup):
            self(x)
        ts = []
        for _ in range(runs):
            t = time.perf_counter()
            self(x)
            ts.append((time.perf_counter() - t) * 1e3)
        return ts


class TFLiteRunner(_Runner):
    def __init__(self, path: str | Path, threads: int = 1, xnnpack: bool = True):
        from ai_edge_litert.interpreter import Interpreter, OpResolverType

        kw = {} if xnnpack else {
            "experimental_op_resolver_type": OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES}
        with capture_fd2() as log:
            self.interp = Interpreter(model_path=str(path), num_threads=threads, **kw)
            self.interp.allocate_tensors()
        self.log = log["text"]
        self.xnnpack = "XNNPACK delegate" in self.log
        self.inp = self.interp.get_input_details()[0]
        self.out = self.interp.get_output_details()[0]

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(int(v) for v in self.inp["shape"])

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x)
        dt = self.inp["dtype"]
        if dt != np.float32 and x.dtype != dt:  # integer input fed floats
            scale, zero = self.inp["quantization"]
            if scale > 0:  # a quantized input: real values in, quantized here
                x = x / scale + zero
            x = np.clip(np.round(x), np.iinfo(dt).min, np.iinfo(dt).max).astype(dt)
        self.interp.set_tensor(self.inp["index"], x)
        self.interp.invoke()
        y = self.interp.get_tensor(self.out["index"])
        if self.out["dtype"] != np.float32:
            scale, zero = self.out["quantization"]
            y = (y.astype(np.float32) - zero) * scale
        return y


class OnnxRunner(_Runner):
    def __init__(self, path: str | Path, threads: int = 1):
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        self.sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        self.name = self.sess.get_inputs()[0].name
        self.input_shape = tuple(self.sess.get_inputs()[0].shape)
        self.dtype = np.uint8 if self.sess.get_inputs()[0].type == "tensor(uint8)" else np.float32

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.sess.run(None, {self.name: np.asarray(x, dtype=self.dtype)})[0]


def runner_for(path: str | Path, threads: int = 1):
    p = Path(path)
    if p.suffix == ".tflite":
        return TFLiteRunner(p, threads)
    if p.suffix == ".onnx":
        return OnnxRunner(p, threads)
    raise ValueError(f"{str(p)!r}: unknown model format; expected .tflite or .onnx")
