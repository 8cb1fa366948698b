"""Gradient-boosted kernel latency predictors; ``predict(arch)`` = sum of kernels + overhead.

One gradient-boosted ensemble of scikit-learn regression trees per kernel kind (``boost``),
on log latency, with monotone constraints (latency never falls when a size grows). Saved in
our own JSON format (no pickle): every tree as arrays (feature, threshold, left, right, leaf,
value) read from the fitted trees' public ``tree_`` attributes, evaluated here by a small
vectorized tree walker (``KindModel.raw``; equal to the trees' own ``predict``, tested), so
a file written today loads with any later scikit-learn, or without it. Predictions for a
kernel are cached by its code, so predicting many subnets is a vectorized lookup (tens of
thousands of subnets per second).

File format (``"format": "evit-latency-predictor", "version": 3``): device, convention,
overhead {scale, offset_ms, kind_scale: {kind: factor}, ms_per_mb, weight_classes},
provenance {source, trained_on, created, sklearn}, and per kind {features, baseline, trees:
[{feature, threshold, left, right, value}], linear}. Prediction: scale * sum over kernels
(kind_scale[kind] * kernel ms) + ms_per_mb * the subnet's fp32 weights in MB (counted with
weight_classes classes) + offset_ms. Version 1 (no kind_scale) and 2 (no ms_per_mb) files
still load, with every factor 1 and no weights term.
"""

from __future__ import annotations

import itertools
import json
import time
from pathlib import Path

import numpy as np

from toolkit.fileio import atomic_write
from toolkit.space import SPACE, ArchConfig

from .kernels import (
    CONVENTIONS,
    FEATURES,
    KINDS,
    MONOTONE,
    RADIX,
    Kernel,
    feature_matrix,
    kernel_codes,
    kernel_codes_one,
)
from .overhead import Overhead, fit_linear, fit_per_kind, fit_weights

_KIND_DIV = int(np.prod(RADIX[1:], dtype=np.int64))

FORMAT, VERSION = "evit-latency-predictor", 3


class PredictorError(ValueError):
    pass


def _kind_of(codes: np.ndarray) -> np.ndarray:
    from .kernels import RADIX

    return codes // int(np.prod(RADIX[1:], dtype=np.int64))


LINEAR = ("macs", "params", "bytes")  # the linear base model's features, where a kind has them
LINEAR_BELOW = 200  # kinds with fewer measured kernels get the linear base; more: trees alone
POOLED_BELOW = 8  # kinds with fewer: the base shared by all kinds, no trees (see pooled_base)
POOLED_GRIDS = 2  # ... if their kernels span fewer grids (hw values) than this


def pooled_base(codes: np.ndarray, y_ms: np.ndarray) -> dict[str, list[float]]:
    """Per-kind linear-base coefficients of one roofline for every kind: a x macs + b x bytes
    + c[kind] (non-negative, relative-error least squares over all kernels).

    A kind with a few kernels measured (a 20-kernel campaign: 3 each, often at one token grid)
    cannot separate its own macs, params and bytes rates, and trees on top of it extrapolate
    the grid they saw. Sharing the two rates across kinds keeps the rates measurable
    (benchmarks/RESULTS.md, "Latency campaign").
    """
    from scipy.optimize import nnls

    kind = _kind_of(codes)
    A = np.zeros((len(codes), 2 + len(KINDS)))
    for i, k in enumerate(KINDS):
        sel = kind == i
        if sel.any():
            X = feature_matrix(k, codes[sel])
            names = FEATURES[k]
            A[sel, 0] = X[:, names.index("macs")]
            if "bytes" in names:
                A[sel, 1] = X[:, names.index("bytes")]
            A[sel, 2 + i] = 1.0
    scale = np.maximum(A.max(axis=0), 1e-12)
    coef, _ = nnls(A / scale / y_ms[:, None], np.ones(len(y_ms)))
    coef = coef / scale
    out = {}
    for i, k in enumerate(KINDS):
        rate = {"macs": coef[0], "params": 0.0, "bytes": coef[1]}
        out[k] = [float(rate[f]) for f in KindModel.linear_features(k)] + [float(coef[2 + i])]
    return out


