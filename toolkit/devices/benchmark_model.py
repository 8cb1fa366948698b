"""TFLite/LiteRT ``benchmark_model``: its command line and a parser for every output variant.

Handled: plain lines, ``INFO:`` prefixes, logcat prefixes (``07-14 13:14:52.190 22838 22838 I
tflite  :`` and ``07-08 15:33:58.992 I/tflite  ( 5395):``), TF-era timestamps, scientific
notation (``avg=2.44949e+06``), p5/median/p95 (newer builds), ``count=1 curr=…`` (one warm-up
run), ``(all same)``, the op-profiling tables (with and without the ``[start]`` column) and the
CSV that ``--profiling_output_csv_file`` writes. Fixtures copied from public outputs are in
tests/fixtures/benchmark_model/.
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
_SIZE = re.compile(r"The input model file size \(MB\): (" + _NUM + r")")
_INIT_SESSION = re.compile(r"Initialized session in (" + _NUM + r") ?ms")
_DELEGATED = re.compile(r"Replacing (\d+) out of (\d+) node\(s\) with delegate \((\w+)\)")


class BenchmarkParseError(ValueError):
    """The text is not (complete) benchmark_model output."""


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
    peak_memory_mb: float | None = None
    delegated_nodes: int | None = None
    total_nodes: int | None = None
    delegate: str | None = None
    ops: list[OpStat] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def strip_prefix(line: str) -> str:
    line = line.rstrip("\r\n")
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
    body = body.replace("(all same)", "")
    values = {k: float(v) for k, v in _STAT.findall(body)}
    if "count" not in values:
        return None
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


def parse_output(text: str, require_runs: bool = True) -> BenchmarkOutput:
    """Parse benchmark_model's stdout/stderr (or a logcat capture of the APK's)."""
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
        if (m := _SIZE.search(s)):
            out.model_size_mb = float(m[1])
            continue
        if (m := _INIT_SESSION.search(s)) and out.init_us is None:
            out.init_us = float(m[1]) * 1000
            continue
        if (m := _DELEGATED.search(s)):
            out.delegated_nodes, out.total_nodes, out.delegate = int(m[1]), int(m[2]), m[3]
            continue
        if "Profiling Info for Benchmark Initialization" in s:
            in_init = True
            continue
        if "Operator-wise Profiling Info for Regular Benchmark Runs" in s:
            in_init = False
            continue
        if s.startswith("[node type]") or s.startswith("[Node type]"):
            table_header = [c.strip().strip("[]") for c in line.split("\t") if c.strip()]
            continue
        if table_header is not None and "\t" in line:
            if table_header[0] != "node type" or in_init:
                continue  # summary-by-type tables and initialization profiles
            cells = [c.strip() for c in line.split("\t") if c.strip()]
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
    if require_runs and out.runs is None:
        hint = f" (errors: {'; '.join(out.errors[:3])})" if out.errors else ""
        raise BenchmarkParseError(
            "no timing line for the benchmark runs was found in the output; the binary may have "
            f"crashed or been interrupted{hint}"
        )
    return out


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
        if not self.use_xnnpack:
            a.append("--use_xnnpack=false")
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
