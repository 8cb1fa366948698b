"""The per-model overhead law: how a whole subnet's latency relates to the sum of its kernels.

A kernel measured alone keeps its weights in cache and pays no graph-level costs; a whole
subnet does not. From whole subnets measured end to end, one of four laws is fitted:

- ``ratio``:    measured = scale x kernel sum (the median ratio: robust to outliers)
- ``weights``:  measured = scale x kernel sum + ms_per_mb x fp32 weights in MB (both >= 0)
- ``linear``:   measured = scale x kernel sum + offset_ms (least squares)
- ``per-kind``: measured = sum over kinds of kind_scale[kind] x that kind's kernel sum, each
  factor in [0.5, 2] and pulled towards 1 by a ridge

``choose`` picks the law with the lowest leave-one-out error. ``LatencyPredictor`` holds the
result as its ``overhead`` (``set_overhead``); this module never touches a predictor's
internals.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .kernels import KINDS

__all__ = ["Overhead", "OVERHEAD_FORMS", "MIN_SUBNETS", "PREFER_WEIGHTS", "fit_ratio",
           "fit_weights", "fit_linear", "fit_per_kind", "fit_form", "choose",
           "choose_overhead"]

OVERHEAD_FORMS = ("ratio", "weights", "linear", "per-kind")
# subnets needed to fit each form (leave-one-out needs one more)
MIN_SUBNETS = {"ratio": 1, "weights": 3, "linear": 4, "per-kind": 14}
# the weights form wins ties: within this factor of the best leave-one-out error (on few
# noisy subnets the forms tie, and on subnets measured apart the weights form generalised
# better; benchmarks/RESULTS.md, "Latency campaign")
PREFER_WEIGHTS = 1.2


def _unit_kinds() -> dict[str, float]:
    return dict.fromkeys(KINDS, 1.0)


@dataclass(frozen=True)
class Overhead:
    """scale x sum_k(kind_scale[k] x kernel sum of kind k) + ms_per_mb x weights MB + offset."""

    scale: float = 1.0
    offset_ms: float = 0.0
    kind_scale: dict[str, float] = field(default_factory=_unit_kinds)
    ms_per_mb: float = 0.0

    def predict(self, by_kind: np.ndarray, weights_mb: np.ndarray) -> np.ndarray:
        """Whole-subnet latency from per-kind kernel sums (..., kinds) and weights (MB)."""
        factors = np.array([self.kind_scale.get(k, 1.0) for k in KINDS])
        return (self.scale * (np.asarray(by_kind) * factors).sum(axis=-1)
                + self.ms_per_mb * np.asarray(weights_mb) + self.offset_ms)


def fit_ratio(sums: np.ndarray, measured: np.ndarray) -> Overhead:
    return Overhead(scale=float(np.median(np.asarray(measured) / np.asarray(sums))))


def fit_weights(sums: np.ndarray, weights_mb: np.ndarray, measured: np.ndarray) -> Overhead:
    """Non-negative scale and ms per MB, in relative error; no offset (over a FLOPs window
    the two regressors grow together)."""
    from scipy.optimize import nnls

    measured = np.asarray(measured, dtype=np.float64)
    A = np.stack([np.asarray(sums, dtype=np.float64),
                  np.asarray(weights_mb, dtype=np.float64)], axis=1)
    (scale, per_mb), _ = nnls(A / measured[:, None], np.ones(len(measured)))
    return Overhead(scale=float(scale), ms_per_mb=float(per_mb))


def fit_linear(sums: np.ndarray, measured: np.ndarray) -> Overhead:
    sums = np.asarray(sums, dtype=np.float64)
    A = np.stack([sums, np.ones(len(sums))], axis=1)
    (scale, offset), *_ = np.linalg.lstsq(A, np.asarray(measured, dtype=np.float64), rcond=None)
    return Overhead(scale=float(scale), offset_ms=float(offset))


def fit_per_kind(by_kind: np.ndarray, measured: np.ndarray, ridge: float = 0.1) -> Overhead:
    """One factor per kind in [0.5, 2], pulled towards 1 by ``ridge`` (a block runs a little
    faster or slower inside a network than alone). No offset: the first conv and the head,
    in every subnet, already carry a constant."""
    from scipy.optimize import lsq_linear

    sums = np.asarray(by_kind, dtype=np.float64)
    n = len(sums)
    w = np.sqrt(ridge * n) * sums.mean(axis=0)  # ridge rows: w_k (s_k - 1) = 0
    fit = lsq_linear(np.vstack([sums, np.diag(w)]),
                     np.concatenate([np.asarray(measured, dtype=np.float64), w]),
                     bounds=(0.5, 2.0))
    return Overhead(kind_scale={kind: float(v) for kind, v in zip(KINDS, fit.x)})


def fit_form(form: str, sums: np.ndarray, by_kind: np.ndarray, weights_mb: np.ndarray,
             measured: np.ndarray) -> Overhead:
    if form == "ratio":
        return fit_ratio(sums, measured)
    if form == "weights":
        return fit_weights(sums, weights_mb, measured)
    if form == "linear":
        return fit_linear(sums, measured)
    if form == "per-kind":
        return fit_per_kind(by_kind, measured)
    raise ValueError(f"overhead form {form!r} is not known; choose one of "
                     f"{', '.join(OVERHEAD_FORMS)}")


def choose(sums: np.ndarray, by_kind: np.ndarray, weights_mb: np.ndarray, measured: np.ndarray,
           idx: np.ndarray) -> tuple[str, dict[str, float], Overhead]:
    """The form with the lowest leave-one-out RMSPE on subnets ``idx``, fitted on them all.

    A scale + offset line through subnets of similar size is ill-conditioned (blind to the
    kernels), so each form is judged by how well it predicts the subnet left out; a form is
    tried only with ``MIN_SUBNETS[form] + 1`` subnets or more; the weights form wins within
    ``PREFER_WEIGHTS`` of the best. Returns (form, each form's leave-one-out RMSPE, fit).
    """
    idx = np.asarray(idx)
    loo: dict[str, float] = {}
    for form in OVERHEAD_FORMS:
        if len(idx) < max(2, MIN_SUBNETS[form] + 1):
            continue
        err = []
        for i in range(len(idx)):
            rest = np.delete(idx, i)
            o = fit_form(form, sums[rest], by_kind[rest], weights_mb[rest], measured[rest])
            j = idx[i]
            err.append(o.predict(by_kind[j], weights_mb[j]) / measured[j] - 1)
        loo[form] = float(np.sqrt(np.mean(np.square(err))))
    form = min(loo, key=loo.get) if loo else "ratio"
    if "weights" in loo and loo["weights"] <= PREFER_WEIGHTS * loo[form]:
        form = "weights"
    return form, loo, fit_form(form, sums[idx], by_kind[idx], weights_mb[idx], measured[idx])


def choose_overhead(pred, sums: np.ndarray, by_kind: np.ndarray, weights_mb: np.ndarray,
                    measured: np.ndarray, idx: np.ndarray) -> tuple[str, dict[str, float]]:
    """``choose``, installed in ``pred`` (``pred.set_overhead``); returns (form, loo)."""
    form, loo, fit = choose(sums, by_kind, weights_mb, measured, idx)
    pred.set_overhead(fit)
    return form, loo
