"""TFLite/LiteRT ``benchmark_model``: its command line and a parser for every output variant.

Handled: plain lines, ``INFO:`` prefixes, logcat prefixes (``07-14 13:14:52.190 22838 22838 I
tflite  :`` and ``07-08 15:33:58.992 I/tflite  ( 5395):``), TF-era timestamps, scientific
notation (``avg=2.44949e+06``), p5/median/p95 (newer builds), ``count=1 curr=…`` (one warm-up
run), ``(all same)``, the op-profiling tables (with and without the ``[start]`` column) and the
CSV that ``--profiling_output_csv_file`` writes, the LiteRT 2.x ``BENCHMARK RESULTS`` block,
both peak-memory lines, the delegate actually applied (``Replacing N out of M node(s)``,
``Explicitly applied X delegate, ... completely/partially executed``) and indented copies (docs).
A run that failed (missing model, unsupported op, a delegate that failed, a crash, a kill, an
exec error, bad flags, truncated output) raises :class:`BenchmarkParseError` with its
``reason``, never a result. Fixtures copied from public outputs are in
tests/fixtures/benchmark_model/ (``real/``: 48 outputs of TF 1.x to LiteRT 2.x).
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, field

# Prefixes put in front of benchmark_model lines by logging, logcat or the TF logger.
_PREFIXES = [
    # logcat threadtime
    re.compile(r"^\d\d-\d\d \d\d:\d\d:\d\d\.\d+\s+\d+\s+\d+\s+[VDIWEF]\s+[\w.]+\s*:\s?"),
    re.compile(r"^\d\d-\d\d \d\d:\d\d:\d\d\.\d+\s+[VDIWEF]/[\w.]+\s*\(\s*\d+\):\s?"),  # time
    re.compile(r"^[VDIWEF]/[\w.]+\s*\(\s*\d+\):\s?"),  # brief
    re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+: [IWE] [\w/.]+:\d+\]\s?"),  # TF logging
    re.compile(r"^(?:INFO|WARNING|ERROR|VERBOSE): (?:\[[^\]]+\] )?"),
]
_NUM = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_STAT = re.compile(r"(\w+)=(" + _NUM + r")")
_TIMINGS = re.compile(
    r"Inference timings in us: Init: (?P<init>" + _NUM + r"), First inference: (?P<first>" + _NUM
    + r"), Warmup \(avg\): (?P<warm>" + _NUM + r"), Inference \(avg\): (?P<inf>" + _NUM + r")"
)
_OLD_TIMINGS = re.compile(
    r"Average inference timings in us: Warmup: (?P<warm>" + _NUM + r"), Init: (?P<init>" + _NUM
    + r"), (?:no stats|Inference): (?P<inf>" + _NUM + r")"
)
_RUNNING = re.compile(r"Running benchmark for at least (\d+) iterations")
_MEMORY = re.compile(r"Memory footprint delta from the start of the tool \(MB\): init=(" + _NUM
                     + r") overall=(" + _NUM + r")")
_PEAK = re.compile(r"Overall peak memory footprint \(MB\) via periodic monitoring: (" + _NUM + r")")
_PEAK_LINE = re.compile(r"^Peak memory footprint \(MB\): init=(" + _NUM + r") overall=(" + _NUM
                        + r")")
_APPLIED = re.compile(r"Explicitly applied (\w+) delegate, and the model graph will be "
                      r"(completely|partially) executed by the delegate"
                      r"(?: w/ (\d+) delegate kernels)?")
_PARTITIONS = re.compile(r"yielding (\d+) partitions")
_LITERT = {"Model initialization": "init_ms", "Warmup (first)": "warmup_first_ms",
           "Warmup (avg)": "warmup_avg_ms", "Inference (avg)": "inference_avg_ms",
           "Inference (min)": "inference_min_ms", "Inference (max)": "inference_max_ms",
           "Inference (std)": "inference_std_ms"}
_LITERT_LINE = re.compile(r"^(" + "|".join(re.escape(k) for k in _LITERT) + r"):\s+(" + _NUM
                          + r")(?: ms)?(?: \((\d+) runs\))?")
# delegate class names in "Replacing ... with delegate (NAME)" -> what evit calls them
_DELEGATE_NAMES = {"tflitexnnpackdelegate": "xnnpack", "tflitegpudelegatev2": "gpu",
                   "tflitegpudelegate": "gpu", "tflitennapidelegate": "nnapi",
                   "tflitehexagondelegate": "hexagon", "xnnpack": "xnnpack", "gpu": "gpu",
                   "nnapi": "nnapi", "hexagon": "hexagon"}
# (reason, pattern): what makes a run a failure, most specific first
FAILURES: tuple[tuple[str, re.Pattern], ...] = (
    ("exec_format", re.compile(r"not executable|Exec format error|cannot execute binary", re.I)),
    ("segfault", re.compile(r"Segmentation fault|SIGSEGV|signal 11\b", re.I)),
    ("killed", re.compile(r"^Killed\b|\bsignal 9\b|SIGKILL|Out of memory: Killed", re.I)),
    ("missing_model", re.compile(r"Could not open '|Failed to mmap model|Failed to load model|"
                                 r"Please specify the name of your TF Lite input file")),
    ("unsupported_op", re.compile(r"Didn't find op for builtin opcode|Encountered unresolved "
                                  r"custom op|Op type not registered|Unsupported custom op")),
    ("gpu_build_failed", re.compile(r"Failed to build program executable")),
    ("delegate_failed", re.compile(
        r"Failed to apply \w+ delegate|\(Tf\w*Delegate\w*\) failed to (?:invoke|prepare)|"
        r"Couldn't get node and registration info|delegate \w* ?failed to apply|"
        r"Restored original execution plan after delegate application failure", re.I)),
    ("allocate_tensors", re.compile(r"Failed to allocate tensors")),
    # ("Unconsumed cmdline flags" is a warning: builds older than a flag ignore it and run)
    ("bad_flags", re.compile(r"must match the number of items in --input_layer|Unknown command "
                             r"line flag|Invalid value for flag")),
    ("benchmark_failed", re.compile(r"Benchmarking failed")),
)
_SIZE = re.compile(r"The input model file size \(MB\): (" + _NUM + r")")
_INIT_SESSION = re.compile(r"Initialized session in (" + _NUM + r") ?ms")
_DELEGATED = re.compile(r"Replacing (\d+) out of (\d+) node\(s\) with delegate \((\w+)\)")


class BenchmarkParseError(ValueError):
    """The text is not (complete, successful) benchmark_model output; ``reason`` names why:
    one of the :data:`FAILURES` reasons, "truncated" or "no_output"."""

    def __init__(self, message: str, reason: str = "no_output", line: str = "",
                 lines: list[str] | None = None):
        super().__init__(message)
        self.reason, self.line, self.lines = reason, line, lines or ([line] if line else [])


@dataclass
class RunStats:
    """One ``count=… first=… avg=…`` line, in microseconds."""

    count: int
    first: float | None = None
    curr: float | None = None
    min: float | None = None
    max: float | None = None
    avg: float | None = None
    std: float | None = None
    p5: float | None = None
    median: float | None = None
    p95: float | None = None

    @property
    def center_us(self) -> float:
        """The run's typical latency: the median when printed (newer builds), else the mean."""
        for v in (self.median, self.avg, self.curr):
            if v is not None:
                return v
        raise BenchmarkParseError("a timing line with neither median, avg nor curr")


