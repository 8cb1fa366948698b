"""What is inside a .tflite: op histogram, custom/Flex ops, XNNPACK coverage, size."""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

__all__ = ["GraphReport", "graph_report"]


@dataclass
class GraphReport:
    path: str
    size_bytes: int
    ops: dict[str, int] = field(default_factory=dict)
    custom_ops: list[str] = field(default_factory=list)
    flex_ops: list[str] = field(default_factory=list)
    subgraphs: int = 1
    fully_xnnpack: bool | None = None  # every op taken by the CPU accelerator (XNNPACK)
    input_shape: list[int] = field(default_factory=list)
    input_dtype: str = ""

    def to_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        ops = ", ".join(f"{k} {v}" for k, v in sorted(self.ops.items(), key=lambda kv: -kv[1]))
        acc = {True: "yes", False: "NO", None: "unknown"}[self.fully_xnnpack]
        return (f"{self.path}: {self.size_bytes / 1e6:.2f} MB, {sum(self.ops.values())} ops "
                f"({ops}); custom {self.custom_ops or 'none'}; Flex {self.flex_ops or 'none'}; "
                f"fully XNNPACK-delegated: {acc}")


def _op_names(buf: bytes) -> tuple[Counter, list[str], int]:
    # LiteRT's own schema: the `tflite` package (2.18) reads op codes past 127 that
    # ai-edge-quantizer writes (builtin_code only) as 0 = ADD
    from ai_edge_litert import schema_py_generated as fb

    names = {v: k for k, v in vars(fb.BuiltinOperator).items() if not k.startswith("_")}
    m = fb.Model.GetRootAsModel(buf, 0)
    codes = []
    for i in range(m.OperatorCodesLength()):
        oc = m.OperatorCodes(i)
        code = max(oc.BuiltinCode(), oc.DeprecatedBuiltinCode())
        if code == fb.BuiltinOperator.CUSTOM:
            codes.append("CUSTOM:" + (oc.CustomCode() or b"?").decode())
        else:
            codes.append(names.get(code, f"BUILTIN_{code}"))
    hist: Counter = Counter()
    for s in range(m.SubgraphsLength()):
        sg = m.Subgraphs(s)
        for j in range(sg.OperatorsLength()):
            hist[codes[sg.Operators(j).OpcodeIndex()]] += 1
    return hist, codes, m.SubgraphsLength()


def _fully_accelerated(path: Path) -> bool | None:
    try:
        from ai_edge_litert.compiled_model import CompiledModel
        from ai_edge_litert.hardware_accelerator import HardwareAccelerator
        from ai_edge_litert.options import CpuOptions, Options

        from converters.runtime import capture_fd2

        with capture_fd2():
            cm = CompiledModel.from_file(str(path), options=Options(
                hardware_accelerators=HardwareAccelerator.CPU,
                cpu_options=CpuOptions(num_threads=1)))
            return bool(cm.is_fully_accelerated())
    except Exception:  # noqa: BLE001 - an older runtime without CompiledModel
        return None


def graph_report(path: str | Path) -> GraphReport:
    p = Path(path)
    buf = p.read_bytes()
    hist, codes, nsub = _op_names(buf)
    custom = sorted({c.split(":", 1)[1] for c in hist if c.startswith("CUSTOM:")})
    from converters.runtime import TFLiteRunner

    r = TFLiteRunner(p)
    return GraphReport(str(p), len(buf), dict(hist), custom,
                       [c for c in custom if c.startswith("Flex")], nsub, _fully_accelerated(p),
                       list(r.input_shape), str(r.inp["dtype"].__name__))
