"""``evit-bench report``: HTML and Markdown with plots from the result store's history.

Plots: latency history per model (one line per device/mode; median with the p90 as the upper
whisker) across bench runs, and the slowest layers of the latest run's per-layer profiles.
"""

from __future__ import annotations

import base64
import html
import re
from collections import defaultdict
from pathlib import Path

from toolkit.devices.measure import delegation_text
from toolkit.devices.store import ResultStore

from .compare import bench_runs


def _history(store: ResultStore):
    runs = [r[0] for r in bench_runs(store)]
    order = {rid: i for i, rid in enumerate(runs)}
    series: dict[str, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    latest_ops = {}
    for r in store.results(status="valid"):
        rid = r.meta.get("bench_run")
        if rid not in order:
            continue
        model = r.meta.get("model", r.model_name)
        line = f"{r.device} ({r.serial[-12:]}) {r.meta.get('mode', r.mode)}"
        series[model][line].append((order[rid], r.median_ms, r.p90_ms, r.peak_memory_mb,
                                    delegation_text(r)))
        if r.op_rows:
            latest_ops[(model, r.device)] = (order[rid], r.op_rows)
    return runs, series, latest_ops


def _file(prefix: str, *parts: str) -> str:
    """A plot's file name: safe characters only (names come from stores and suites, and may
    hold / or worse), with a short hash of the real names so two never collide."""
    import hashlib

    raw = "\x00".join(parts)
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", "_".join(parts)).strip("._")[:60] or "x"
    return f"{prefix}_{slug}_{hashlib.sha256(raw.encode()).hexdigest()[:8]}.png"


def write_report(store: ResultStore, out: str | Path, title: str = "evit-bench") -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    runs, series, latest_ops = _history(store)
    pngs = []
    for model, lines in sorted(series.items()):
        fig, ax = plt.subplots(figsize=(7, 3.6))
        for line, pts in sorted(lines.items()):
            pts.sort()
            xs = [p[0] for p in pts]
            med = [p[1] for p in pts]
            up = [max(0.0, (p[2] or p[1]) - p[1]) for p in pts]
            ax.errorbar(xs, med, yerr=[[0] * len(up), up], marker="o", ms=4, capsize=3,
                        label=line)
        ax.set(title=f"{model}: latency history", xlabel="bench run", ylabel="median ms (p90)")
        ax.set_xticks(range(len(runs)))
        ax.set_xticklabels([r[-17:] for r in runs], rotation=30, ha="right", fontsize=7)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        fig.tight_layout()
        path = out / _file("history", model)
        fig.savefig(path, dpi=110)
        plt.close(fig)
        pngs.append(path)
    for (model, device), (_i, ops) in sorted(latest_ops.items()):
        top = sorted(ops, key=lambda o: -o["avg_ms"])[:12][::-1]
        fig, ax = plt.subplots(figsize=(7, 0.3 * len(top) + 1.2))
        ax.barh([f"{o['node_type']} {o['name'][-28:]}" for o in top],
                [o["avg_ms"] for o in top])
        ax.set(title=f"{model} on {device}: slowest layers (latest run)", xlabel="ms")
        ax.tick_params(axis="y", labelsize=7)
        fig.tight_layout()
        path = out / _file("layers", model, device)
        fig.savefig(path, dpi=110)
        plt.close(fig)
        pngs.append(path)
    md = [f"# {title}", "", f"{len(runs)} bench run(s): {', '.join(runs[-5:])}", ""]
    for model, lines in sorted(series.items()):
        md += [f"## {model}", "", "| device / mode | runs | latest median (ms) | latest p90 (ms) "
               "| peak memory (MB) | delegation |", "|---|---|---|---|---|---|"]
        for line, pts in sorted(lines.items()):
            last = max(pts, key=lambda p: p[0])
            mem = f"{last[3]:.1f}" if last[3] is not None else "not reported"
            md.append(f"| {line} | {len(pts)} | {last[1]:.4g} | {(last[2] or last[1]):.4g} | "
                      f"{mem} | {last[4]} |")
        md += ["", f"![history]({_file('history', model)})", ""]
    for (model, device) in sorted(latest_ops):
        md += [f"![layers]({_file('layers', model, device)})", ""]
    (out / "report.md").write_text("\n".join(md))
    body = []
    for line in md:
        if line.startswith("# "):
            body.append(f"<h1>{html.escape(line[2:])}</h1>")
        elif line.startswith("## "):
            body.append(f"<h2>{html.escape(line[3:])}</h2>")
        elif line.startswith("!["):
            name = line[line.index("(") + 1:-1]
            data = base64.b64encode((out / name).read_bytes()).decode()
            body.append(f'<img alt="{html.escape(name)}" src="data:image/png;base64,{data}">')
        elif line.startswith("|") and "---" not in line:
            cells = [html.escape(c.strip()) for c in line.strip("|").split("|")]
            body.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
        elif line:
            body.append(f"<p>{html.escape(line)}</p>")
    page = ("<!doctype html><meta charset='utf-8'><title>" + html.escape(title) + "</title>"
            "<style>body{font-family:sans-serif;max-width:900px;margin:auto}"
            "td{border:1px solid #ccc;padding:2px 6px}img{max-width:100%}</style>"
            + _tables("\n".join(body)))
    (out / "report.html").write_text(page)
    return [out / "report.html", out / "report.md", *pngs]


def _tables(body: str) -> str:
    """Wrap runs of <tr> lines in <table> elements."""
    out, in_table = [], False
    for line in body.splitlines():
        if line.startswith("<tr>") and not in_table:
            out.append("<table>")
            in_table = True
        elif not line.startswith("<tr>") and in_table:
            out.append("</table>")
            in_table = False
        out.append(line)
    if in_table:
        out.append("</table>")
    return "\n".join(out)
