"""The real benchmark_model outputs the parser is tested on, by version and kind (issue 19).

    python benchmarks/parser_fixtures.py

Reads tests/fixtures/benchmark_model/real/*.txt (header: source, version, kind, expected
figures read by hand), parses each text and records which figures matched and which
failures were recognised with the right reason.
"""

from __future__ import annotations

import collections
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import write_section  # noqa: E402

from toolkit.devices.benchmark_model import BenchmarkParseError, parse_output  # noqa: E402

REAL = ROOT / "tests" / "fixtures" / "benchmark_model" / "real"


def header(path: Path) -> tuple[dict, str]:
    lines = path.read_text().split("\n")
    hdr, i = {}, 0
    while i < len(lines) and lines[i].startswith("# ") and ":" in lines[i] and \
            lines[i][2:].split(":")[0] in ("source", "version", "kind", "expected", "note"):
        k, _, v = lines[i][2:].partition(":")
        hdr.setdefault(k, v.strip())
        i += 1
    return hdr, "\n".join(lines[i:])


def main() -> None:
    rows, kinds, versions = [], collections.Counter(), collections.Counter()
    ok = 0
    for p in sorted(REAL.glob("*.txt")):
        hdr, text = header(p)
        exp = json.loads(hdr["expected"])
        version = hdr["version"] if not hdr["version"].startswith("unknown") else "unknown"
        versions[version.split("(")[0].strip()[:40]] += 1
        kinds[hdr["kind"]] += 1
        try:
            o = parse_output(text)
            got = f"median/avg {o.runs.center_us:.6g} us" if o.runs else "figures only"
            good = "failure" not in exp
        except BenchmarkParseError as e:
            got = f"failure: {e.reason}"
            good = e.reason == exp.get("failure")
        ok += good
        rows.append(f"| `{p.name}` | {version[:40]} | {hdr['kind']} | {got} | "
                    f"{'yes' if good else 'NO'} |")
    body = "\n".join([
        f"{len(rows)} real outputs (tests/fixtures/benchmark_model/real, sources in its "
        f"SOURCES.md); {ok} of {len(rows)} parse to what their hand-read header says "
        "(every figure is checked by tests/test_benchmark_parser.py).",
        "",
        "Versions: " + ", ".join(f"{v} ({n})" for v, n in sorted(versions.items())) + ".",
        "",
        "Kinds: " + ", ".join(f"{k} ({n})" for k, n in sorted(kinds.items())) + ".",
        "",
        "| file | version | kind | parsed | as read by hand |",
        "|---|---|---|---|---|",
        *rows,
    ])
    write_section("parser_fixtures", "benchmark_model outputs: versions the parser reads "
                  "(issue 19)", body)
    print(body)


if __name__ == "__main__":
    main()
