"""A ``benchmark_model``-compatible benchmark on this machine's CPU through ai-edge-litert.

    python -m toolkit.devices.litert_bench --graph=m.tflite --num_threads=1 --num_runs=50 \
        --warmup_runs=5 --min_secs=0 [--enable_op_profiling=true] [--cpu_mask=1]

It reads benchmark_model's flags and prints benchmark_model's output format (``INFO:`` lines,
``count=… p5=… median=… p95=…``, ``Inference timings in us``, op-profiling tables), so the
host device and the loopback test phone are parsed by exactly the code that parses real phones.
``--cpu_mask`` pins the process (the host's equivalent of ``taskset``).

Per-op profiling: the Python interpreter exposes no op profiler, so each operator is cut out of
the graph into a one-op model (weights and shapes kept) and timed on its own with the same
thread count. These are real measurements of each op, without the cache effects of its
neighbours; their sum is close to, not equal to, the whole-model latency.
"""

from __future__ import annotations

import copy
import os
import statistics
import sys
import time

import numpy as np

from .benchmark_model import BenchmarkParseError, parse_flags

BOOL = {"true": True, "1": True, "false": False, "0": False}


def _interpreter(model_path: str | None, content: bytes | None, threads: int, xnnpack: bool):
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    resolver = (
        OpResolverType.AUTO if xnnpack else OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    )
    it = Interpreter(
        model_path=model_path, model_content=content, num_threads=threads,
        experimental_op_resolver_type=resolver,
    )
    it.allocate_tensors()
    rng = np.random.default_rng(0)
    for d in it.get_input_details():
        shape, dtype = d["shape"], d["dtype"]
        if np.issubdtype(dtype, np.floating):
            x = rng.standard_normal(shape).astype(dtype)
        elif dtype == np.bool_:
            x = rng.integers(0, 2, shape).astype(dtype)
        else:
            info = np.iinfo(dtype)
            x = rng.integers(max(info.min, -128), min(info.max, 127), shape).astype(dtype)
        it.set_tensor(d["index"], x)
    return it


def delegation(it) -> tuple[int, int, int]:
    """(delegated nodes, total nodes, partitions) of an allocated interpreter's first
    subgraph, read off its node list: LiteRT appends one DELEGATE node per partition after
    the original nodes. An original node runs inside a partition when its outputs are a
    partition's outputs, or feed only nodes that do (walked in reverse execution order)."""
    ops = it._get_ops_details()
    parts = [o for o in ops if o["op_name"] == "DELEGATE"]
    orig = [o for o in ops if o["op_name"] != "DELEGATE"]
    if not parts:
        return 0, len(orig), 0
    d_out = {int(t) for p in parts for t in p["outputs"]}
    d_in = {int(t) for p in parts for t in p["inputs"]}
    graph_out = {int(d["index"]) for d in it.get_output_details()}
    consumers: dict[int, list[int]] = {}
    for o in orig:
        for t in o["inputs"]:
            consumers.setdefault(int(t), []).append(int(o["index"]))
    inside: dict[int, bool] = {}
    for o in reversed(orig):
        outs = [int(t) for t in o["outputs"]]
        if any(t in d_out for t in outs):
            inside[int(o["index"])] = True
            continue
        users = [u for t in outs for u in consumers.get(t, [])]
        inside[int(o["index"])] = bool(users) and all(inside.get(u, False) for u in users) \
            and not any(t in d_in or t in graph_out for t in outs)
    return sum(inside.values()), len(orig), len(parts)


