"""``evit-bench``: benchmarks on attached phones (or the host), with history and regressions.

    evit-bench run SUITE.yaml [--store runs/bench.sqlite] [--benchmark-binary B] [--fallback-host]
    evit-bench list [--json]                         # bench runs in the store
    evit-bench compare BASE HEAD [--markdown F --junit F --github-json F] [--report-only] [--json]
    evit-bench baseline RUN -o baseline.json         # freeze a run as a JSON baseline
    evit-bench report [-o runs/bench_report]         # HTML + Markdown with plots

BASE/HEAD: a run id, ``latest``, ``previous``, or a baseline JSON file. ``compare`` exits 1
when a regression exceeds the noise threshold (``--report-only``: always 0). ``--store`` goes
before or after the subcommand; without it: $EVIT_STORE, else runs/bench.sqlite.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from toolkit.console import HelpFormatter, fail, say

PROG = "evit-bench"
STORE_HELP = "SQLite result store (default: $EVIT_STORE, else runs/bench.sqlite)"


def _store_option(p: argparse.ArgumentParser, top: bool) -> None:
    # on the top parser and on each subcommand; the subcommand's, when given, wins
    p.add_argument("--store", default=None if top else argparse.SUPPRESS, help=STORE_HELP)


def _run_parser(sub) -> None:
    r = sub.add_parser("run", help="run a suite", formatter_class=HelpFormatter)
    r.add_argument("suite", help="the suite YAML (see toolkit/bench/suite.py)")
    _store_option(r, False)
    r.add_argument("--device", action="append", metavar="NAME",
                   help="run on this device instead of the suite's (repeatable): host, all, "
                   "a profile name or alias, or an adb serial")
    r.add_argument("--benchmark-binary", help="benchmark_model for android_aarch64 (phones)")
    r.add_argument("--fallback-host", action="store_true",
                   help="use this machine when none of the suite's phones is attached")
    r.add_argument("--adb-port", type=int, default=None,
                   help="the adb server's port (default: $ANDROID_ADB_SERVER_PORT, else 5037)")
    r.add_argument("--run-id", help="name of this run (default: time and git commit)")


def _compare_parser(sub) -> None:
    c = sub.add_parser("compare", help="flag regressions between two runs",
                       formatter_class=HelpFormatter)
    c.add_argument("base", help="a run id, latest, previous, or a baseline JSON")
    c.add_argument("head", help="as BASE")
    _store_option(c, False)
    c.add_argument("--markdown", help="write the Markdown table here")
    c.add_argument("--junit", help="write JUnit XML here")
    c.add_argument("--github-json", help="write github-action-benchmark JSON (HEAD) here")
    c.add_argument("--min-rel", type=float, default=0.05, help="smallest relative change "
                   "that counts, whatever the noise")
    c.add_argument("--k", type=float, default=3.0, help="noise multiplier")
    c.add_argument("--report-only", action="store_true", help="exit 0 even on regressions")
    c.add_argument("--json", action="store_true",
                   help="print the comparison rows as JSON instead of the Markdown table")


def _list_parser(sub) -> None:
    ls = sub.add_parser("list", help="bench runs in the store", formatter_class=HelpFormatter)
    _store_option(ls, False)
    ls.add_argument("--json", action="store_true", help="print the runs as JSON")


def _baseline_report_parsers(sub) -> None:
    b = sub.add_parser("baseline", help="freeze a run as a baseline JSON",
                       formatter_class=HelpFormatter)
    b.add_argument("run", help="a run id, latest or previous")
    b.add_argument("-o", "--out", required=True, help="the baseline JSON to write")
    _store_option(b, False)
    rep = sub.add_parser("report", help="HTML and Markdown report with plots",
                         formatter_class=HelpFormatter)
    rep.add_argument("-o", "--out", default=os.path.join("runs", "bench_report"),
                     help="folder for the report")
    _store_option(rep, False)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0],
                                formatter_class=HelpFormatter)
    _store_option(p, True)
    sub = p.add_subparsers(dest="cmd", required=True)
    _run_parser(sub)
    _list_parser(sub)
    _compare_parser(sub)
    _baseline_report_parsers(sub)
    return p


def store_path(args: argparse.Namespace) -> str:
    """--store, else $EVIT_STORE (or, for one more release, $EVIT_BENCH_STORE, with a note),
    else runs/bench.sqlite."""
    from toolkit.devices.store import STORE_ENV, default_store, deprecated_store_env

    if args.store:
        return args.store
    old = deprecated_store_env("bench")
    if old:
        say(f"{PROG}: note: ${old} is deprecated and will be removed in the next release; "
            f"set ${STORE_ENV} instead")
    return default_store("bench")


def cmd_run(args, store: str) -> int:
    from toolkit.bench.runner import run_bench

    s = run_bench(args.suite, store, args.device, args.benchmark_binary, args.adb_port,
                  args.fallback_host, args.run_id, log=say)
    print(f"bench run {s.run_id}: {len(s.results)} of {s.expected} job(s) measured on "
          f"{', '.join(s.devices)}; {len(s.failures)} failure(s); store {store}")
    for f in s.failures:
        print(f"  FAILED {f[0]} ({f[1]}) {f[2]} [{f[3]}]: {f[4][:200]}")
    return 0 if s.ok else 1  # a gate never passes on a run that measured less


def cmd_list(args, store) -> int:
    from toolkit.bench.compare import bench_runs

    runs = bench_runs(store) if store is not None else []
    if args.json:
        print(json.dumps([{"run": r, "created": c, "results": n} for r, c, n in runs], indent=1))
        return 0
    if store is None:
        print(f"no store at {args.store_path}")
    for rid, created, n in runs:
        print(f"{rid}  {created}  {n} result(s)")
    return 0


def cmd_compare(args, store) -> int:
    from toolkit.bench import compare as cmp
    from toolkit.fileio import atomic_write

    head = cmp.load_entries(args.head, store)
    rows = cmp.compare(cmp.load_entries(args.base, store), head, args.min_rel, args.k)
    md = cmp.markdown(rows, args.base, args.head)
    print(json.dumps([r.to_dict() for r in rows], indent=1) if args.json else md)
    if args.markdown:
        atomic_write(args.markdown, md + "\n")
    if args.junit:
        atomic_write(args.junit, cmp.junit(rows))
    if args.github_json:
        atomic_write(args.github_json, cmp.github_benchmark(head))
    regressions = sum(r.status == "regression" for r in rows)
    return 1 if regressions and not args.report_only else 0


def cmd_baseline(args, store) -> int:
    from toolkit.bench import compare as cmp

    entries = cmp.load_entries(args.run, store)
    cmp.save_baseline(entries, args.out, args.run)
    print(f"baseline of {len(entries)} entries -> {args.out}")
    return 0


def cmd_report(args, store) -> int:
    from toolkit.bench.report import write_report
    from toolkit.devices.store import StoreError

    if store is None:
        raise StoreError(f"no result store at {args.store_path}; run `evit-bench run` first")
    for path in write_report(store, args.out):
        print(path)
    return 0


COMMANDS = {"list": cmd_list, "compare": cmd_compare, "baseline": cmd_baseline,
            "report": cmd_report}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from toolkit.bench.suite import SuiteError
    from toolkit.devices.base import DeviceError
    from toolkit.devices.store import ResultStore, StoreError

    try:
        args.store_path = store_path(args)
        if args.cmd == "run":
            return cmd_run(args, args.store_path)
        store = ResultStore(args.store_path) if Path(args.store_path).is_file() else None
        return COMMANDS[args.cmd](args, store)
    except (SuiteError, DeviceError, StoreError, ValueError) as e:
        return fail(PROG, e)


if __name__ == "__main__":
    sys.exit(main())