@dataclass
class OpStat:
    node_type: str
    name: str
    avg_ms: float
    first_ms: float | None = None
    start_ms: float | None = None
    percent: float | None = None
    mem_kb: float | None = None
    times_called: int | None = None


@dataclass
class BenchmarkOutput:
    warmup: RunStats | None = None
    runs: RunStats | None = None
    init_us: float | None = None
    first_us: float | None = None
    warmup_avg_us: float | None = None
    inference_avg_us: float | None = None
    model_size_mb: float | None = None
    memory_init_mb: float | None = None
    memory_overall_mb: float | None = None
    peak_memory_mb: float | None = None  # "Overall peak ... via periodic monitoring"
    peak_init_mb: float | None = None  # "Peak memory footprint (MB): init=... overall=..."
    peak_overall_mb: float | None = None
    init_session_ms: float | None = None
    delegated_nodes: int | None = None
    total_nodes: int | None = None
    partitions: int | None = None
    delegate: str | None = None  # the class named in "Replacing ... with delegate (NAME)"
    applied: str | None = None  # the delegate that ran part of the graph: xnnpack, gpu, ...
    fully_delegated: bool | None = None
    delegate_kernels: int | None = None
    profiler: RunStats | None = None  # the op profiler's "Timings (microseconds)" line
    litert: dict[str, float] = field(default_factory=dict)  # LiteRT 2.x BENCHMARK RESULTS
    ops: list[OpStat] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def peak_mb(self) -> float | None:
        """The peak memory figure the output gives (monitored peak first)."""
        for v in (self.peak_memory_mb, self.peak_overall_mb, self.memory_overall_mb):
            if v is not None:
                return v
        return None