def _peak_rss_mb() -> float:
    """This process's peak resident set (MB): the kernel's VmHWM, which starts anew at exec
    (getrusage's ru_maxrss does not: it keeps the forking parent's peak)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _time_runs(invoke, n: int, min_secs: float, max_secs: float) -> list[float]:
    samples: list[float] = []
    start = time.perf_counter()
    while True:
        t0 = time.perf_counter()
        invoke()
        samples.append((time.perf_counter() - t0) * 1e6)
        elapsed = time.perf_counter() - start
        if (len(samples) >= n and elapsed >= min_secs) or elapsed >= max_secs:
            return samples


def _fmt(v: float) -> str:
    # benchmark_model prints through std::ostream: 6 significant digits, then e-notation
    return f"{v:.6g}"


def _stats_line(samples: list[float]) -> str:
    s = sorted(samples)

    def pct(p):
        return int(round(s[min(len(s) - 1, int(p / 100 * len(s)))]))

    if len(s) == 1:
        return f"count=1 curr={int(s[0])} p5={int(s[0])} median={int(s[0])} p95={int(s[0])}"
    std = statistics.pstdev(samples)
    return (
        f"count={len(s)} first={int(samples[0])} curr={int(samples[-1])} min={int(s[0])} "
        f"max={int(s[-1])} avg={_fmt(statistics.fmean(samples))} std={int(round(std))} "
        f"p5={pct(5)} median={int(round(statistics.median(s)))} p95={pct(95)}"
    )


# -- per-op profiling --------------------------------------------------------------------------

def single_op_models(content: bytes):
    """Yield (node type, name, one-op .tflite bytes) for every operator of subgraph 0."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    model = schema.ModelT.InitFromPackedBuf(content, 0)
    sg = model.subgraphs[0]
    for op in sg.operators:
        code = model.operatorCodes[op.opcodeIndex]
        op_type = names.get(max(code.builtinCode, code.deprecatedBuiltinCode), "CUSTOM")
        used = [t for t in list(op.inputs) + list(op.outputs) if t >= 0]
        remap = {t: i for i, t in enumerate(dict.fromkeys(used))}
        sub = schema.SubGraphT()
        sub.tensors, buffers = [], [schema.BufferT()]  # buffer 0 is the empty sentinel
        inputs = []
        for old, _new in remap.items():
            t = sg.tensors[old]
            buf = model.buffers[t.buffer] if t.buffer < len(model.buffers) else None
            t2 = copy.copy(t)  # tensors are shared between ops: never edit the original
            if buf is not None and buf.data is not None and len(buf.data) > 0:
                buffers.append(buf)
                t2.buffer = len(buffers) - 1
            else:
                t2.buffer = 0
                if old not in op.outputs:
                    inputs.append(remap[old])
            sub.tensors.append(t2)
        new_op = schema.OperatorT()
        new_op.__dict__.update(op.__dict__)
        new_op.opcodeIndex = 0
        new_op.inputs = [remap[t] if t >= 0 else -1 for t in op.inputs]
        new_op.outputs = [remap[t] for t in op.outputs]
        sub.operators = [new_op]
        sub.inputs, sub.outputs = inputs, [remap[t] for t in op.outputs]
        m2 = schema.ModelT()
        m2.version, m2.description = model.version, b"evit single-op profile"
        m2.operatorCodes, m2.subgraphs, m2.buffers = [code], [sub], buffers
        b = flatbuffers.Builder(1024)
        b.Finish(m2.Pack(b), file_identifier=b"TFL3")
        name = sg.tensors[op.outputs[0]].name
        yield op_type, name.decode() if isinstance(name, bytes) else str(name), bytes(b.Output())


def profile_ops(content: bytes, threads: int, runs: int, xnnpack: bool):
    rows = []
    for op_type, name, blob in single_op_models(content):
        try:
            it = _interpreter(None, blob, threads, xnnpack)
        except (ValueError, RuntimeError) as e:  # an op that cannot run alone: reported
            print(f"WARNING: op {name} ({op_type}) could not be profiled alone: {e}")
            continue
        it.invoke()
        first = _time_runs(it.invoke, 1, 0, 10)[0]
        samples = _time_runs(it.invoke, max(3, runs), 0, 30)
        rows.append((op_type, name, first / 1000, statistics.fmean(samples) / 1000))
    return rows


