"""Gradient-boosted kernel latency predictors; ``predict(arch)`` = sum of kernels + overhead.

One scikit-learn HistGradientBoostingRegressor per kernel kind, on log latency, with
monotone constraints (latency never falls when a size grows). Saved in our own JSON format
(no pickle): every tree as arrays (feature, threshold, left, right, leaf value), evaluated
here by a small vectorized tree walker, so a file written today loads with any later
scikit-learn, or without it. Predictions for a kernel are cached by its code, so predicting
many subnets is a vectorized lookup (tens of thousands of subnets per second).

File format (``"format": "evit-latency-predictor", "version": 1``): device, convention,
overhead {scale, offset_ms}, provenance {source, trained_on, created, sklearn}, and per kind
{features, baseline, trees: [{feature, threshold, left, right, value}]}.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np

from toolkit.space import SPACE, ArchConfig

from .kernels import FEATURES, KINDS, MONOTONE, Kernel, feature_matrix, kernel_codes

FORMAT, VERSION = "evit-latency-predictor", 1


class PredictorError(ValueError):
    pass


def _kind_of(codes: np.ndarray) -> np.ndarray:
    from .kernels import RADIX

    return codes // int(np.prod(RADIX[1:], dtype=np.int64))


class KindModel:
    """Trees for one kernel kind: raw = baseline + sum(trees); latency = exp(raw)."""

    def __init__(self, kind: str, baseline: float, trees: list[dict]):
        self.kind, self.baseline, self.trees = kind, baseline, trees

    @classmethod
    def fit(cls, kind: str, X: np.ndarray, y_ms: np.ndarray, seed: int = 0,
            max_iter: int = 400) -> KindModel:
        from sklearn.ensemble import HistGradientBoostingRegressor

        names = FEATURES[kind]
        n = len(X)
        model = HistGradientBoostingRegressor(
            max_iter=max_iter, learning_rate=0.1, max_leaf_nodes=31,
            min_samples_leaf=max(1, min(10, n // 20)), l2_regularization=0.0,
            monotonic_cst=[MONOTONE.get(f, 0) for f in names], early_stopping=False,
            random_state=seed,
        )
        model.fit(X, np.log(y_ms))
        trees = []
        for (pred,) in model._predictors:  # one regression tree per iteration
            nodes = pred.nodes
            trees.append({
                "feature": nodes["feature_idx"].astype(int).tolist(),
                "threshold": nodes["num_threshold"].astype(float).tolist(),
                "left": nodes["left"].astype(int).tolist(),
                "right": nodes["right"].astype(int).tolist(),
                "leaf": nodes["is_leaf"].astype(int).tolist(),
                "value": nodes["value"].astype(float).tolist(),
            })
        return cls(kind, float(np.ravel(model._baseline_prediction)[0]), trees)

    def predict(self, X: np.ndarray) -> np.ndarray:
        raw = np.full(len(X), self.baseline)
        rows = np.arange(len(X))
        for t in self.trees:
            feat, thr = np.asarray(t["feature"]), np.asarray(t["threshold"])
            left, right = np.asarray(t["left"]), np.asarray(t["right"])
            leaf, value = np.asarray(t["leaf"], dtype=bool), np.asarray(t["value"])
            node = np.zeros(len(X), dtype=np.int64)
            while True:
                active = ~leaf[node]
                if not active.any():
                    break
                go_left = X[rows, feat[node]] <= thr[node]
                node = np.where(active, np.where(go_left, left[node], right[node]), node)
            raw += value[node]
        return np.exp(raw)

    def to_dict(self) -> dict:
        return {"features": list(FEATURES[self.kind]), "baseline": self.baseline,
                "trees": self.trees}


class LatencyPredictor:
    def __init__(self, device: str, convention: str, kinds: dict[str, KindModel],
                 scale: float = 1.0, offset_ms: float = 0.0, provenance: dict | None = None):
        self.device, self.convention, self.kinds = device, convention, kinds
        self.scale, self.offset_ms = scale, offset_ms
        self.provenance = dict(provenance or {})
        self._codes = np.zeros(0, dtype=np.int64)  # sorted cache of kernel predictions
        self._ms = np.zeros(0)

    # -- training --------------------------------------------------------------------------
    @classmethod
    def fit(cls, device: str, codes: np.ndarray, latency_ms: np.ndarray,
            convention: str = "table", provenance: dict | None = None,
            seed: int = 0, max_iter: int = 400) -> LatencyPredictor:
        codes = np.asarray(codes, dtype=np.int64)
        latency_ms = np.asarray(latency_ms, dtype=np.float64)
        kinds = {}
        kind_idx = _kind_of(codes)
        for i, kind in enumerate(KINDS):
            sel = kind_idx == i
            if not sel.any():
                raise PredictorError(f"no {kind} kernels to train on; measure at least one")
            kinds[kind] = KindModel.fit(kind, feature_matrix(kind, codes[sel]), latency_ms[sel],
                                        seed, max_iter)
        prov = {"trained_on": int(len(codes)), "created": time.strftime("%Y-%m-%d"),
                **(provenance or {})}
        try:
            import sklearn

            prov["sklearn"] = sklearn.__version__
        except ImportError:  # pragma: no cover
            pass
        return cls(device, convention, kinds, provenance=prov)

    def fit_overhead(self, kernel_sums_ms: np.ndarray, measured_ms: np.ndarray) -> None:
        """Least squares measured ≈ scale * kernel_sum + offset (the per-model overhead)."""
        A = np.stack([kernel_sums_ms, np.ones(len(kernel_sums_ms))], axis=1)
        (scale, offset), *_ = np.linalg.lstsq(A, measured_ms, rcond=None)
        self.scale, self.offset_ms = float(scale), float(offset)

    # -- prediction ------------------------------------------------------------------------
    def predict_kernels(self, codes: np.ndarray) -> np.ndarray:
        codes = np.asarray(codes, dtype=np.int64)
        flat = codes.ravel()
        uniq = np.unique(flat)
        pos = np.searchsorted(self._codes, uniq)
        known = (pos < len(self._codes)) & (self._codes[np.minimum(pos, len(self._codes) - 1)]
                                            == uniq) if len(self._codes) else np.zeros(
            len(uniq), bool)
        new = uniq[~known]
        if len(new):
            ms = np.empty(len(new))
            kind_idx = _kind_of(new)
            for i, kind in enumerate(KINDS):
                sel = kind_idx == i
                if sel.any():
                    ms[sel] = self.kinds[kind].predict(feature_matrix(kind, new[sel]))
            allc = np.concatenate([self._codes, new])
            allm = np.concatenate([self._ms, ms])
            order = np.argsort(allc)
            self._codes, self._ms = allc[order], allm[order]
        return self._ms[np.searchsorted(self._codes, flat)].reshape(codes.shape)

    def kernel_sum_encoded(self, enc: np.ndarray) -> np.ndarray:
        codes, active = kernel_codes(enc, self.convention)
        return (self.predict_kernels(codes) * active).sum(axis=1)

    def predict_encoded(self, enc: np.ndarray) -> np.ndarray:
        """Latency in ms for N encoded subnets (SPACE.encode rows)."""
        return self.scale * self.kernel_sum_encoded(enc) + self.offset_ms

    def predict(self, arch: ArchConfig) -> float:
        return float(self.predict_encoded(SPACE.encode(arch)[None])[0])

    def predict_kernel(self, kernel: Kernel) -> float:
        return float(self.predict_kernels(np.array([kernel.code]))[0])

    # -- storage ---------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {
            "format": FORMAT, "version": VERSION, "device": self.device,
            "convention": self.convention,
            "overhead": {"scale": self.scale, "offset_ms": self.offset_ms},
            "provenance": self.provenance,
            "kinds": {k: m.to_dict() for k, m in self.kinds.items()},
        }

    def save(self, path: str | Path) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(self.to_dict(), separators=(",", ":")))
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: str | Path) -> LatencyPredictor:
        path = Path(path)
        try:
            d = json.loads(path.read_text())
        except OSError as e:
            raise PredictorError(f"cannot read predictor {path}: {e}") from e
        except json.JSONDecodeError as e:
            raise PredictorError(
                f"{path} is not valid JSON ({e}); it is damaged: regenerate it (evit-profile "
                "--device D --train-from-table TABLE, or re-run the host campaign)") from e
        try:
            if d.get("format") != FORMAT:
                raise PredictorError(f"{path} is not an evit latency predictor "
                                     f"(format {d.get('format')!r})")
            if int(d["version"]) > VERSION:
                raise PredictorError(f"{path} has version {d['version']}; this evit reads up to "
                                     f"{VERSION}: upgrade evit")
            kinds = {}
            for kind in KINDS:
                k = d["kinds"][kind]
                if list(k["features"]) != list(FEATURES[kind]):
                    raise PredictorError(f"{path}: {kind} features {k['features']} differ from "
                                         f"{list(FEATURES[kind])}")
                for t in k["trees"]:
                    n = len(t["value"])
                    if not all(len(t[f]) == n for f in ("feature", "threshold", "left", "right",
                                                         "leaf")):
                        raise PredictorError(f"{path}: a {kind} tree has arrays of unequal length")
                kinds[kind] = KindModel(kind, float(k["baseline"]), k["trees"])
            return cls(d["device"], d["convention"], kinds, float(d["overhead"]["scale"]),
                       float(d["overhead"]["offset_ms"]), d.get("provenance", {}))
        except (KeyError, TypeError, ValueError) as e:
            if isinstance(e, PredictorError):
                raise
            raise PredictorError(f"{path} is damaged or incomplete ({e!r}); regenerate it") from e