LEARNING_RATE = 0.1
MAX_LEAF_NODES = 31


def boost(X: np.ndarray, y: np.ndarray, seed: int = 0, max_iter: int = 400,
          min_samples_leaf: int = 1, monotone: list[int] | None = None) -> tuple[float, list]:
    """Least-squares gradient boosting of monotone regression trees: (baseline, trees).

    Each round fits a scikit-learn ``DecisionTreeRegressor`` (best-first, ``MAX_LEAF_NODES``
    leaves, ``monotonic_cst``) to the residuals; the model is baseline + ``LEARNING_RATE`` x
    the sum of the trees' ``predict``. The trees are read back through their public ``tree_``
    arrays (``tree_arrays``), so the file format owes nothing to the library's internals.
    """
    from sklearn.tree import DecisionTreeRegressor

    y = np.asarray(y, dtype=np.float64)
    baseline = float(y.mean())
    fitted = np.full(len(y), baseline)
    trees = []
    for i in range(max_iter):
        t = DecisionTreeRegressor(max_leaf_nodes=MAX_LEAF_NODES,
                                  min_samples_leaf=min_samples_leaf, monotonic_cst=monotone,
                                  random_state=seed + i)
        t.fit(X, y - fitted)
        fitted += LEARNING_RATE * t.predict(X)
        trees.append(t)
    return baseline, trees


def tree_arrays(tree, scale: float = 1.0) -> dict[str, list]:
    """A fitted ``DecisionTreeRegressor`` as this format's arrays, from its documented
    ``tree_`` attributes (children_left/right, feature, threshold, value), leaf values
    multiplied by ``scale``. sklearn numbers children after their parent; leaves get
    feature 0 and children 0 (never followed)."""
    t = tree.tree_
    leaf = t.children_left == -1
    return {
        "feature": np.where(leaf, 0, t.feature).astype(int).tolist(),
        "threshold": np.where(leaf, 0.0, t.threshold).astype(float).tolist(),
        "left": np.where(leaf, 0, t.children_left).astype(int).tolist(),
        "right": np.where(leaf, 0, t.children_right).astype(int).tolist(),
        "leaf": leaf.astype(int).tolist(),
        "value": (scale * t.value.reshape(-1)).astype(float).tolist(),
    }