def strip_prefix(line: str) -> str:
    line = line.rstrip("\r\n").lstrip(" ")  # docs indent copied output
    for _ in range(3):  # e.g. logcat + INFO: + [file:line]
        for p in _PREFIXES:
            m = p.match(line)
            if m:
                line = line[m.end():]
                break
        else:
            return line
    return line


def _stats(line: str) -> RunStats | None:
    body = line.split("Timings (microseconds):", 1)[-1].strip()
    if not body.startswith("count="):
        return None
    same = "(all same)" in body
    body = body.replace("(all same)", "")
    values = {k: float(v) for k, v in _STAT.findall(body)}
    if "count" not in values:
        return None
    if same and "curr" in values:  # old builds: every run took curr
        for k in ("first", "min", "max", "avg"):
            values.setdefault(k, values["curr"])
    kw = {k: values.get(k) for k in ("first", "curr", "min", "max", "avg", "std", "p5", "median",
                                     "p95")}
    return RunStats(count=int(values["count"]), **kw)


def _parse_op_row(cells: list[str], header: list[str]) -> OpStat | None:
    row = dict(zip(header, cells))
    try:
        return OpStat(
            node_type=row["node type"],
            name=row.get("Name", ""),
            avg_ms=float(row["avg ms"]),
            first_ms=float(row["first"]) if "first" in row else None,
            start_ms=float(row["start"]) if "start" in row else None,
            percent=float(row["%"].rstrip("%")) if "%" in row else None,
            mem_kb=float(row["mem KB"]) if "mem KB" in row else None,
            times_called=int(float(row["times called"])) if "times called" in row else None,
        )
    except (KeyError, ValueError):
        return None


def classify_failure(text: str) -> tuple[str, list[str]] | None:
    """(reason, the lines saying so) when the output shows a failed run, else None; the most
    specific reason wins (the order of :data:`FAILURES`)."""
    lines = [strip_prefix(raw).strip() for raw in text.splitlines()]
    for reason, pat in FAILURES:
        hits = [ln for ln in lines if pat.search(ln)]
        if hits:
            return reason, hits
    return None


def parse_output(text: str, require_runs: bool = True) -> BenchmarkOutput:
    """Parse benchmark_model's stdout/stderr (or a logcat capture of the APK's); a failed or
    incomplete run raises :class:`BenchmarkParseError` with its reason. A text holding several
    runs (each opens with ``STARTING!``) gives its last complete one."""
    if require_runs:
        failed = classify_failure(text)
        if failed:
            reason, lines = failed
            raise BenchmarkParseError(f"benchmark_model failed ({reason}): {lines[0][:200]}",
                                      reason, lines[0], lines)
    segments, cur = [], []
    for raw in text.splitlines():
        if strip_prefix(raw).strip() == "STARTING!" and cur:
            segments.append(cur)
            cur = []
        cur.append(raw)
    segments.append(cur)
    parsed = [_parse_run("\n".join(seg)) for seg in segments]
    done = [o for o in parsed if o.runs is not None and _complete(o.runs)]
    out = done[-1] if done else parsed[-1]
    if require_runs and out.runs is not None and not _complete(out.runs):
        raise BenchmarkParseError("the output ends inside the benchmark runs' timing line "
                                  f"(count={out.runs.count}, no average): it is truncated",
                                  "truncated")
    if require_runs and out.runs is None:
        hint = f" (errors: {'; '.join(out.errors[:3])})" if out.errors else ""
        raise BenchmarkParseError(
            "no timing line for the benchmark runs was found in the output; the binary may have "
            f"crashed or been interrupted{hint}", "truncated" if text.strip() else "no_output"
        )
    return out


