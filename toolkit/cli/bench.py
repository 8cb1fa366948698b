"""``evit-bench``: benchmarks on attached phones (or the host), with history and regressions.

    evit-bench run SUITE.yaml [--store runs/bench.sqlite] [--benchmark-binary B] [--fallback-host]
    evit-bench list                                  # bench runs in the store
    evit-bench compare BASE HEAD [--markdown F --junit F --github-json F] [--report-only]
    evit-bench baseline RUN -o baseline.json         # freeze a run as a JSON baseline
    evit-bench report [-o runs/bench_report]         # HTML + Markdown with plots

BASE/HEAD: a run id, ``latest``, ``previous``, or a baseline JSON file. ``compare`` exits 1
when a regression exceeds the noise threshold (``--report-only``: always 0).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def default_store() -> str:
    return os.environ.get("EVIT_BENCH_STORE", os.path.join("runs", "bench.sqlite"))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="evit-bench", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--store", default=default_store(), help="SQLite result store")
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="run a suite")
    r.add_argument("suite")
    r.add_argument("--benchmark-binary", help="benchmark_model for android_aarch64 (phones)")
    r.add_argument("--fallback-host", action="store_true",
                   help="use this machine when none of the suite's phones is attached")
    r.add_argument("--adb-port", type=int, default=None)
    r.add_argument("--run-id", help="name of this run (default: time and git commit)")
    sub.add_parser("list", help="bench runs in the store")
    c = sub.add_parser("compare", help="flag regressions between two runs")
    c.add_argument("base")
    c.add_argument("head")
    c.add_argument("--markdown", help="write the Markdown table here")
    c.add_argument("--junit", help="write JUnit XML here")
    c.add_argument("--github-json", help="write github-action-benchmark JSON (HEAD) here")
    c.add_argument("--min-rel", type=float, default=0.05, help="smallest relative change "
                   "that counts, whatever the noise")
    c.add_argument("--k", type=float, default=3.0, help="noise multiplier")
    c.add_argument("--report-only", action="store_true", help="exit 0 even on regressions")
    b = sub.add_parser("baseline", help="freeze a run as a baseline JSON")
    b.add_argument("run")
    b.add_argument("-o", "--out", required=True)
    rep = sub.add_parser("report", help="HTML and Markdown report with plots")
    rep.add_argument("-o", "--out", default=os.path.join("runs", "bench_report"))
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from toolkit.bench import compare as cmp
    from toolkit.bench.suite import SuiteError
    from toolkit.devices.base import DeviceError
    from toolkit.devices.store import ResultStore, StoreError

    try:
        if args.cmd == "run":
            from toolkit.bench.runner import resolve_devices, run_suite
            from toolkit.bench.suite import load_suite

            suite = load_suite(args.suite)
            binary = None
            if args.benchmark_binary:
                from toolkit.devices.binary import resolve_binary

                binary = resolve_binary(args.benchmark_binary)
            factory = None
            if args.adb_port:
                from toolkit.devices.adb import client

                factory = lambda: client(args.adb_port)  # noqa: E731
            devices = resolve_devices(suite.devices, factory, binary, args.fallback_host,
                                      log=lambda m: print(m, file=sys.stderr))
            s = run_suite(suite, devices, args.store, run_id=args.run_id,
                          log=lambda m: print(m, file=sys.stderr, flush=True))
            print(f"bench run {s.run_id}: {len(s.results)} of {s.expected} job(s) measured on "
                  f"{', '.join(s.devices)}; {len(s.failures)} failure(s); store {args.store}")
            for f in s.failures:
                print(f"  FAILED {f[0]} ({f[1]}) {f[2]} [{f[3]}]: {f[4][:200]}")
            return 0 if s.ok else 1  # a gate never passes on a run that measured less
        store = ResultStore(args.store) if Path(args.store).is_file() else None
        if args.cmd == "list":
            if store is None:
                print(f"no store at {args.store}")
                return 0
            for rid, created, n in cmp.bench_runs(store):
                print(f"{rid}  {created}  {n} result(s)")
            return 0
        if args.cmd == "baseline":
            entries = cmp.load_entries(args.run, store)
            cmp.save_baseline(entries, args.out, args.run)
            print(f"baseline of {len(entries)} entries -> {args.out}")
            return 0
        if args.cmd == "compare":
            base = cmp.load_entries(args.base, store)
            head = cmp.load_entries(args.head, store)
            rows = cmp.compare(base, head, args.min_rel, args.k)
            md = cmp.markdown(rows, args.base, args.head)
            print(md)
            from toolkit.fileio import atomic_write

            if args.markdown:
                atomic_write(args.markdown, md + "\n")
            if args.junit:
                atomic_write(args.junit, cmp.junit(rows))
            if args.github_json:
                atomic_write(args.github_json, cmp.github_benchmark(head))
            regressions = sum(r.status == "regression" for r in rows)
            return 1 if regressions and not args.report_only else 0
        if args.cmd == "report":
            if store is None:
                raise StoreError(f"no result store at {args.store}; run `evit-bench run` first")
            from toolkit.bench.report import write_report

            for path in write_report(store, args.out):
                print(path)
            return 0
    except (SuiteError, DeviceError, StoreError, ValueError) as e:
        print(f"evit-bench: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