class KindModel:
    """One kernel kind: latency = base(x) * exp(baseline + sum(trees)).

    base(x) = coef · [macs, params, bytes, 1] (non-negative least squares in relative error) is
    a roofline-like first guess that interpolates sensibly between a few measured kernels; the
    monotone trees learn the log of what it gets wrong. With ``LINEAR_BELOW`` or more kernels
    of a kind the trees alone are more accurate (monotone residuals cannot undo a base that
    is wrong in a direction), so base(x) = 1 there.
    """

    def __init__(self, kind: str, baseline: float, trees: list[dict],
                 linear: list[float] | None = None):
        self.kind, self.baseline, self.trees = kind, baseline, trees
        self.linear = linear  # coefficients for linear_features(kind) + intercept, or None

    @staticmethod
    def linear_features(kind: str) -> list[str]:
        return [f for f in LINEAR if f in FEATURES[kind]]

    def base(self, X: np.ndarray) -> np.ndarray:
        if self.linear is None:
            return np.ones(len(X))
        cols = [FEATURES[self.kind].index(f) for f in self.linear_features(self.kind)]
        coef = np.asarray(self.linear)
        return np.maximum(X[:, cols] @ coef[:-1] + coef[-1], 1e-6)

    @classmethod
    def fit(cls, kind: str, X: np.ndarray, y_ms: np.ndarray, seed: int = 0,
            max_iter: int = 400, pooled: list[float] | None = None) -> KindModel:
        """Fit one kind; ``pooled``: the shared base's coefficients (``pooled_base``), given
        for a kind with under ``POOLED_BELOW`` kernels and used as its whole model (no trees)
        when they span under ``POOLED_GRIDS`` token grids (a kind seen on several grids
        learns its own; benchmarks/RESULTS.md, "Latency campaign")."""
        from scipy.optimize import nnls

        names = FEATURES[kind]
        n = len(X)
        if pooled is not None and len(np.unique(X[:, names.index("hw")])) < POOLED_GRIDS:
            return cls(kind, 0.0, [], list(pooled))
        linear = None
        if n < LINEAR_BELOW:
            cols = [names.index(f) for f in cls.linear_features(kind)]
            A = np.hstack([X[:, cols], np.ones((n, 1))])
            scale = np.maximum(A.max(axis=0), 1e-12)  # conditioning: fit on [0, 1] columns
            coef, _ = nnls(A / scale / y_ms[:, None], np.ones(n))  # relative-error least squares
            linear = (coef / scale).tolist()
        base = cls(kind, 0.0, [], linear).base(X)
        baseline, trees = boost(X, np.log(y_ms) - np.log(base), seed, max_iter,
                                min_samples_leaf=max(1, min(10, n // 20)),
                                monotone=[MONOTONE.get(f, 0) for f in names])
        return cls(kind, baseline, [tree_arrays(t, LEARNING_RATE) for t in trees], linear)

    def raw(self, X: np.ndarray) -> np.ndarray:
        """The trees' output: baseline + sum of the trees (log of latency / base)."""
        raw = np.full(len(X), self.baseline)
        rows = np.arange(len(X))
        for t in self.trees:
            feat, thr = np.asarray(t["feature"]), np.asarray(t["threshold"])
            left, right = np.asarray(t["left"]), np.asarray(t["right"])
            leaf, value = np.asarray(t["leaf"], dtype=bool), np.asarray(t["value"])
            node = np.zeros(len(X), dtype=np.int64)
            for _ in range(len(leaf)):  # a walk visits each node at most once (load checks)
                active = ~leaf[node]
                if not active.any():
                    break
                go_left = X[rows, feat[node]] <= thr[node]
                node = np.where(active, np.where(go_left, left[node], right[node]), node)
            raw += value[node]
        return raw

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.base(X) * np.exp(self.raw(X))

    def to_dict(self) -> dict:
        d = {"features": list(FEATURES[self.kind]), "baseline": self.baseline,
             "trees": self.trees}
        if self.linear is not None:
            d["linear"] = {"features": self.linear_features(self.kind) + ["1"],
                           "coef": list(self.linear)}
        return d


class LatencyPredictor:
    def __init__(self, device: str, convention: str, kinds: dict[str, KindModel],
                 scale: float = 1.0, offset_ms: float = 0.0, provenance: dict | None = None,
                 kind_scale: dict[str, float] | None = None, ms_per_mb: float = 0.0,
                 weight_classes: int = 1000):
        self.device, self.convention, self.kinds = device, convention, kinds
        self.scale, self.offset_ms = scale, offset_ms
        # a whole subnet streams its weights on every inference; a kernel alone keeps them in
        # cache: ms per MB of fp32 weights (counted with weight_classes classes in the head)
        self.ms_per_mb, self.weight_classes = float(ms_per_mb), int(weight_classes)
        self.kind_scale = {k: float((kind_scale or {}).get(k, 1.0)) for k in KINDS}
        self.provenance = dict(provenance or {})
        self._codes = np.zeros(0, dtype=np.int64)  # sorted cache of kernel predictions
        self._ms = np.zeros(0)
        self._one: dict[int, float] = {}  # the same, for single predictions

    # -- training --------------------------------------------------------------------------
    @classmethod
    def fit(cls, device: str, codes: np.ndarray, latency_ms: np.ndarray,
            convention: str = "table", provenance: dict | None = None,
            seed: int = 0, max_iter: int = 400, weight_classes: int = 1000
            ) -> LatencyPredictor:
        """One model per kernel kind; ``weight_classes``: the head's classes when the
        weights term counts a subnet's weights (the classes the kernels were measured with)."""
        codes = np.asarray(codes, dtype=np.int64)
        latency_ms = np.asarray(latency_ms, dtype=np.float64)
        kinds = {}
        kind_idx = _kind_of(codes)
        counts = np.bincount(kind_idx, minlength=len(KINDS))
        pooled = pooled_base(codes, latency_ms) if counts.min() < POOLED_BELOW else {}
        for i, kind in enumerate(KINDS):
            sel = kind_idx == i
            if not sel.any():
                raise PredictorError(f"no {kind} kernels to train on; measure at least one")
            kinds[kind] = KindModel.fit(kind, feature_matrix(kind, codes[sel]), latency_ms[sel],
                                        seed, max_iter, pooled.get(kind))
        prov = {"trained_on": int(len(codes)), "created": time.strftime("%Y-%m-%d"),
                **(provenance or {})}
        import sklearn

        prov["sklearn"] = sklearn.__version__
        return cls(device, convention, kinds, provenance=prov, weight_classes=weight_classes)

    def weights_mb(self, enc: np.ndarray) -> np.ndarray:
        """fp32 weights of N encoded subnets in MB (the weights term's regressor)."""
        from toolkit.flops import params_encoded

        return np.asarray(params_encoded(enc, self.weight_classes), dtype=np.float64) * 4e-6

    @property
    def overhead(self) -> Overhead:
        """The per-model overhead law (see overhead.py) this predictor applies."""
        return Overhead(self.scale, self.offset_ms, dict(self.kind_scale), self.ms_per_mb)

    def set_overhead(self, o: Overhead) -> None:
        """Apply an overhead law fitted elsewhere (``overhead.choose``, ``fit_*``)."""
        self.scale, self.offset_ms, self.ms_per_mb = float(o.scale), float(o.offset_ms), \
            float(o.ms_per_mb)
        self.kind_scale = {k: float(o.kind_scale.get(k, 1.0)) for k in KINDS}

    def fit_overhead(self, kernel_sums_ms: np.ndarray, measured_ms: np.ndarray,
                     ridge: float = 0.1, weights_mb: np.ndarray | None = None) -> None:
        """The per-model overhead, from whole subnets measured end to end (overhead.py).

        ``weights_mb`` given: the weights law (scale x kernel sum + ms_per_mb x weights_mb).
        ``kernel_sums_ms`` (N,): the linear law (scale x kernel sum + offset).
        (N, kinds) per-kind sums: the per-kind law, factors pulled towards 1 by ``ridge``.
        """
        sums = np.asarray(kernel_sums_ms, dtype=np.float64)
        if weights_mb is not None:
            self.set_overhead(fit_weights(sums, weights_mb, measured_ms))
        elif sums.ndim == 1:
            self.set_overhead(fit_linear(sums, measured_ms))
        else:
            self.set_overhead(fit_per_kind(sums, measured_ms, ridge))

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
        """Plain sum of the kernels' predicted latencies, (N,)."""
        codes, active = kernel_codes(enc, self.convention)
        return (self.predict_kernels(codes) * active).sum(axis=1)

    def kernel_sums_by_kind(self, enc: np.ndarray) -> np.ndarray:
        """Per-kind sums of the kernels' predicted latencies, (N, kinds) in KINDS order."""
        codes, active = kernel_codes(enc, self.convention)
        ms = self.predict_kernels(codes) * active
        kind = _kind_of(codes)
        return np.stack([(ms * (kind == i)).sum(axis=1) for i in range(len(KINDS))], axis=1)

    def predict_encoded(self, enc: np.ndarray) -> np.ndarray:
        """Latency in ms for N encoded subnets (SPACE.encode rows)."""
        codes, active = kernel_codes(enc, self.convention)
        ms = self.predict_kernels(codes) * active
        if any(v != 1.0 for v in self.kind_scale.values()):
            ms = ms * np.array([self.kind_scale[k] for k in KINDS])[_kind_of(codes)]
        out = self.scale * ms.sum(axis=1) + self.offset_ms
        if self.ms_per_mb:
            out = out + self.ms_per_mb * self.weights_mb(enc)
        return out

    def predict(self, arch: ArchConfig) -> float:
        """Latency in ms of one subnet: the same figure as ``predict_encoded``, in plain
        Python (tens of microseconds once its kernels have been seen)."""
        row = SPACE.encode(arch)
        codes = kernel_codes_one(row, self.convention)
        cache = self._one
        if any(c not in cache for c in codes):
            ms = self.predict_kernels(np.array(codes, dtype=np.int64))
            cache.update(zip(codes, ms.tolist()))
        if self._uniform_kinds:
            total = sum(cache[c] for c in codes)
        else:
            scale = [self.kind_scale[k] for k in KINDS]
            total = sum(cache[c] * scale[c // _KIND_DIV] for c in codes)
        out = self.scale * total + self.offset_ms
        if self.ms_per_mb:
            from toolkit.flops import params

            out += self.ms_per_mb * params(arch, self.weight_classes) * 4e-6
        return float(out)

    @property
    def _uniform_kinds(self) -> bool:
        return all(v == 1.0 for v in self.kind_scale.values())

    def predict_kernel(self, kernel: Kernel) -> float:
        return float(self.predict_kernels(np.array([kernel.code]))[0])

    # -- storage ---------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {
            "format": FORMAT, "version": VERSION, "device": self.device,
            "convention": self.convention,
            "overhead": {"scale": self.scale, "offset_ms": self.offset_ms,
                         "kind_scale": dict(self.kind_scale), "ms_per_mb": self.ms_per_mb,
                         "weight_classes": self.weight_classes},
            "provenance": self.provenance,
            "kinds": {k: m.to_dict() for k, m in self.kinds.items()},
        }

    def save(self, path: str | Path) -> None:
        atomic_write(path, json.dumps(self.to_dict(), separators=(",", ":")))

    @classmethod
    def load(cls, path: str | Path) -> LatencyPredictor:
        """Read a predictor file, validated as untrusted input: types, finite and sensible
        numbers, index ranges, acyclic trees; an error names the file and the field."""
        path = Path(path)
        try:
            d = json.loads(path.read_text())
        except OSError as e:
            raise PredictorError(f"cannot read predictor {path}: {e}") from e
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise PredictorError(
                f"{path} is not valid JSON ({e}); it is damaged: regenerate it (evit-profile "
                "--device D --train-from-table TABLE, or re-run the host campaign)") from e
        return cls.from_dict(d, str(path))

    @classmethod
    def from_dict(cls, d: object, source: str = "<dict>") -> LatencyPredictor:
        v = _Validator(source)
        d = v.mapping(d, "")
        if d.get("format") != FORMAT:
            raise PredictorError(f"{source} is not an evit latency predictor "
                                 f"(format {d.get('format')!r}, expected {FORMAT!r})")
        v.integer(d.get("version"), "version", 1, VERSION,
                            hint=f"this evit reads versions 1-{VERSION}: upgrade evit for newer")
        device = d.get("device")
        if not isinstance(device, str) or not device:
            raise v.bad("device", device, "the device's profile name, a non-empty string")
        convention = d.get("convention")
        if convention not in CONVENTIONS:
            raise v.bad("convention", convention, f"one of {', '.join(CONVENTIONS)}")
        o = v.mapping(d.get("overhead"), "overhead")
        scale = v.number(o.get("scale"), "overhead.scale", lo=0.0, hi=100.0)
        offset = v.number(o.get("offset_ms"), "overhead.offset_ms", lo=-1e4, hi=1e5)
        ks = v.mapping(o.get("kind_scale") or {}, "overhead.kind_scale")
        if set(ks) - set(KINDS):
            raise v.bad("overhead.kind_scale", sorted(set(ks) - set(KINDS)),
                        f"kinds from {', '.join(KINDS)}")
        ks = {k: v.number(x, f"overhead.kind_scale.{k}", lo=0.0, hi=100.0)
              for k, x in ks.items()}
        ms_per_mb = v.number(o.get("ms_per_mb", 0.0), "overhead.ms_per_mb", lo=0.0, hi=1e3)
        wc = v.integer(o.get("weight_classes", 1000), "overhead.weight_classes", 1, 1_000_000)
        prov = d.get("provenance", {})
        if not isinstance(prov, dict):
            raise v.bad("provenance", type(prov).__name__, "a mapping")
        kd = v.mapping(d.get("kinds"), "kinds")
        kinds = {kind: v.kind_model(kind, kd.get(kind)) for kind in KINDS}
        pred = cls(device, convention, kinds, scale, offset, prov, ks, ms_per_mb, wc)
        # the whole: the smallest and the largest subnet must cost a finite, positive time
        lo, hi = SPACE.min(), SPACE.max()
        got = pred.predict_encoded(np.stack([SPACE.encode(lo), SPACE.encode(hi)]))
        if not (np.all(np.isfinite(got)) and np.all(got > 0)):
            raise PredictorError(
                f"{source}: with overhead.scale = {scale:g}, overhead.offset_ms = {offset:g} "
                f"it predicts {got[0]:.4g} ms for the smallest subnet and {got[1]:.4g} ms for "
                "the largest; a predictor must give finite, positive latencies: the file is "
                "damaged or was edited; regenerate it with evit-profile")
        return pred


class _Validator:
    """Checks one predictor dict field by field; errors name the file and the field."""

    def __init__(self, source: str):
        self.source = source

    def bad(self, field: str, value, allowed: str) -> PredictorError:
        shown = repr(value)
        shown = shown if len(shown) <= 80 else shown[:77] + "..."
        return PredictorError(f"{self.source}: {field or 'the file'} = {shown} is not valid; "
                              f"expected {allowed} (a damaged or edited predictor: regenerate "
                              "it with evit-profile)")

    def mapping(self, x, field: str) -> dict:
        if not isinstance(x, dict):
            raise self.bad(field, type(x).__name__ if field == "" else x,
                           "a JSON object" + (" at the top level" if field == "" else ""))
        return x

    def number(self, x, field: str, lo: float = -np.inf, hi: float = np.inf) -> float:
        ok = isinstance(x, (int, float)) and not isinstance(x, bool) and np.isfinite(x) \
            and lo <= x <= hi
        if not ok:
            rng = f"[{lo:g}, {hi:g}]"
            raise self.bad(field, x, f"a finite number in {rng}")
        return float(x)

    def integer(self, x, field: str, lo: int, hi: int, hint: str = "") -> int:
        if not isinstance(x, int) or isinstance(x, bool) or not lo <= x <= hi:
            raise self.bad(field, x, f"an integer in [{lo}, {hi}]" + (f"; {hint}" if hint else ""))
        return int(x)

    def array(self, x, field: str, kind: str) -> np.ndarray:
        if not isinstance(x, list):
            raise self.bad(field, type(x).__name__, "a list")
        try:
            a = np.asarray(x, dtype=np.float64) if kind == "f" else np.asarray(x)
        except (TypeError, ValueError, OverflowError):
            a = None
        if a is None or a.ndim != 1 or (kind == "i" and len(a) and a.dtype.kind not in "iub"):
            raise self.bad(field, x, "a flat list of " + ("integers" if kind == "i" else "numbers"))
        return a.astype(np.int64) if kind == "i" else a

    def kind_model(self, kind: str, k) -> KindModel:
        f = f"kinds.{kind}"
        k = self.mapping(k, f)
        if list(k.get("features") or []) != list(FEATURES[kind]):
            raise self.bad(f + ".features", k.get("features"), f"{list(FEATURES[kind])}")
        baseline = self.number(k.get("baseline"), f + ".baseline", -50.0, 50.0)
        trees = k.get("trees")
        if not isinstance(trees, list):
            raise self.bad(f + ".trees", type(trees).__name__, "a list of trees")
        nf = len(FEATURES[kind])
        names = ("feature", "threshold", "left", "right", "leaf", "value")
        cols: dict[str, list] = {name: [] for name in names}
        lens = []
        for i, t in enumerate(trees):
            tf = f"{f}.trees[{i}]"
            t = self.mapping(t, tf)
            for name in names:
                if not isinstance(t.get(name), list):
                    raise self.bad(f"{tf}.{name}", type(t.get(name)).__name__, "a list")
            n = len(t["value"])
            if n == 0 or any(len(t[name]) != n for name in names):
                raise self.bad(tf, {name: len(t[name]) for name in names},
                               "six arrays of one, non-zero length")
            lens.append(n)
            for name in names:
                cols[name].append(t[name])
        if trees:  # every tree of the kind at once (a file has thousands)
            arr = {}
            for name in names:
                kind_ = "f" if name in ("threshold", "value") else "i"
                try:
                    arr[name] = self.array(list(itertools.chain.from_iterable(cols[name])),
                                           name, kind_)
                except PredictorError:
                    for i, col in enumerate(cols[name]):  # which tree: for the message
                        self.array(col, f"{f}.trees[{i}].{name}", kind_)
                    raise
            lens_a = np.asarray(lens)
            start = np.repeat(np.cumsum(lens_a) - lens_a, lens_a)
            local = np.arange(len(start)) - start
            size = np.repeat(lens_a, lens_a)
            tree = np.repeat(np.arange(len(lens_a)), lens_a)

            def where(mask) -> tuple[str, int] | None:
                hit = np.flatnonzero(mask)
                return None if not len(hit) else (f"{f}.trees[{tree[hit[0]]}]", int(hit[0]))

            leaf, split = arr["leaf"], arr["leaf"] == 0
            checks = [
                (~np.isin(leaf, (0, 1)), "leaf", "0 or 1"),
                (~np.isfinite(arr["value"]) | (np.abs(arr["value"]) > 50), "value",
                 "a finite log-latency correction within ±50"),
                (split & ((arr["feature"] < 0) | (arr["feature"] >= nf)), "feature",
                 f"a feature index in [0, {nf - 1}]"),
                (split & np.isnan(arr["threshold"]), "threshold", "a number, not NaN"),
            ]
            for child in ("left", "right"):
                c = arr[child]
                checks.append((split & ((c <= local) | (c >= size)), child,
                               "a node after this one and inside the tree: children are "
                               "stored after their parent, so no walk can loop"))
            for mask, name, allowed in checks:
                hit = where(mask)
                if hit:
                    tf, j = hit
                    raise self.bad(f"{tf}.{name}[{local[j]}]", arr[name][j].item(), allowed)
            kids = np.concatenate([(start + arr["left"])[split], (start + arr["right"])[split]])
            twice = np.bincount(kids, minlength=len(start)) > 1
            hit = where(twice)
            if hit:
                raise self.bad(f"{hit[0]} node {local[hit[1]]}", "two parents",
                               "a tree: one parent per node")
        out = [dict(zip(names, row)) for row in zip(*(cols[n] for n in names))]
        lin = k.get("linear")
        coef = None
        if lin is not None:
            lin = self.mapping(lin, f + ".linear")
            want = KindModel.linear_features(kind) + ["1"]
            if list(lin.get("features") or []) != want:
                raise self.bad(f + ".linear.features", lin.get("features"), f"{want}")
            c = lin.get("coef")
            if not isinstance(c, list) or len(c) != len(want):
                raise self.bad(f + ".linear.coef", c, f"{len(want)} numbers")
            coef = [self.number(x, f"{f}.linear.coef[{j}]", 0.0, 1e6) for j, x in enumerate(c)]
        return KindModel(kind, baseline, out, coef)
