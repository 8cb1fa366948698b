"""benchmark_model output parsing, on outputs copied from public sources (fixtures/SOURCES.md)."""

from pathlib import Path

import pytest

from toolkit.devices.benchmark_model import (
    BenchmarkFlags,
    BenchmarkParseError,
    parse_flags,
    parse_op_csv,
    parse_output,
    strip_prefix,
)

FIX = Path(__file__).parent / "fixtures" / "benchmark_model"


def load(name: str):
    return parse_output((FIX / name).read_text())


def test_info_prefix_percentiles_and_xnnpack_op_table():
    o = load("arm_litert_xnnpack_info.txt")
    assert (o.warmup.count, o.warmup.median) == (1055, 463)
    r = o.runs
    assert (r.count, r.first, r.min, r.max, r.avg, r.std) == (2112, 463, 442, 979, 464.545, 13)
    assert (r.p5, r.median, r.p95) == (460, 462, 478)
    assert r.center_us == 462  # the median when printed
    assert o.init_us == pytest.approx(4478)
    assert o.model_size_mb == pytest.approx(3.27774)
    assert (o.delegated_nodes, o.total_nodes, o.delegate) == (1, 1, "TfLiteXNNPackDelegate")
    # AllocateTensors is not an op; the "Top by Computation Time" rows are not double counted
    assert [op.node_type for op in o.ops] == [
        "LiteRT::Run[buffer registration]", "Static Reshape (NC)",
        "Fully Connected (NC, PF32) GEMM", "LiteRT::Run[Buffer sync]"]
    gemm = o.ops[2]
    assert (gemm.avg_ms, gemm.first_ms, gemm.percent, gemm.start_ms) == (0.382, 0.538, 92.948, None)


def test_logcat_threadtime_without_running_lines():
    o = load("logcat_threadtime_apk.txt")
    assert o.warmup.count == 3 and o.runs.count == 25
    assert o.runs.median == 141253 and o.runs.avg == 145528
    assert (o.init_us, o.first_us, o.inference_avg_us) == (92318, 235158, 145528)
    assert (o.memory_init_mb, o.memory_overall_mb) == (54.2852, 73.4102)
    assert (o.delegated_nodes, o.total_nodes) == (539, 548)


def test_logcat_time_prefix_and_scientific_notation():
    o = load("logcat_time_sci.txt")
    assert o.warmup.count == 1 and o.warmup.curr == 2732148 and o.warmup.first is None
    assert o.runs.avg == pytest.approx(2.71985e6)
    assert o.warmup_avg_us == pytest.approx(2.73215e6)
    assert o.inference_avg_us == pytest.approx(2.71985e6)
    assert o.memory_overall_mb == 337


def test_plain_output_with_init_profile_and_operator_tables():
    o = load("nxp_mcux_op_profiling.txt")
    assert o.warmup.count == 6746 and o.runs.count == 2254
    assert o.runs.median is None and o.runs.center_us == 58.311  # falls back to the mean
    assert o.init_us == 2450
    # 8 ops from Run Order; the repeated (top-by-time) table and AllocateTensors are skipped
    assert len(o.ops) == 8
    assert [op.name for op in o.ops[:2]] == ["[dense_1/BiasAdd]:ld", "[dense_1/Tanh]:ld"]
    assert o.ops[0].start_ms == 0.0 and o.ops[7].avg_ms == 0.006
    assert o.ops[2].times_called == 0


def test_scientific_runs_and_banners_with_init_section():
    o = load("yocto_riscv_op_profiling.txt")
    assert o.warmup.count == 1 and o.warmup.curr == 3512391
    assert o.runs.avg == pytest.approx(2.95034e6) and o.runs.std == 109798
    assert len(o.ops) == 7 and o.ops[0].node_type == "CONV_2D"
    assert o.ops[0].avg_ms == 60.957 and o.ops[-1].name.endswith(":30")
    assert o.memory_init_mb == pytest.approx(4.21094)


