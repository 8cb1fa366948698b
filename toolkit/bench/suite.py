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

import re
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


def _name(src: str, where: str, value) -> str:
    """Names become file names in reports: one path component, printable, not hidden."""
    ok = (isinstance(value, str) and 0 < len(value) <= 100 and value.isprintable()
          and not value.startswith(".") and not any(c in value for c in "/\\"))
    if not ok:
        raise _fail(src, where, value, "a name of 1-100 printable characters without / or \\ "
                    "that does not start with a dot")
    return value


def _fail(src: str, where: str, value, allowed: str) -> SuiteError:
    return SuiteError(f"{src}: {where} = {value!r} is not valid; {allowed}")


def parse_suite(data: dict, source: str = "<dict>", base: Path | None = None) -> Suite:
    if not isinstance(data, dict):
        raise SuiteError(f"{source}: a suite must be a YAML mapping")
    unknown = set(data) - KEYS
    if unknown:
        raise SuiteError(f"{source}: unknown field(s) {sorted(unknown)}; allowed: {sorted(KEYS)}")
    name = _name(source, "name", data.get("name"))
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
        precision = m.get("precision", "fp32")
        if precision not in PRECISIONS:
            raise _fail(source, f"models[{i}].precision", precision, f"one of {PRECISIONS}")
        per_layer = m.get("per_layer")
        if per_layer is not None and not isinstance(per_layer, bool):
            raise _fail(source, f"models[{i}].per_layer", per_layer,
                        "true or false (leave it out for the suite's per_layer)")
        nc = m.get("num_classes", 1000)
        if isinstance(nc, bool) or not isinstance(nc, int) or not 1 <= nc <= 100_000:
            raise _fail(source, f"models[{i}].num_classes", nc, "an integer from 1 to 100000")
        mname = _name(source, f"models[{i}].name",
                      m.get("name") or m.get("named") or Path(path).stem)
        models.append(ModelSpec(mname, path, str(m.get("named") or ""), precision, nc,
                                str(m.get("supernet") or ""), per_layer))
    if not models:
        raise _fail(source, "models", data.get("models"), "list at least one model")
    names = [m.name for m in models]
    if len(set(names)) != len(names):
        raise _fail(source, "models", names, "model names must be unique")
    devices = data.get("devices") or ["host"]
    if not isinstance(devices, list):
        raise _fail(source, "devices", devices, "a list: host, all, profile names or serials")
    devices = [_name(source, f"devices[{i}]", str(d)) for i, d in enumerate(devices)]
    modes = []
    raw_modes = data.get("modes") or ["default"]
    if not isinstance(raw_modes, list):
        raise _fail(source, "modes", raw_modes, "a list of modes")
    for i, m in enumerate(raw_modes):
        if isinstance(m, str):
            modes.append(ModeSpec(_name(source, f"modes[{i}]", m)))
        elif isinstance(m, dict) and set(m) <= {"mask", "threads", "name"} and m.get("mask"):
            mask, threads = str(m["mask"]).lower(), m.get("threads", 1)
            if not re.fullmatch(r"(0x)?[0-9a-f]{1,16}", mask) or int(mask, 16) == 0:
                raise _fail(source, f"modes[{i}].mask", m["mask"],
                            "a non-zero CPU mask in hex, e.g. '70' (CPUs 4-6)")
            if isinstance(threads, bool) or not isinstance(threads, int) or not 1 <= threads <= 64:
                raise _fail(source, f"modes[{i}].threads", threads, "an integer from 1 to 64")
            modes.append(ModeSpec(_name(source, f"modes[{i}].name", str(m.get("name", "custom"))),
                                  mask.removeprefix("0x"), threads))
        else:
            raise _fail(source, f"modes[{i}]", m,
                        "a profile mode name, 'default', or {mask: '70', threads: 1}")
    out = Suite(name, models, devices, modes, source=source)
    for key in ("repeats", "runs", "warmup"):
        v = data.get(key, getattr(out, key))
        if isinstance(v, bool) or not isinstance(v, int) or not (
                0 if key == "warmup" else 1) <= v <= 100_000:
            raise _fail(source, key, v, "a positive integer")
        setattr(out, key, v)
    v = data.get("min_secs", 0.0)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v <= 60:
        raise _fail(source, "min_secs", v, "seconds each invocation runs at least, 0-60")
    out.min_secs = float(v)
    v = data.get("per_layer", False)
    if not isinstance(v, bool):
        raise _fail(source, "per_layer", v, "true or false")
    out.per_layer = v
    acc = data.get("accelerator", "cpu")
    if acc not in ACCELERATORS:
        raise _fail(source, "accelerator", acc, f"one of {', '.join(ACCELERATORS)}")
    out.accelerator = acc
    v = data.get("timeout", 300.0)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not 1 <= v <= 86400:
        raise _fail(source, "timeout", v, "seconds one measurement may take, 1-86400")
    out.timeout = float(v)
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