def _parse_run(text: str) -> BenchmarkOutput:
    """The figures of one run's output (no checks)."""
    out = BenchmarkOutput()
    phase = None  # "warmup" or "runs": which "Running benchmark" block we are in
    in_init = False  # inside the "Profiling Info for Benchmark Initialization" tables
    table_header: list[str] | None = None
    profiler_timings: RunStats | None = None
    seen_ops: set[str] = set()
    unlabelled: list[RunStats] = []
    for raw in text.splitlines():
        line = strip_prefix(raw)
        s = line.strip()
        if not s:
            table_header = None
            continue
        low = raw.lower()
        if (
            "error" in low or "segmentation fault" in low or "aborted" in low
            or ("failed" in low and "benchmark" in low)
        ):
            out.errors.append(s)
        if _RUNNING.search(s):
            phase = "warmup" if phase is None else "runs"
            continue
        if s.startswith("count="):
            stats = _stats(s)
            if stats is not None and phase:
                setattr(out, phase, stats)
            elif stats is not None:
                unlabelled.append(stats)  # logcat captures may lack the "Running" lines
            continue
        if s.startswith("Timings (microseconds):"):
            if not in_init:
                profiler_timings = _stats(s)
                out.profiler = profiler_timings
            continue
        if (m := _TIMINGS.search(s)):
            out.init_us, out.first_us = float(m["init"]), float(m["first"])
            out.warmup_avg_us, out.inference_avg_us = float(m["warm"]), float(m["inf"])
            continue
        if (m := _OLD_TIMINGS.search(s)):
            out.init_us, out.warmup_avg_us = float(m["init"]), float(m["warm"])
            out.inference_avg_us = float(m["inf"])
            continue
        if (m := _MEMORY.search(s)):
            out.memory_init_mb, out.memory_overall_mb = float(m[1]), float(m[2])
            continue
        if (m := _PEAK.search(s)):
            out.peak_memory_mb = float(m[1])
            continue
        if (m := _PEAK_LINE.search(s)):
            out.peak_init_mb, out.peak_overall_mb = float(m[1]), float(m[2])
            continue
        if (m := _LITERT_LINE.search(s)):
            out.litert[_LITERT[m[1]]] = float(m[2])
            if m[3]:
                out.litert[_LITERT[m[1]].replace("_avg_ms", "_runs")] = int(m[3])
            continue
        if (m := _APPLIED.search(s)):
            out.applied = _DELEGATE_NAMES.get(m[1].lower(), m[1].lower())
            out.fully_delegated = m[2] == "completely"
            if m[3]:
                out.delegate_kernels = int(m[3])
            continue
        if (m := _SIZE.search(s)):
            out.model_size_mb = float(m[1])
            continue
        if (m := _INIT_SESSION.search(s)):
            out.init_session_ms = float(m[1])
            if out.init_us is None:
                out.init_us = float(m[1]) * 1000
            continue
        if (m := _DELEGATED.search(s)):
            out.delegated_nodes, out.total_nodes, out.delegate = int(m[1]), int(m[2]), m[3]
            if int(m[1]) > 0:
                out.applied = _DELEGATE_NAMES.get(m[3].lower(), m[3].lower())
                out.fully_delegated = int(m[1]) == int(m[2])
            if (p := _PARTITIONS.search(s)):
                out.partitions = int(p[1])
            continue
        if "Profiling Info for Benchmark Initialization" in s:
            in_init = True
            continue
        if "Operator-wise Profiling Info for Regular Benchmark Runs" in s:
            in_init = False
            continue
        if s.startswith("[node type]") or s.startswith("[Node type]"):
            table_header = [c.strip().strip("[]") for c in _cells(line)]
            continue
        if table_header is not None and ("\t" in line or "  " in s):
            if table_header[0] != "node type" or in_init:
                continue  # summary-by-type tables and initialization profiles
            cells = _cells(line)
            op = _parse_op_row(cells, table_header)
            if op is not None and op.node_type != "AllocateTensors":
                key = f"{op.name}|{op.start_ms}|{op.node_type}"
                if key not in seen_ops:  # "Top by Computation Time" repeats Run Order rows
                    seen_ops.add(key)
                    out.ops.append(op)
            continue
    if out.runs is None and unlabelled:  # the last one is the runs, the one before the warm-up
        out.runs = unlabelled[-1]
        out.warmup = unlabelled[-2] if len(unlabelled) > 1 else out.warmup
    if out.runs is None and profiler_timings is not None:
        out.runs = profiler_timings  # old builds print only the profiler's summary line
    if out.runs is None and "inference_avg_ms" in out.litert:  # LiteRT's results block alone
        lt = out.litert
        us = {k: lt[f"inference_{k}_ms"] * 1000 for k in ("avg", "min", "max", "std")
              if f"inference_{k}_ms" in lt}
        out.runs = RunStats(count=int(lt.get("inference_runs", 0)), **us)
    if out.applied is None:  # op profiles name the delegate's nodes
        for op in out.ops:
            name = _DELEGATE_NAMES.get(op.node_type.strip().lower())
            if name and op.node_type.lower().startswith("tflite"):
                out.applied = name
                break
    return out


