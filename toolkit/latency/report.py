"""A campaign's report: predicted-vs-measured scatter and error histogram of its subnets."""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["report", "overhead_law", "summary_lines"]


def report(summary: dict, out: str | Path) -> list[Path]:
    """Plots of a campaign summary (``campaign.finish``) as PNG in ``out``; their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pts = summary["points"]
    m = np.array([p["measured_ms"] for p in pts])
    p = np.array([p["predicted_ms"] for p in pts])
    fig, ax = plt.subplots(1, 2, figsize=(10, 4))
    ax[0].scatter(m, p, s=14)
    lim = [0, max(m.max(), p.max()) * 1.05]
    ax[0].plot(lim, lim, "k--", lw=1)
    ax[0].plot(lim, [v * 1.1 for v in lim], "r:", lw=1)
    ax[0].plot(lim, [v * 0.9 for v in lim], "r:", lw=1)
    ax[0].set(xlabel="measured (ms)", ylabel="predicted (ms)",
              title=f"{summary['device']}: subnets end to end")
    ax[1].hist(100 * (p / m - 1), bins=20)
    ax[1].set(xlabel="prediction error (%)", ylabel="subnets", title="error histogram")
    fig.tight_layout()
    path = Path(out) / f"{summary['device']}_predictor.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return [path]


def overhead_law(o: dict) -> str:
    """The fitted overhead law of a summary's ``overhead``, in words."""
    if o.get("form") == "per-kind":
        kinds = " + ".join(f"{v:.2f} x {k}" for k, v in o["kind_scale"].items())
        return f"{kinds} (per-kind kernel sums)"
    if o.get("form") == "weights":
        per_ms = 1 / o["ms_per_mb"] if o["ms_per_mb"] else float("inf")
        return (f"{o['scale']:.3f} x kernel sum + {o['ms_per_mb']:.4f} ms per MB of weights "
                f"({per_ms:.0f} MB/ms)")
    return f"{o['scale']:.3f} x kernel sum + {o['offset_ms']:.3f} ms"


def summary_lines(summary: dict) -> list[str]:
    """A campaign summary for people: the law, and the held-out check."""
    o = summary["overhead"]
    loo = ", ".join(f"{f} {100 * v:.1f}%" for f, v in (o.get("loo_rmspe") or {}).items())
    lines = [f"{summary['device']}: {summary['kernels']} kernels, {summary['subnets']} subnets "
             f"({summary['statistic']} latency); overhead: measured = {overhead_law(o)}"
             + (f" [{o.get('form')}; leave-one-out RMSPE {loo}]" if loo else "")]
    if summary["subnets"]:
        lines.append(f"held-out subnets ({summary['held_out']}) within ±10%: "
                     f"{100 * summary['held_out_within10']:.0f}%, within ±5%: "
                     f"{100 * summary['held_out_within5']:.0f}% (RMSPE "
                     f"{100 * summary['held_out_rmspe']:.1f}%)")
    return lines