def _op_tables(rows) -> list[str]:
    total = sum(r[3] for r in rows) or 1.0
    head = ("\t" + "\t".join([
        f"{'[node type]':>24}", f"{'[start]':>17}", f"{'[first]':>9}", f"{'[avg ms]':>9}",
        f"{'[%]':>8}", f"{'[cdf%]':>8}", f"{'[mem KB]':>10}", "[times called]", "[Name]",
    ]))
    out = ["Operator-wise Profiling Info for Regular Benchmark Runs:",
           "============================== Run Order ==============================", head]

    def table(ordered):
        lines, cdf, start = [], 0.0, 0.0
        starts = {}
        for r in rows:
            starts[r[1]] = start
            start += r[3]
        for r in ordered:
            pct = 100 * r[3] / total
            cdf += pct
            lines.append("\t" + "\t".join([
                f"{r[0]:>24}", f"{starts[r[1]]:17.3f}", f"{r[2]:9.3f}", f"{r[3]:9.3f}",
                f"{pct:7.3f}%", f"{cdf:7.3f}%", f"{0.0:10.3f}", f"{1:9d}", f"[{r[1]}]",
            ]))
        return lines

    out += table(rows)
    banner = "=" * 30
    out += ["", f"{banner} Top by Computation Time {banner}", head]
    out += table(sorted(rows, key=lambda r: -r[3])[:10])
    out += ["", f"Number of nodes executed: {len(rows)}",
            "============================== Summary by node type ==============================",
            "\t" + "\t".join([f"{'[Node type]':>24}", "  [count]", "  [avg ms]", "    [avg %]",
                              "    [cdf %]", "  [mem KB]", "[times called]"])]
    by_type: dict[str, list[float]] = {}
    for r in rows:
        by_type.setdefault(r[0], []).append(r[3])
    cdf = 0.0
    for t, v in sorted(by_type.items(), key=lambda kv: -sum(kv[1])):
        pct = 100 * sum(v) / total
        cdf += pct
        out.append("\t" + "\t".join([
            f"{t:>24}", f"{len(v):9d}", f"{sum(v):10.3f}", f"{pct:10.3f}%", f"{cdf:10.3f}%",
            f"{0.0:10.3f}", f"{len(v):9d}",
        ]))
    return out


def _write_csv(path: str, rows) -> None:
    import csv

    total = sum(r[3] for r in rows) or 1.0
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["node type", "first", "avg_ms", "%", "times called", "name"])
        for r in rows:
            w.writerow([r[0], f"{r[2]:.6f}", f"{r[3]:.6f}", f"{100 * r[3] / total:.3f}%", 1, r[1]])