def _cells(line: str) -> list[str]:
    """Table cells: tab-separated, or 2+ spaces apart where a copy turned tabs into spaces."""
    parts = line.split("\t") if "\t" in line else re.split(r"\s{2,}", line.strip())
    return [c.strip() for c in parts if c.strip()]


def _complete(r: RunStats) -> bool:
    """A stats line that was printed whole: it has its average (or median); one run prints
    only ``curr``."""
    return r.avg is not None or r.median is not None or (r.count == 1 and r.curr is not None)


def parse_op_csv(text: str) -> list[OpStat]:
    """The CSV written by ``--profiling_output_csv_file`` (runtime section)."""
    ops: list[OpStat] = []
    reader = csv.reader(io.StringIO(text))
    header = None
    for row in reader:
        if not row:
            header = None
            continue
        cells = [c.strip() for c in row]
        if cells[0].lower() == "node type":
            header = cells
            continue
        if header is None:
            continue
        rec = dict(zip(header, cells))
        try:
            ops.append(OpStat(
                node_type=rec["node type"],
                name=rec.get("name", rec.get("Name", "")),
                avg_ms=float(rec.get("avg_ms", rec.get("avg ms", "nan"))),
                first_ms=float(rec["first"]) if rec.get("first") else None,
                start_ms=float(rec["start"]) if rec.get("start") else None,
                percent=float(rec.get("%", "nan").rstrip("%")) if rec.get("%") else None,
                mem_kb=float(rec["mem KB"]) if rec.get("mem KB") else None,
                times_called=int(float(rec["times called"])) if rec.get("times called") else None,
            ))
        except (KeyError, ValueError):
            continue
    return ops


@dataclass(frozen=True)
class BenchmarkFlags:
    """The flags evit passes to benchmark_model (everything else stays at its default)."""

    graph: str
    num_threads: int = 1
    warmup_runs: int = 5
    num_runs: int = 50
    min_secs: float = 0.0  # run exactly num_runs: comparable across devices
    warmup_min_secs: float = 0.0
    max_secs: float = 150.0
    enable_op_profiling: bool = False
    profiling_output_csv_file: str | None = None
    use_gpu: bool = False
    use_xnnpack: bool = True
    use_nnapi: bool = False
    report_peak_memory: bool = True  # --report_peak_memory_footprint (older builds ignore it)

    def argv(self) -> list[str]:
        a = [
            f"--graph={self.graph}",
            f"--num_threads={self.num_threads}",
            f"--warmup_runs={self.warmup_runs}",
            f"--num_runs={self.num_runs}",
            f"--min_secs={self.min_secs:g}",
            f"--warmup_min_secs={self.warmup_min_secs:g}",
            f"--max_secs={self.max_secs:g}",
        ]
        if self.enable_op_profiling:
            a.append("--enable_op_profiling=true")
            if self.profiling_output_csv_file:
                a.append(f"--profiling_output_csv_file={self.profiling_output_csv_file}")
        if self.use_gpu:
            a.append("--use_gpu=true")
        if self.use_nnapi:
            a.append("--use_nnapi=true")
        if not self.use_xnnpack:
            a.append("--use_xnnpack=false")
        if self.report_peak_memory:
            a.append("--report_peak_memory_footprint=true")
        return a


def parse_flags(argv: list[str]) -> dict[str, str]:
    """``--name=value`` / ``--name value`` flags as benchmark_model reads them."""
    flags: dict[str, str] = {}
    i = 0
    while i < len(argv):
        a = argv[i]
        if not a.startswith("--"):
            raise BenchmarkParseError(f"unexpected argument {a!r}")
        if "=" in a:
            k, v = a[2:].split("=", 1)
        else:
            k, v = a[2:], (argv[i + 1] if i + 1 < len(argv) else "true")
            i += 1
        flags[k] = v
        i += 1
    return flags