def test_old_build_uses_profiler_summary_and_average_timings():
    o = load("tf_contrib_readme_2018.txt")
    assert o.runs.count == 50 and o.runs.avg == 79732 and o.runs.std == 1929
    assert (o.warmup_avg_us, o.init_us, o.inference_avg_us) == (83235, 38467, 79760.9)
    assert len(o.ops) == 6 and o.ops[-1].node_type == "SOFTMAX"


def test_all_same_and_prefix_stripping():
    text = ("INFO: Running benchmark for at least 1 iterations\n"
            "INFO: count=1 curr=147\n"
            "INFO: Running benchmark for at least 3 iterations\n"
            "INFO: count=3 curr=19598656(all same)\n")
    o = parse_output(text)
    assert o.runs.count == 3 and o.runs.curr == 19598656
    assert strip_prefix("07-14 13:14:52.190 22838 22838 I tflite  : count=3") == "count=3"
    assert strip_prefix("I/tflite  ( 5395): x") == "x"


def test_truncated_or_garbage_output_is_an_error():
    with pytest.raises(BenchmarkParseError, match="no timing line"):
        parse_output("\x00\x17 Xz !! count=abc\nINFO: <<random noise>>\n")
    text = (FIX / "arm_litert_xnnpack_info.txt").read_text()
    cut = text[: text.index("INFO: count=1055")]  # killed during the warm-up
    with pytest.raises(BenchmarkParseError):
        parse_output(cut)
    err = parse_output("ERROR: Failed to apply XNNPACK delegate.\nSegmentation fault\n",
                       require_runs=False)
    assert len(err.errors) == 2


def test_op_csv_and_flags_round_trip():
    csv_text = ("node type,first,avg_ms,%,times called,name\n"
                "CONV_2D,0.012,0.010,50.0%,1,conv a\n"
                "MEAN,0.002,0.010,50.0%,1,\"mean, b\"\n")
    ops = parse_op_csv(csv_text)
    assert [(o.node_type, o.name, o.avg_ms) for o in ops] == [
        ("CONV_2D", "conv a", 0.01), ("MEAN", "mean, b", 0.01)]
    f = BenchmarkFlags(graph="/data/local/tmp/a b.tflite", num_threads=4, enable_op_profiling=True,
                       profiling_output_csv_file="/x.csv")
    flags = parse_flags(f.argv())
    assert flags["graph"] == "/data/local/tmp/a b.tflite" and flags["num_threads"] == "4"
    assert flags["min_secs"] == "0" and flags["enable_op_profiling"] == "true"


# -- real outputs of many versions: fixtures/benchmark_model/real (figures read by hand) ----

REAL = FIX / "real"
HEADER = ("source", "version", "kind", "expected", "note")
SCALARS = {"init_us": "init_us", "first_inference_us": "first_us",
           "warmup_avg_us": "warmup_avg_us", "inference_avg_us": "inference_avg_us",
           "init_session_ms": "init_session_ms", "model_size_mb": "model_size_mb",
           "memory_init_mb": "memory_init_mb", "memory_overall_mb": "memory_overall_mb",
           "peak_init_mb": "peak_init_mb", "peak_overall_mb": "peak_overall_mb",
           "peak_memory_mb": "peak_memory_mb", "delegated_nodes": "delegated_nodes",
           "total_nodes": "total_nodes", "partitions": "partitions",
           "delegate_kernels": "delegate_kernels", "fully_delegated": "fully_delegated"}


def real_fixture(path: Path) -> tuple[dict, str]:
    import json

    lines = path.read_text().split("\n")
    hdr: dict = {}
    i = 0
    while i < len(lines) and any(lines[i].startswith(f"# {k}:") for k in HEADER):
        key, _, value = lines[i][2:].partition(":")
        hdr.setdefault(key, value.strip())
        i += 1
    return {**hdr, "expected": json.loads(hdr["expected"])}, "\n".join(lines[i:])


