"""Benchmark suites as YAML: which models, on which devices, in which modes, how often.

    name: smoke
    models:
      - {name: tiny, path: models/tiny.tflite}         # any .tflite (relative to the suite file)
      - {name: t0, named: elasticvit_t0, precision: fp32, num_classes: 10}  # exported for you
      - {name: ref, path: models/ref.tflite, per_layer: false}  # a model's own per_layer
    devices: [host]              # host | all (every attached phone) | profile names | serials
    modes: [default]             # default | a profile mode name | {mask: "70", threads: 1}
    repeats: 3                   # benchmark_model invocations per measurement
    runs: 30                     # timed runs per invocation
    warmup: 5
    per_layer: false             # also profile every op (slowest layers in the report)
    accelerator: cpu             # cpu (XNNPACK) | gpu | nnapi, checked against each device
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml

KEYS = {"name", "models", "devices", "modes", "repeats", "runs", "warmup", "min_secs",
        "per_layer", "timeout", "accelerator"}
ACCELERATORS = ("cpu", "gpu", "nnapi")
MODEL_KEYS = {"name", "path", "named", "precision", "num_classes", "supernet", "per_layer"}
PRECISIONS = ("fp32", "fp16", "int8-dynamic", "int8")


class SuiteError(ValueError):
    pass


@dataclass(frozen=True)
class ModelSpec:
    name: str
    path: str = ""  # a .tflite file
    named: str = ""  # or a named model, exported on first use
    precision: str = "fp32"
    num_classes: int = 1000
    supernet: str = ""
    per_layer: bool | None = None  # None: the suite's per_layer


@dataclass(frozen=True)
class ModeSpec:
    name: str = "default"  # "default" or a profile mode
    mask: str = ""
    threads: int = 0

    @property
    def label(self) -> str:
        return f"{self.mask}/{self.threads}t" if self.mask else self.name


@dataclass
class Suite:
    name: str
    models: list[ModelSpec]
    devices: list[str] = field(default_factory=lambda: ["host"])
    modes: list[ModeSpec] = field(default_factory=lambda: [ModeSpec()])
    repeats: int = 3
    runs: int = 30
    warmup: int = 5
    min_secs: float = 0.0
    per_layer: bool = False
    timeout: float = 300.0
    accelerator: str = "cpu"
    source: str = ""


def _fail(src: str, where: str, value, allowed: str) -> SuiteError:
    return SuiteError(f"{src}: {where} = {value!r} is not valid; {allowed}")


def parse_suite(data: dict, source: str = "<dict>", base: Path | None = None) -> Suite:
    if not isinstance(data, dict):
        raise SuiteError(f"{source}: a suite must be a YAML mapping")
    unknown = set(data) - KEYS
    if unknown:
        raise SuiteError(f"{source}: unknown field(s) {sorted(unknown)}; allowed: {sorted(KEYS)}")
    name = data.get("name")
    if not isinstance(name, str) or not name:
        raise _fail(source, "name", name, "give the suite a name")
    models = []
    from toolkit.zoo import list_models

    for i, m in enumerate(data.get("models") or []):
        if not isinstance(m, dict) or set(m) - MODEL_KEYS:
            raise _fail(source, f"models[{i}]", m, f"a mapping with keys from {sorted(MODEL_KEYS)}")
        if bool(m.get("path")) == bool(m.get("named")):
            raise _fail(source, f"models[{i}]", m, "give exactly one of path or named")
        path = str(m.get("path") or "")
        if path and base is not None and not Path(path).is_absolute():
            path = str((base / path).resolve())
        if path and not Path(path).is_file():
            raise _fail(source, f"models[{i}].path", path, "the .tflite file must exist")
        if m.get("named") and m["named"] not in list_models():
            raise _fail(source, f"models[{i}].named", m["named"],
                        f"choose one of {', '.join(list_models())}")
        precision = str(m.get("precision", "fp32"))
        if precision not in PRECISIONS:
            raise _fail(source, f"models[{i}].precision", precision, f"one of {PRECISIONS}")
        per_layer = m.get("per_layer")
        if per_layer is not None and not isinstance(per_layer, bool):
            raise _fail(source, f"models[{i}].per_layer", per_layer,
                        "true or false (leave it out for the suite's per_layer)")
        models.append(ModelSpec(str(m.get("name") or m.get("named") or Path(path).stem), path,
                                str(m.get("named") or ""), precision,
                                int(m.get("num_classes", 1000)), str(m.get("supernet") or ""),
                                per_layer))
    if not models:
        raise _fail(source, "models", data.get("models"), "list at least one model")
    names = [m.name for m in models]
    if len(set(names)) != len(names):
        raise _fail(source, "models", names, "model names must be unique")
    devices = [str(d) for d in (data.get("devices") or ["host"])]
    modes = []
    for i, m in enumerate(data.get("modes") or ["default"]):
        if isinstance(m, str):
            modes.append(ModeSpec(m))
        elif isinstance(m, dict) and set(m) <= {"mask", "threads", "name"} and m.get("mask"):
            modes.append(ModeSpec(str(m.get("name", "custom")), str(m["mask"]).lower(),
                                  int(m.get("threads", 1))))
        else:
            raise _fail(source, f"modes[{i}]", m,
                        "a profile mode name, 'default', or {mask: '70', threads: 1}")
    out = Suite(name, models, devices, modes, source=source)
    for key in ("repeats", "runs", "warmup"):
        v = data.get(key, getattr(out, key))
        if not isinstance(v, int) or v < (0 if key == "warmup" else 1):
            raise _fail(source, key, v, "a positive integer")
        setattr(out, key, v)
    v = data.get("min_secs", 0.0)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v <= 60:
        raise _fail(source, "min_secs", v, "seconds each invocation runs at least, 0-60")
    out.min_secs = float(v)
    out.per_layer = bool(data.get("per_layer", False))
    acc = data.get("accelerator", "cpu")
    if acc not in ACCELERATORS:
        raise _fail(source, "accelerator", acc, f"one of {', '.join(ACCELERATORS)}")
    out.accelerator = acc
    out.timeout = float(data.get("timeout", 300.0))
    return out


def load_suite(path: str | Path) -> Suite:
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as e:
        raise SuiteError(f"cannot read suite {path}: {e}") from e
    except yaml.YAMLError as e:
        raise SuiteError(f"{path}: not valid YAML ({e})") from e
    return parse_suite(data, str(path), path.parent)
