"""A campaign's report: predicted-vs-measured scatter and error histogram of its subnets."""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["report"]


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