REAL_FILES = sorted(REAL.glob("*.txt"))


def test_the_real_outputs_span_versions_and_kinds():
    heads = [real_fixture(p)[0] for p in REAL_FILES]
    assert len(heads) >= 25
    stated = {h["version"].split("(")[0].strip() for h in heads
              if not h["version"].startswith("unknown")}
    assert len(stated) >= 6, stated
    kinds = {h["kind"] for h in heads}
    assert {"cpu", "xnnpack", "gpu", "nnapi", "op_profiling", "logcat", "failure"} <= kinds
    reasons = {h["expected"].get("failure") for h in heads} - {None}
    assert {"delegate_failed", "segfault", "truncated", "allocate_tensors", "exec_format",
            "bad_flags"} <= reasons


@pytest.mark.parametrize("path", REAL_FILES, ids=[p.name[:2] for p in REAL_FILES])
def test_real_output_parses_to_the_figures_read_by_hand(path):
    hdr, text = real_fixture(path)
    exp = hdr["expected"]
    if "failure" in exp:  # a failed run is recognised, with its reason, never a result
        with pytest.raises(BenchmarkParseError) as e:
            parse_output(text)
        assert e.value.reason == exp["failure"], str(e.value)
        if "failure_text" in exp:
            assert any(exp["failure_text"] in ln for ln in e.value.lines), e.value.lines
        return
    o = parse_output(text)
    for section in ("runs", "warmup", "profiler"):
        got = getattr(o, section)
        for k, v in exp.get(section, {}).items():
            assert got is not None and getattr(got, k) == pytest.approx(v), f"{section}.{k}"
    for k, attr in SCALARS.items():
        if k in exp:
            assert getattr(o, attr) == pytest.approx(exp[k]), k
    if "delegate" in exp:
        assert o.applied == (None if exp["delegate"] == "none" else exp["delegate"])
    for k, v in exp.get("litert", {}).items():
        assert o.litert.get(k) == pytest.approx(v), f"litert.{k}"
    # evit leaves AllocateTensors out of the op list (it is no op of the graph)
    want_ops = [w for w in exp.get("ops", []) if w["node_type"] != "AllocateTensors"]
    for got, want in zip(o.ops, want_ops):
        assert (got.node_type, got.avg_ms) == (want["node_type"], pytest.approx(want["avg_ms"]))
    assert len(o.ops) >= len(want_ops)


@pytest.mark.parametrize("line,reason", [
    ("ERROR: Could not open '/data/local/tmp/nope.tflite'.", "missing_model"),
    ("ERROR: Didn't find op for builtin opcode 'GELU' version '2'", "unsupported_op"),
    ("Killed", "killed"),
    ("/system/bin/sh: ./benchmark_model: not executable: 64-bit ELF file", "exec_format"),
    ("Segmentation fault ", "segfault"),
    ("ERROR: Failed to apply GPU delegate.", "delegate_failed"),
    ("ERROR: Benchmarking failed.", "benchmark_failed"),
])
def test_failure_kinds_without_a_public_sample(line, reason):
    """Kinds no public output in fixtures/real shows, in benchmark_model's wording (its
    source's messages); a timing line printed before them does not make them a result."""
    text = ("INFO: STARTING!\nINFO: count=5 first=1 curr=1 min=1 max=1 avg=1 std=0\n"
            f"{line}\n")
    with pytest.raises(BenchmarkParseError) as e:
        parse_output(text)
    assert e.value.reason == reason


def test_unconsumed_flags_are_a_warning_not_a_failure():
    text = ("INFO: Unconsumed cmdline flags: --report_peak_memory_footprint=true\n"
            "INFO: count=5 first=1 curr=1 min=1 max=1 avg=1 std=0\n")
    assert parse_output(text).runs.avg == 1
