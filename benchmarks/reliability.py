"""Bad inputs and faults, tried as a hostile or careless user would (issue 20).

Each case runs the real command in a fresh process (a timeout catches a hang), then checks
what it did: the exit status, the first error line, how long it took, and whether the files
that existed before (an earlier run, a store, a checkpoint) are byte for byte intact.

    python benchmarks/reliability.py            # all cases, writes its RESULTS.md section
    python benchmarks/reliability.py -k train   # only cases whose name contains "train"
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
PIXEL4 = ROOT / "device_profiles" / "predictors" / "pixel4.json"
PY = sys.executable
TIMEOUT_S = 300


@dataclass
class Case:
    name: str
    area: str
    setup: Callable[[Path], dict]  # -> {"argv": [...], "keep": [paths], "expect": rc, ...}
    expect_rc: int | tuple = (1, 2)


@dataclass
class Outcome:
    case: Case
    rc: int | None
    seconds: float
    message: str
    kept: bool
    notes: list = field(default_factory=list)

    @property
    def ok(self) -> bool:
        want = self.case.expect_rc if isinstance(self.case.expect_rc, tuple) else (
            self.case.expect_rc,)
        return self.rc in want and self.kept and not any(n.startswith("FAIL") for n in self.notes)


def digest(paths) -> dict:
    out = {}
    for p in paths:
        p = Path(p)
        files = sorted(q for q in p.rglob("*") if q.is_file()) if p.is_dir() else [p]
        for f in files:
            out[str(f)] = hashlib.sha256(f.read_bytes()).hexdigest() if f.exists() else None
    return out


def cli(module: str, *args) -> list[str]:
    return [PY, "-m", module, *map(str, args)]


def py(code: str, *args) -> list[str]:
    return [PY, "-c", code, *map(str, args)]


# -- shared inputs -------------------------------------------------------------------------
_CACHE: dict = {}


def tiny_run() -> Path:
    """One finished 2-step training run, copied per case."""
    if "run" not in _CACHE:
        d = Path(tempfile.mkdtemp(prefix="evit-rel-run-")) / "train"
        subprocess.run(cli("toolkit.cli.train", "--levels", "100", "--batch-size", "4",
                           "--bn-batches", "1", "--eval-images", "16", "--no-progress",
                           "--torch-threads", "1", "--steps", "2", "--out", d), check=True,
                       capture_output=True, cwd=ROOT, timeout=600)
        _CACHE["run"] = d
    return _CACHE["run"]


def copy_run(tmp: Path) -> Path:
    import shutil

    dst = tmp / "train"
    shutil.copytree(tiny_run(), dst)
    return dst


def conv_tflite(tmp: Path) -> Path:
    if "tflite" not in _CACHE:
        import torch

        from converters import convert_tflite

        net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, 2, 1), torch.nn.ReLU(),
                                  torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                                  torch.nn.Linear(8, 4)).eval()
        p = Path(tempfile.mkdtemp(prefix="evit-rel-")) / "conv.tflite"
        convert_tflite(net, (torch.randn(1, 3, 32, 32),), p)
        _CACHE["tflite"] = p
    return _CACHE["tflite"]


def suite(tmp: Path, **extra) -> Path:
    import yaml

    d = {"name": "rel", "models": [{"name": "conv", "path": str(conv_tflite(tmp))}],
         "devices": ["host"], "repeats": 1, "runs": 3, "warmup": 1, **extra}
    p = tmp / "suite.yaml"
    p.write_text(yaml.safe_dump(d))
    return p


def tampered(tmp: Path, how: Callable[[dict], object]) -> Path:
    d = json.loads(PIXEL4.read_text())
    out = how(d)
    p = tmp / "predictor.json"
    p.write_text(json.dumps(d if out is None else out))
    return p


def tree(d: dict) -> tuple[dict, int]:
    t = d["kinds"]["mbconv"]["trees"][3]
    return t, next(i for i, leaf in enumerate(t["leaf"]) if not leaf)


def supernet_ckpt(tmp: Path) -> Path:
    from toolkit.checkpoint import save_supernet
    from toolkit.supernet import Supernet

    p = tmp / "supernet.pt"
    save_supernet(Supernet(10), p, config={"data": None})
    return p


def search_argv(tmp: Path, ckpt: Path, *extra) -> list[str]:
    return cli("toolkit.cli.search", "--budget-mflops", "300", "--population", "2", "--generations",
               "1", "--parents", "2", "--mutations", "1", "--crossovers", "1",
               "--calib-images", "8", "--search-images", "8", "--supernet", ckpt, "--out",
               tmp / "search", *extra)


# -- the cases -----------------------------------------------------------------------------
def predictor_case(name: str, how, expect: str) -> Case:
    def setup(tmp):
        p = tampered(tmp, how)
        return {"argv": cli("toolkit.cli.search", "--latency-ms", "20", "--device", "pixel4",
                            "--predictor", p, "--out", tmp / "s"),
                "expect_in": expect, "absent": [tmp / "s"]}
    return Case(f"predictor: {name}", "predictor", setup, 2)


def _set(path: list, value):
    def how(d):
        t, j = tree(d)
        target = {"left": t["left"], "right": t["right"], "feature": t["feature"],
                  "value": t["value"], "threshold": t["threshold"]}
        if path[0] in target:
            target[path[0]][j if path[1] == "j" else path[1]] = value
        else:
            o = d
            for k in path[:-1]:
                o = o[k]
            o[path[-1]] = value
    return how


def _self_loop(d):
    t, j = tree(d)
    t["left"][j] = j


def _cycle_up(d):
    t, j = tree(d)
    k = t["left"][j]
    while t["leaf"][k]:
        k += 1
    t["right"][k] = j


CASES: list[Case] = [
    predictor_case("a child pointing at its own node (cycle)", _self_loop, ".left["),
    predictor_case("a deeper node pointing back up (cycle)", _cycle_up, ".right["),
    predictor_case("a child index out of range", _set(["right", "j"], 10_000), ".right["),
    predictor_case("a feature index out of range", _set(["feature", "j"], 99), ".feature["),
    predictor_case("an unknown convention", _set(["convention"], "sideways"), "convention"),
    predictor_case("NaN scale", _set(["overhead", "scale"], math.nan), "overhead.scale"),
    predictor_case("negative scale", _set(["overhead", "scale"], -3.0), "overhead.scale"),
    predictor_case("offset that makes latencies negative",
                   _set(["overhead", "offset_ms"], -5000.0), "offset_ms"),
    predictor_case("an infinite leaf value", _set(["value", "j"], math.inf), ".value["),
    predictor_case("a string threshold", _set(["threshold", "j"], "big"), ".threshold"),
    predictor_case("a top-level list", lambda d: [d], "top level"),
    predictor_case("a top-level string", lambda d: "evit", "top level"),
]


def _c(name, area, expect_rc=(1, 2)):
    def deco(fn):
        CASES.append(Case(name, area, fn, expect_rc))
        return fn
    return deco


@_c("predictor: truncated JSON", "predictor", 2)
def _(tmp):
    p = tmp / "p.json"
    p.write_text(PIXEL4.read_text()[:4000])
    return {"argv": cli("toolkit.cli.search", "--latency-ms", "20", "--predictor", p, "--out",
                        tmp / "s"), "expect_in": "not valid JSON", "absent": [tmp / "s"]}


@_c("bench: a mode no device has (modes: [nosuchmode])", "bench", 2)
def _(tmp):
    st = tmp / "b.sqlite"
    return {"argv": cli("toolkit.cli.bench", "--store", st, "run",
                        suite(tmp, modes=["nosuchmode"])), "expect_in": "modes[0]",
            "absent": [st]}


@_c("bench: a worker raising OSError (disk full) mid-run", "bench", 1)
def _(tmp):
    code = ("import sys, toolkit.devices.measure as m\n"
            "def boom(*a, **k): raise OSError(28, 'No space left on device')\n"
            "m.measure = boom\n"
            "from toolkit.cli.bench import main; sys.exit(main(sys.argv[1:]))")
    return {"argv": py(code, "--store", tmp / "b.sqlite", "run", suite(tmp)),
            "expect_in": "0 of 1 job(s) measured", "stream": "out"}


@_c("bench: the SQLite store locked by another process", "bench", 1)
def _(tmp):
    st = tmp / "b.sqlite"
    from toolkit.devices.store import ResultStore

    ResultStore(st).close()
    hold = sqlite3.connect(st, isolation_level=None)
    hold.execute("BEGIN EXCLUSIVE")
    code = ("import sys, toolkit.devices.store as s; s.BUSY_TIMEOUT_S = 1.0\n"
            "from toolkit.cli.bench import main; sys.exit(main(sys.argv[1:]))")
    return {"argv": py(code, "--store", st, "run", suite(tmp)), "expect_in": "locked",
            "stream": "out", "after": lambda: (hold.execute("ROLLBACK"), hold.close())}


for _field, _value, _expect in (("timeout", "soon", "timeout"), ("per_layer", "yes", "per_layer"),
                                ("modes", [{"mask": "zz"}], "mask"), ("devices", "host", "devices"),
                                ("name", "a/b", "name"), ("runs", True, "runs")):
    def _mk(f=_field, v=_value, e=_expect):
        def setup(tmp):
            return {"argv": cli("toolkit.cli.bench", "--store", tmp / "b.sqlite", "run",
                                suite(tmp, **{f: v})), "expect_in": e,
                    "absent": [tmp / "b.sqlite"]}
        return setup
    CASES.append(Case(f"bench suite: {_field}: {_value!r}", "bench", _mk(), 2))


@_c("bench suite: a model named ../../escape (report path)", "bench", 2)
def _(tmp):
    import yaml

    p = tmp / "s.yaml"
    p.write_text(yaml.safe_dump({"name": "s", "models": [
        {"name": "../../escape", "path": str(conv_tflite(tmp))}]}))
    return {"argv": cli("toolkit.cli.bench", "--store", tmp / "b.sqlite", "run", p),
            "expect_in": "models[0].name", "absent": [tmp / "b.sqlite"]}


@_c("bench suite: a YAML python tag (!!python/object/apply:os.system)", "bench", 2)
def _(tmp):
    p = tmp / "s.yaml"
    p.write_text("name: !!python/object/apply:os.system ['touch " + str(tmp / "pwned") + "']\n")
    return {"argv": cli("toolkit.cli.bench", "run", p), "expect_in": "not valid YAML",
            "absent": [tmp / "pwned"]}


@_c("bench: a reused --run-id", "bench", 2)
def _(tmp):
    st = tmp / "b.sqlite"
    s = suite(tmp)
    subprocess.run(cli("toolkit.cli.bench", "--store", st, "run", s, "--run-id", "r1"),
                   check=True, capture_output=True, cwd=ROOT, timeout=300)
    return {"argv": cli("toolkit.cli.bench", "--store", st, "run", s, "--run-id", "r1"),
            "expect_in": "already names a bench run", "keep": [st]}


@_c("bench compare: a baseline entry with median_ms: 'fast'", "bench", 2)
def _(tmp):
    good = {"name": "m", "device": "host", "serial": "h", "mode": "default", "median_ms": 2.0,
            "std_ms": 0.1, "repeats": 3, "runtime": "litert", "binary": "b", "threads": 1,
            "mask": "1"}
    b = tmp / "base.json"
    b.write_text(json.dumps({"format": "evit-bench-baseline",
                             "entries": [{**good, "median_ms": "fast"}]}))
    h = tmp / "head.json"
    h.write_text(json.dumps({"format": "evit-bench-baseline", "entries": [good]}))
    return {"argv": cli("toolkit.cli.bench", "compare", b, h), "expect_in": "median_ms"}


TINY = ["--levels", "100", "--batch-size", "4", "--bn-batches", "1", "--eval-images", "16",
        "--no-progress", "--torch-threads", "1", "--steps", "2"]


@_c("train: a fresh run into a finished run's folder", "train", 2)
def _(tmp):
    run = copy_run(tmp)
    return {"argv": cli("toolkit.cli.train", *TINY, "--out", run), "expect_in": "--overwrite",
            "keep": [run]}


@_c("train: --resume with --overwrite", "train", 2)
def _(tmp):
    run = copy_run(tmp)
    return {"argv": cli("toolkit.cli.train", *TINY, "--out", run, "--resume", "--overwrite"),
            "expect_in": "give one of them", "keep": [run]}


@_c("train: --resume from a truncated last.pt", "train", 2)
def _(tmp):
    run = copy_run(tmp)
    data = (run / "last.pt").read_bytes()
    (run / "last.pt").write_bytes(data[:len(data) // 2])
    return {"argv": cli("toolkit.cli.train", *TINY, "--out", run, "--resume"),
            "expect_in": "corrupt", "keep": [run]}


@_c("train: --resume from a checkpoint carrying a pickle payload", "train", 2)
def _(tmp):
    import pickle

    run = copy_run(tmp)

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {tmp / 'pwned'}",))
    import torch

    torch.save({"format": "evit-supernet", "version": 1, "evil": Evil()}, run / "last.pt",
               pickle_protocol=pickle.DEFAULT_PROTOCOL)
    return {"argv": cli("toolkit.cli.train", *TINY, "--out", run, "--resume"),
            "expect_in": "cannot be read", "keep": [run], "absent": [tmp / "pwned"]}


@_c("train: --overwrite with an 80 MB temp a killed checkpoint write left", "train", 0)
def _(tmp):
    run = copy_run(tmp)
    p = subprocess.Popen([PY, "-c", "pass"])
    p.wait()
    stale = run / f".last.pt.{p.pid}-k1ll3d.tmp"
    with open(stale, "wb") as f:
        f.truncate(80_000_000)
    return {"argv": cli("toolkit.cli.train", *TINY, "--out", run, "--overwrite"),
            "absent": [stale], "note": "the old run deleted as asked; the stale temp swept"}


@_c("checkpoint write killed with -9 mid-write", "train", -9)
def _(tmp):
    target = tmp / "last.pt"
    target.write_bytes(b"the previous checkpoint")
    code = ("import sys, os, signal; from toolkit.fileio import atomic_open\n"
            "with atomic_open(sys.argv[1], 'wb') as f:\n"
            "    f.write(b'x' * 5_000_000); f.flush(); os.kill(os.getpid(), signal.SIGKILL)\n")
    return {"argv": py(code, target), "keep": [target],
            "check": lambda: _swept(tmp), "note": "old file whole; the temp is swept"}


def _swept(folder: Path) -> str:
    from toolkit.fileio import sweep_temps

    removed = sweep_temps(folder)
    return f"sweep removed {len(removed)} temp(s)" if removed else "FAIL: no temp swept"


@_c("a write failing at fsync (disk full) over an existing config.json", "train", 1)
def _(tmp):
    target = tmp / "config.json"
    target.write_text('{"old": true}')
    code = ("import os, sys\n"
            "def full(fd): raise OSError(28, 'No space left on device')\n"
            "os.fsync = full\n"
            "from toolkit.train import TrainConfig\n"
            "try:\n    TrainConfig(seed=3).save(sys.argv[1])\n"
            "except OSError as e:\n    print(e, file=sys.stderr); sys.exit(1)\n")
    return {"argv": py(code, target), "keep": [target], "expect_in": "No space",
            "check": lambda: "no temp left" if len(list(tmp.iterdir())) == 1 else
            "FAIL: a temp was left"}


@_c("two processes saving one predictor file at once", "predictor", 0)
def _(tmp):
    target = tmp / "p.json"
    loop = ("import sys\nfrom toolkit.latency import LatencyPredictor as L\n"
            "p = L.load(sys.argv[2])\nfor _ in range(20): p.save(sys.argv[1])\n")
    both = ("import subprocess, sys\n"
            f"ps = [subprocess.Popen([sys.executable, '-c', {loop!r}, sys.argv[1], sys.argv[2]])"
            " for _ in range(2)]\n"
            "rc = max(p.wait() for p in ps)\n"
            "from toolkit.latency import LatencyPredictor as L; L.load(sys.argv[1])\n"
            "sys.exit(rc)\n")
    return {"argv": py(both, target, PIXEL4),
            "check": lambda: "loads; no temp left" if len(list(tmp.iterdir())) == 1 else
            "FAIL: temps left"}


@_c("search: a folder holding another search (other seed)", "search", 2)
def _(tmp):
    ck = supernet_ckpt(tmp)
    subprocess.run(search_argv(tmp, ck), check=True, capture_output=True, cwd=ROOT, timeout=600)
    return {"argv": search_argv(tmp, ck, "--seed", "5"), "expect_in": "holds another search",
            "keep": [tmp / "search"]}


@_c("search: a damaged search.json", "search", 2)
def _(tmp):
    ck = supernet_ckpt(tmp)
    (tmp / "search").mkdir()
    (tmp / "search" / "search.json").write_text('{"format": "evit-se')
    return {"argv": search_argv(tmp, ck), "expect_in": "damaged", "keep": [tmp / "search"]}


@_c("search: a torn state file", "search", 2)
def _(tmp):
    ck = supernet_ckpt(tmp)
    subprocess.run(search_argv(tmp, ck), check=True, capture_output=True, cwd=ROOT, timeout=600)
    st = next((tmp / "search").glob("state_*.json"))
    st.write_text(st.read_text()[:50])
    return {"argv": search_argv(tmp, ck), "expect_in": "damaged", "keep": [tmp / "search"]}


CAMPAIGN = ["--device", "host", "--kernels", "6", "--subnets", "0", "--no-install", "--runs",
            "2", "--repeats", "1"]


@_c("campaign: a torn campaign.json", "profile", 1)
def _(tmp):
    out = tmp / "camp"
    out.mkdir()
    (out / "campaign.json").write_text('{"device": "host", "conf')
    (out / "kernels.jsonl").write_text('{"code": 1}\n')
    return {"argv": cli("toolkit.cli.profile", *CAMPAIGN, "--out", out),
            "expect_in": "campaign.json is damaged", "keep": [out]}


@_c("campaign: measurements without their campaign.json", "profile", 1)
def _(tmp):
    out = tmp / "camp"
    out.mkdir()
    (out / "kernels.jsonl").write_text('{"code": 1}\n')
    return {"argv": cli("toolkit.cli.profile", *CAMPAIGN, "--out", out),
            "expect_in": "without its campaign.json", "keep": [out]}


@_c("profile: --device nosuchphone (no benchmark binary either)", "profile", 1)
def _(tmp):
    st = tmp / "r.sqlite"
    return {"argv": cli("toolkit.cli.profile", "--device", "nosuchphone", "--store", st),
            "expect_in": "nosuchphone", "absent": [st], "env": {"EVIT_BENCHMARK_MODEL": ""}}


@_c("profile: --model that is not a .tflite", "profile", 1)
def _(tmp):
    st = tmp / "r.sqlite"
    return {"argv": cli("toolkit.cli.profile", "--device", "host", "--tflite", PIXEL4,
                        "--store", st), "expect_in": "not a .tflite", "absent": [st]}


@_c("profile: a model file named $(touch pwned).tflite", "profile", 0)
def _(tmp):
    import shutil

    weird = tmp / "$(touch pwned);.tflite"
    shutil.copy(conv_tflite(tmp), weird)
    return {"argv": cli("toolkit.cli.profile", "--device", "host", "--tflite", weird, "--store",
                        tmp / "r.sqlite", "--runs", "3", "--repeats", "1"),
            "absent": [tmp / "pwned"], "cwd": tmp, "note": "measured; no shell ran the name"}


@_c("export: --out an existing folder", "export", 0)
def _(tmp):
    from toolkit.space import SPACE

    (tmp / "exports").mkdir()
    SPACE.min().save(tmp / "tiny.json")
    return {"argv": cli("toolkit.cli.export", "--arch", tmp / "tiny.json", "--num-classes",
                        "10", "--out", tmp / "exports", "--parity-samples", "2"),
            "check": lambda: "wrote exports/tiny_fp32.tflite" if (
                tmp / "exports" / "tiny_fp32.tflite").is_file() else "FAIL: nothing written"}


@_c("export: --out with the wrong suffix", "export", 2)
def _(tmp):
    return {"argv": cli("toolkit.cli.export", "--model", "elasticvit_t0", "--out",
                        tmp / "m.onnx"), "expect_in": "suffix", "max_s": 15}


@_c("export: a checkpoint without its 'model' entry", "export", 2)
def _(tmp):
    import torch

    p = tmp / "noweights.pt"
    torch.save({"format": "evit-supernet", "version": 1, "num_classes": 10}, p)
    return {"argv": cli("toolkit.cli.export", "--model", "elasticvit_t0", "--supernet", p),
            "expect_in": "holds no 'model' entry", "max_s": 15}


@_c("export: a malformed arch JSON", "export", 2)
def _(tmp):
    p = tmp / "arch.json"
    p.write_text('{"resolution": 224, "stem')
    return {"argv": cli("toolkit.cli.export", "--arch", p), "expect_in": str(p), "max_s": 15}


@_c("export: an arch JSON with a value outside the space", "export", 2)
def _(tmp):
    from toolkit.zoo import get_arch

    d = get_arch("elasticvit_s1").to_dict()
    d["resolution"] = 1000
    p = tmp / "arch.json"
    p.write_text(json.dumps(d))
    return {"argv": cli("toolkit.cli.export", "--arch", p), "expect_in": "resolution",
            "max_s": 15}


@_c("train: --out names a file", "train", 2)
def _(tmp):
    (tmp / "f").write_text("x")
    return {"argv": cli("toolkit.cli.train", *TINY, "--out", tmp / "f"),
            "expect_in": "is a file", "keep": [tmp / "f"], "max_s": 15}


@_c("export: --out inside a path that is a file", "export", 2)
def _(tmp):
    (tmp / "f").write_text("x")
    return {"argv": cli("toolkit.cli.export", "--model", "elasticvit_t0", "--out",
                        tmp / "f" / "m.tflite"), "expect_in": "cannot write into",
            "keep": [tmp / "f"], "max_s": 15}


@_c("export: a checkpoint whose num_classes is 'ten'", "export", 2)
def _(tmp):
    import torch

    from toolkit.supernet import Supernet

    p = tmp / "bad.pt"
    torch.save({"format": "evit-supernet", "version": 1, "num_classes": "ten",
                "model": Supernet(10).state_dict()}, p)
    return {"argv": cli("toolkit.cli.export", "--model", "elasticvit_t0", "--supernet", p),
            "expect_in": "num_classes", "max_s": 20}


@_c("bench report: a stored model named ../../evil (older store)", "bench", 0)
def _(tmp):
    from toolkit.devices.host import HostDevice
    from toolkit.devices.measure import RunSpec, measure
    from toolkit.devices.store import ResultStore

    st = tmp / "b.sqlite"
    with ResultStore(st) as store:
        measure(HostDevice(), str(conv_tflite(tmp)), RunSpec(repeats=1, num_runs=3),
                store=store, meta={"bench_run": "r", "model": "../../evil", "mode": "m"})
    rep = tmp / "deep" / "er" / "rep"
    return {"argv": cli("toolkit.cli.bench", "--store", st, "report", "-o", rep),
            "absent": [tmp / "deep" / "evil", tmp / "evil"], "keep": [st],
            "check": lambda: "every file inside the report folder" if all(
                p.parent == rep for p in rep.rglob("*") if p.is_file()) else "FAIL: escaped"}


def run_case(case: Case, keep_tmp: bool = False) -> Outcome:
    tmp = Path(tempfile.mkdtemp(prefix="evit-rel-"))
    notes = []
    try:
        spec = case.setup(tmp)
    except Exception as e:  # noqa: BLE001
        return Outcome(case, None, 0.0, f"setup failed: {type(e).__name__}: {e}", False)
    before = digest(spec.get("keep", []))
    env = {**os.environ, "EVIT_PREDICTORS": str(tmp / "predictors"), "OMP_NUM_THREADS": "1",
           **spec.get("env", {})}
    t0 = time.perf_counter()
    try:
        r = subprocess.run(spec["argv"], capture_output=True, text=True, timeout=TIMEOUT_S,
                           cwd=spec.get("cwd", ROOT), env=env)
        rc, out, err = r.returncode, r.stdout, r.stderr
    except subprocess.TimeoutExpired:
        rc, out, err = None, "", f"HUNG: no answer in {TIMEOUT_S} s"
    secs = time.perf_counter() - t0
    if "after" in spec:
        spec["after"]()
    text = out if spec.get("stream") == "out" else err
    noise = ("WARNING: All log", "I0000", "W0000", "INFO:", "WARNING:")
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.startswith(noise)]
    err_lines = [ln for ln in lines if "error" in ln.lower() or "FAILED" in ln]
    if rc == 0 and spec.get("stream") != "out":  # the work was done: say what came out
        lines = [ln for ln in out.splitlines() if ln.strip() and not ln.startswith(noise)]
        message = (lines or [""])[0].strip()
    else:
        message = (err_lines or lines or [""])[0].strip()
    message = message.replace(str(tmp), "$TMP")  # the case's own temporary folder
    if "expect_in" in spec and spec["expect_in"] not in text:
        notes.append(f"FAIL: {spec['expect_in']!r} not in the output")
    if "Traceback" in err:
        notes.append("FAIL: a traceback")
    if spec.get("max_s") and secs > spec["max_s"]:
        notes.append(f"FAIL: took {secs:.0f} s (before-work check expected)")
    for p in spec.get("absent", []):
        if Path(p).exists():
            notes.append(f"FAIL: {Path(p).name} exists")
    if "check" in spec:
        notes.append(spec["check"]())
    if spec.get("note"):
        notes.append(spec["note"])
    kept = digest(spec.get("keep", [])) == before
    if not keep_tmp:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    return Outcome(case, rc, secs, message, kept, notes)


# faults on a phone: run as their tests, on the test phone (real mksh and toybox behind the
# real adb server; needs root and Linux >= 6.7), since no phone is attached here
PHONE_TESTS = [
    ("a benchmark that hangs past its timeout, with someone else's benchmark_model running",
     "tests/test_hygiene.py::test_a_timed_out_run_kills_its_own_benchmark_only",
     "ours is killed by its pid (cmdline checked); the other keeps running"),
    ("a benchmark that stops answering", "tests/test_devices.py::test_hung_run_is_killed_by_its_"
     "timeout", "DeviceTimeout; recorded as invalid; no pkill of every benchmark_model"),
    ("the phone vanishes while the per-layer CSV is fetched",
     "tests/test_hygiene.py::test_a_lost_device_is_not_a_missing_op_csv",
     "DeviceGone, not \"no CSV\""),
    ("the phone disconnects mid-run", "tests/test_devices.py::test_disconnect_mid_run_stores_"
     "nothing_valid", "nothing stored as valid; the failure is recorded"),
    ("one of two phones disconnects mid-suite", "tests/test_bench.py::test_several_phones_at_"
     "once_one_disconnecting", "its remaining jobs are failures; exit 1; the other phone's "
     "results stored"),
    ("benchmark_model prints garbage or crashes", "tests/test_devices.py::test_garbage_output_"
     "and_crash_are_invalid", "invalid result with the reason"),
    ("file names and arguments with shell metacharacters", "tests/test_devices.py::test_"
     "security_names_and_arguments_reach_the_device_unchanged", "quoted; reach the phone "
     "unchanged"),
    ("an export that never finishes (evit-demo)", "tests/test_hygiene.py::test_export_waits_"
     "have_a_deadline", "killed at its deadline; DemoError names the log"),
    ("--download-binary without --binary-sha256", "tests/test_hygiene.py::test_unpinned_"
     "download_warns_and_pinned_one_is_cached", "warns it is unpinned, names its sha256; "
     "cached by hash, a pinned rerun downloads nothing"),
]


def phone_rows() -> list[str]:
    ids = [t for _, t, _ in PHONE_TESTS]
    r = subprocess.run([PY, "-m", "pytest", "-q", "-rA", "-p", "no:cacheprovider", *ids],
                       capture_output=True, text=True, cwd=ROOT, timeout=1800)
    status = {}
    for line in r.stdout.splitlines():
        for word in ("PASSED", "FAILED", "SKIPPED", "ERROR"):
            if line.startswith(word + " "):
                status[line.split()[1].split(" ")[0]] = word.lower()
    rows = ["| fault on a phone | test | result | what evit does now |", "|---|---|---|---|"]
    for fault, test, what in PHONE_TESTS:
        rows.append(f"| {fault} | `{test.split('::')[1]}` | {status.get(test, 'not run')} | "
                    f"{what} |")
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-k", default="", help="only cases whose name contains this")
    ap.add_argument("--no-write", action="store_true", help="print, do not write RESULTS.md")
    args = ap.parse_args()
    cases = [c for c in CASES if args.k in c.name]
    results = []
    for i, c in enumerate(cases, 1):
        o = run_case(c)
        results.append(o)
        print(f"[{i}/{len(cases)}] {'ok  ' if o.ok else 'BAD '} rc={o.rc} {o.seconds:5.1f} s "
              f"{c.name}: {o.message[:110]} {'; '.join(o.notes)}", flush=True)
    bad = [o for o in results if not o.ok]
    rows = ["| # | area | bad input or fault | exit | time | what evit does now | earlier "
            "files intact |", "|---|---|---|---|---|---|---|"]
    for i, o in enumerate(results, 1):
        msg = o.message.replace("|", "\\|")
        msg = msg if len(msg) <= 170 else msg[:167] + "..."
        extra = "; ".join(n for n in o.notes if n)
        what = f"{msg}" + (f" ({extra})" if extra else "")
        rows.append(f"| {i} | {o.case.area} | {o.case.name.split(': ', 1)[-1]} | "
                    f"{'hung' if o.rc is None else o.rc} | {o.seconds:.1f} s | {what or '—'} | "
                    f"{'yes' if o.kept else '**no**'} |")
    body = (f"{len(results)} cases, each the real command in a fresh process with a {TIMEOUT_S} s "
            f"limit; {len(results) - len(bad)} behave as intended (exit status, message, "
            "nothing created before the inputs were checked, earlier files byte for byte "
            "intact)" + (f"; **{len(bad)} do not**: " + ", ".join(o.case.name for o in bad)
                         if bad else "") + ". Exit 0 rows are the cases where the right answer "
            "is to do the work (`--overwrite`, a folder as `--out`, a hostile file name).\n\n"
            + "\n".join(rows))
    if not args.k:
        prow = phone_rows()
        body += ("\n\nFaults on a phone, run by their tests on the test phone (`tests/testphone`: "
                 "Android's mksh and toybox behind the real adb server):\n\n" + "\n".join(prow))
        bad += [r for r in prow[2:] if "| passed |" not in r]
    if not args.no_write and not args.k:
        from _results import write_section

        write_section("reliability", "Reliability: bad inputs and faults (issue 20)", body)
    else:
        print(body)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