def main(argv: list[str] | None = None) -> int:
    try:
        flags = parse_flags(list(sys.argv[1:] if argv is None else argv))
    except BenchmarkParseError as e:
        print(f"ERROR: {e}")
        return 1
    graph = flags.get("graph")
    if not graph:
        print("ERROR: Please specify the name of your TF Lite input file with --graph")
        return 1
    threads = int(flags.get("num_threads", "-1"))
    threads = (os.cpu_count() or 1) if threads <= 0 else threads
    warmup_runs = int(flags.get("warmup_runs", "1"))
    num_runs = int(flags.get("num_runs", "50"))
    min_secs = float(flags.get("min_secs", "1.0"))
    warm_secs = float(flags.get("warmup_min_secs", "0.5"))
    max_secs = float(flags.get("max_secs", "150"))
    op_prof = BOOL.get(flags.get("enable_op_profiling", "false").lower(), False)
    xnnpack = BOOL.get(flags.get("use_xnnpack", "true").lower(), True)
    if BOOL.get(flags.get("use_gpu", "false").lower(), False):
        print("ERROR: GPU acceleration is not available on this host (LiteRT CPU only).")
        return 1
    if BOOL.get(flags.get("use_nnapi", "false").lower(), False):
        print("ERROR: NNAPI is Android's; this host has no NNAPI (LiteRT CPU only).")
        return 1
    peak_flag = BOOL.get(flags.get("report_peak_memory_footprint", "false").lower(), False)
    rss_start = _peak_rss_mb()
    delay = float(flags.get("evit_extra_delay_us", "0")) / 1e6  # injected slowdown (tests)
    if "cpu_mask" in flags:
        mask = int(flags["cpu_mask"], 16)
        os.sched_setaffinity(0, {i for i in range(mask.bit_length()) if mask >> i & 1})
    print("INFO: STARTING!")
    print(f"INFO: Min num runs: [{num_runs}]")
    print(f"INFO: Num threads: [{threads}]")
    print(f"INFO: Graph: [{graph}]")
    print(f"INFO: Enable op profiling: [{int(op_prof)}]")
    print(f"INFO: #threads used for CPU inference: [{threads}]")
    if not os.path.isfile(graph):
        print(f"ERROR: Could not open '{graph}'.")
        print("ERROR: Benchmarking failed.")
        return 1
    print(f"INFO: Loaded model {graph}")
    t0 = time.perf_counter()
    try:
        it = _interpreter(graph, None, threads, xnnpack)
    except (ValueError, RuntimeError) as e:  # LiteRT: a bad model (load) or graph (allocate)
        print(f"ERROR: Failed to construct interpreter: {e}")
        print("ERROR: Benchmarking failed.")
        return 1
    init_us = (time.perf_counter() - t0) * 1e6
    rss_init = _peak_rss_mb()
    invoke = it.invoke
    if delay > 0:
        def invoke():  # real extra time inside the timed region: an injected regression
            it.invoke()
            end = time.perf_counter() + delay
            while time.perf_counter() < end:
                pass
    if xnnpack:
        print("INFO: Created TensorFlow Lite XNNPACK delegate for CPU.")
        n, total, parts = delegation(it)
        print(f"VERBOSE: Replacing {n} out of {total} node(s) with delegate "
              f"(TfLiteXNNPackDelegate) node, yielding {parts} partitions for subgraph 0.")
    print(f"INFO: The input model file size (MB): {os.path.getsize(graph) / 1e6:.6g}")
    print(f"INFO: Initialized session in {init_us / 1000:.6g}ms.")
    print(f"INFO: Running benchmark for at least {warmup_runs} iterations and at least "
          f"{warm_secs:g} seconds but terminate if exceeding {max_secs:g} seconds.")
    warm = _time_runs(invoke, max(1, warmup_runs), warm_secs, max_secs)
    print(f"INFO: {_stats_line(warm)}")
    print()
    print(f"INFO: Running benchmark for at least {num_runs} iterations and at least "
          f"{min_secs:g} seconds but terminate if exceeding {max_secs:g} seconds.")
    runs = _time_runs(invoke, max(1, num_runs), min_secs, max_secs)
    print(f"INFO: {_stats_line(runs)}")
    print()
    print(f"INFO: Inference timings in us: Init: {int(init_us)}, First inference: {int(warm[0])}, "
          f"Warmup (avg): {_fmt(statistics.fmean(warm))}, "
          f"Inference (avg): {_fmt(statistics.fmean(runs))}")
    rss_end = _peak_rss_mb()  # this process's peak resident set: Python's share included
    print("INFO: Memory footprint delta from the start of the tool (MB): "
          f"init={_fmt(rss_init - rss_start)} overall={_fmt(rss_end - rss_start)}")
    if peak_flag:
        print(f"INFO: Overall peak memory footprint (MB) via periodic monitoring: {_fmt(rss_end)}")
    sys.stdout.flush()
    if op_prof:
        with open(graph, "rb") as f:
            rows = profile_ops(f.read(), threads, min(num_runs, 20), xnnpack)
        print("\n".join(_op_tables(rows)))
        if flags.get("profiling_output_csv_file"):
            _write_csv(flags["profiling_output_csv_file"], rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
