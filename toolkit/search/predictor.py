"""Accuracy predictor: top-1 of a subnet from its encoding, fitted on measured subnets.

As OFA and AttentiveNAS ship one: measure the real fitness (BN recalibration + top-1 on the
search split) of a few hundred subnets once per supernet, fit a small model, and let the
evolutionary search ask it thousands of times; the final top-k are measured for real
(``evolution.rerank``).

Features: each column of the encoding one-hot over the full space's choices, plus log
MFLOPs. Model: an averaged ensemble of small ReLU MLPs or a ridge line (a one-layer MLP),
whichever ranks held-out subnets better in 5-fold cross-validation. The file is JSON (arrays
of numbers, validated on load as untrusted input), never a pickle.

Measurements are kept in one JSON file per (supernet, fitness settings), rewritten
atomically after every subnet, so an interrupted collection resumes where it stopped.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from toolkit import fileio
from toolkit.fileio import atomic_write_json
from toolkit.space import COLUMNS, SPACE, ArchConfig

FORMAT = "evit-accuracy-predictor"
MEASUREMENTS = "evit-accuracy-measurements"
VERSION = 1
_LIMITS = {"members": 16, "layers": 6, "width": 1024}


class AccuracyPredictorError(ValueError):
    pass


def cache_dir() -> Path:
    return fileio.cache_dir("accuracy")


def fitness_key(supernet_sha256: str, fitness: dict) -> str:
    """The name of a (supernet, fitness settings) pair's measurement file."""
    blob = json.dumps({"supernet": supernet_sha256, "fitness": fitness}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


# --------------------------------------------------------------------------- features


def _choices() -> list[tuple[int, ...]]:
    return [tuple(int(v) for v in c) for c in SPACE.choices]


def features(enc: np.ndarray, num_classes: int) -> np.ndarray:
    """One-hot of every column over the full space's choices, then log MFLOPs."""
    from toolkit.flops import flops_encoded

    enc = np.atleast_2d(np.asarray(enc, dtype=np.int64))
    parts = [(enc[:, j:j + 1] == np.asarray(c)[None]).astype(np.float64)
             for j, c in enumerate(_choices())]
    mf = np.asarray(flops_encoded(enc, num_classes), dtype=np.float64)
    parts.append(np.log(mf)[:, None])
    return np.concatenate(parts, axis=1)


def kendall_tau(a: Sequence[float], b: Sequence[float]) -> float:
    from scipy.stats import kendalltau

    t = kendalltau(np.asarray(a), np.asarray(b)).statistic
    return float(t) if np.isfinite(t) else 0.0


def held_out(arch_json: str, fraction: float = 0.2) -> bool:
    """A fixed, content-addressed test split: the same subnet is always on the same side."""
    h = int(hashlib.sha256(arch_json.encode()).hexdigest()[:8], 16)
    return h / 0xFFFFFFFF < fraction


# --------------------------------------------------------------------------- the model


class AccuracyPredictor:
    def __init__(self, members: list[list[tuple[np.ndarray, np.ndarray]]], x_mean: np.ndarray,
                 x_std: np.ndarray, y_mean: float, y_std: float, num_classes: int,
                 info: dict | None = None):
        self.members, self.num_classes = members, num_classes
        self.x_mean, self.x_std, self.y_mean, self.y_std = x_mean, x_std, y_mean, y_std
        self.info = dict(info or {})

    # -- prediction
    def predict_encoded(self, enc: np.ndarray) -> np.ndarray:
        return np.clip(self._raw(features(enc, self.num_classes)), 0.0, 1.0)

    def predict(self, archs: Sequence[ArchConfig]) -> list[float]:
        """The search's fitness callable: predicted top-1 (0..1) of each subnet."""
        return self.predict_encoded(SPACE.encode_many(list(archs))).tolist()

    __call__ = predict

    # -- fitting
    @classmethod
    def fit(cls, enc: np.ndarray, top1: np.ndarray, num_classes: int, seed: int = 0,
            kind: str = "ridge", info: dict | None = None) -> AccuracyPredictor:
        """Fit on measured subnets. ``kind``: "ridge" (the default: fits in milliseconds),
        "mlp" (an ensemble of five small nets, seconds) or "auto" (the one with the higher
        5-fold cross-validated Kendall tau; recorded in ``info["selection"]``)."""
        enc = np.asarray(enc, dtype=np.int64)
        y = np.asarray(top1, dtype=np.float64)
        if len(y) < 10:
            raise AccuracyPredictorError(f"{len(y)} measured subnets; an accuracy predictor "
                                         "needs at least 10 (measure more)")
        if kind not in ("auto", "mlp", "ridge"):
            raise AccuracyPredictorError(f"kind = {kind!r}; choose auto, mlp or ridge")
        info = dict(info or {})
        X = features(enc, num_classes)
        if kind == "auto":
            folds = np.arange(len(y)) % 5
            np.random.default_rng(seed).shuffle(folds)
            cv = {}
            for k in ("ridge", "mlp"):
                pred = np.zeros(len(y))
                for f in range(5):
                    tr = folds != f
                    pred[~tr] = cls._fit(X[tr], y[tr], num_classes, seed, k)._raw(X[~tr])
                cv[k] = kendall_tau(pred, y)
            kind = max(cv, key=lambda k: (cv[k], k == "ridge"))
            info["selection"] = {"cv_kendall_tau": cv, "chosen": kind}
        model = cls._fit(X, y, num_classes, seed, kind)
        model.info = {**info, "kind": kind, "subnets": int(len(y))}
        return model

    @classmethod
    def _fit(cls, X, y, num_classes, seed, kind) -> AccuracyPredictor:
        mean, std = X.mean(0), X.std(0)
        std = np.where(std > 1e-12, std, 1.0)
        ym, ys = float(y.mean()), float(y.std()) or 1.0
        Xs, yz = (X - mean) / std, (y - ym) / ys
        members = []
        if kind == "ridge":
            from sklearn.linear_model import RidgeCV

            r = RidgeCV(alphas=np.logspace(-2, 3, 11)).fit(Xs, yz)
            members.append([(r.coef_[:, None].astype(np.float64), np.array([r.intercept_]))])
        else:
            import warnings

            from sklearn.exceptions import ConvergenceWarning
            from sklearn.neural_network import MLPRegressor

            warnings.filterwarnings("ignore", category=ConvergenceWarning)  # capped on purpose
            for m in range(5):  # an average of five smooths out one net's luck
                net = MLPRegressor(hidden_layer_sizes=(32,), alpha=1.0, solver="lbfgs",
                                   max_iter=300, random_state=seed * 100 + m).fit(Xs, yz)
                members.append([(np.asarray(w, dtype=np.float64), np.asarray(b, np.float64))
                                for w, b in zip(net.coefs_, net.intercepts_)])
        return cls(members, mean, std, ym, ys, num_classes)

    def _raw(self, X: np.ndarray) -> np.ndarray:
        x = (X - self.x_mean) / self.x_std
        out = np.zeros(len(x))
        for layers in self.members:
            h = x
            for i, (w, b) in enumerate(layers):
                h = h @ w + b
                if i < len(layers) - 1:
                    h = np.maximum(h, 0.0)
            out += h[:, 0]
        return out / len(self.members) * self.y_std + self.y_mean

    # -- files
    def to_dict(self) -> dict:
        return {"format": FORMAT, "version": VERSION, "num_classes": self.num_classes,
                "features": {"columns": list(COLUMNS), "choices": [list(c) for c in _choices()],
                             "extra": ["log_mflops"]},
                "x_mean": self.x_mean.tolist(), "x_std": self.x_std.tolist(),
                "y_mean": self.y_mean, "y_std": self.y_std,
                "members": [[{"weight": w.tolist(), "bias": b.tolist()} for w, b in layers]
                            for layers in self.members],
                "info": self.info}

    def save(self, path: str | Path) -> None:
        atomic_write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | Path) -> AccuracyPredictor:
        p = Path(path)
        if not p.is_file():
            raise AccuracyPredictorError(f"no accuracy predictor at {p}")
        try:
            d = json.loads(p.read_text())
        except (ValueError, UnicodeDecodeError) as e:
            raise AccuracyPredictorError(f"{p} is not an accuracy predictor (not JSON: {e})"
                                         ) from None
        return cls.from_dict(d, str(p))

    @classmethod
    def from_dict(cls, d: object, source: str = "<dict>") -> AccuracyPredictor:
        def bad(field: str, value, allowed: str) -> AccuracyPredictorError:
            v = repr(value)
            v = v if len(v) <= 80 else v[:77] + "..."
            return AccuracyPredictorError(f"{source}: {field} = {v} is not valid; {allowed}")

        def array(x, field: str, shape: tuple) -> np.ndarray:
            try:
                a = np.asarray(x, dtype=np.float64)
            except (TypeError, ValueError):
                raise bad(field, x, f"an array of numbers of shape {shape}") from None
            if a.shape != shape or not np.all(np.isfinite(a)):
                raise bad(field, f"shape {a.shape}" if a.shape != shape else "non-finite",
                          f"finite numbers, shape {shape}")
            return a

        if not isinstance(d, dict):
            raise bad("(top level)", type(d).__name__, "a JSON object")
        if d.get("format") != FORMAT or d.get("version") != VERSION:
            raise bad("format/version", (d.get("format"), d.get("version")),
                      f"({FORMAT!r}, {VERSION}): make one with evit-search --fitness predictor")
        f = d.get("features")
        want = {"columns": list(COLUMNS), "choices": [list(c) for c in _choices()],
                "extra": ["log_mflops"]}
        if f != want:
            raise bad("features", f, "the columns and choices of this evit's search space "
                      "(the predictor was made for another space or version; refit it)")
        nc = d.get("num_classes")
        if type(nc) is not int or not 1 <= nc <= 100_000:
            raise bad("num_classes", nc, "an integer in [1, 100000]")
        n_in = sum(len(c) for c in want["choices"]) + 1
        x_mean = array(d.get("x_mean"), "x_mean", (n_in,))
        x_std = array(d.get("x_std"), "x_std", (n_in,))
        if np.any(x_std <= 0):
            raise bad("x_std", "a value <= 0", "positive scales")
        ym, ys = (array(d.get(k), k, ()) for k in ("y_mean", "y_std"))
        if not (0 <= ym <= 1 and 0 < ys <= 1):
            raise bad("y_mean/y_std", (float(ym), float(ys)), "a top-1 mean in [0, 1] and a "
                      "spread in (0, 1]")
        members = d.get("members")
        if not isinstance(members, list) or not 1 <= len(members) <= _LIMITS["members"]:
            raise bad("members", type(members).__name__ if not isinstance(members, list)
                      else f"{len(members)} members", f"a list of 1..{_LIMITS['members']} nets")
        out = []
        for i, layers in enumerate(members):
            if not isinstance(layers, list) or not 1 <= len(layers) <= _LIMITS["layers"]:
                raise bad(f"members[{i}]", layers if not isinstance(layers, list)
                          else f"{len(layers)} layers", f"1..{_LIMITS['layers']} layers")
            width, net = n_in, []
            for j, layer in enumerate(layers):
                lf = f"members[{i}][{j}]"
                if not isinstance(layer, dict):
                    raise bad(lf, type(layer).__name__, "an object with weight and bias")
                w = layer.get("weight")
                cols = len(w[0]) if isinstance(w, list) and w and isinstance(w[0], list) else -1
                last = j == len(layers) - 1
                if (last and cols != 1) or not 1 <= cols <= _LIMITS["width"]:
                    raise bad(lf + ".weight", f"{cols} outputs", "1 output in the last layer, "
                              f"1..{_LIMITS['width']} in hidden ones")
                net.append((array(w, lf + ".weight", (width, cols)),
                            array(layer.get("bias"), lf + ".bias", (cols,))))
                width = cols
            out.append(net)
        info = d.get("info", {})
        if not isinstance(info, dict):
            raise bad("info", type(info).__name__, "an object")
        return cls(out, x_mean, x_std, float(ym), float(ys), nc, info)


# --------------------------------------------------------------------------- measurements


class Measurements:
    """Real fitness of subnets for one (supernet, fitness settings): a JSON file rewritten
    atomically after each subnet."""

    def __init__(self, path: str | Path, header: dict):
        self.path, self.header = Path(path), dict(header)
        self.top1: dict[str, float] = {}
        if self.path.is_file():
            self._read()

    def _read(self) -> None:
        p = self.path
        try:
            d = json.loads(p.read_text())
        except (ValueError, UnicodeDecodeError) as e:
            raise AccuracyPredictorError(f"{p} is damaged ({e}); delete it to measure again"
                                         ) from None
        if not isinstance(d, dict) or d.get("format") != MEASUREMENTS:
            raise AccuracyPredictorError(f"{p} is not an evit accuracy-measurement file")
        if d.get("header") != self.header:
            raise AccuracyPredictorError(
                f"{p} holds measurements of another supernet or fitness setting "
                f"({d.get('header')}); delete it or use another file")
        subnets = d.get("subnets")
        if not isinstance(subnets, list):
            raise AccuracyPredictorError(f"{p}: subnets is not a list")
        for i, s in enumerate(subnets):
            try:
                arch = ArchConfig.from_dict(s["arch"])
                v = float(s["top1"])
            except (KeyError, TypeError, ValueError) as e:
                raise AccuracyPredictorError(f"{p}: subnets[{i}] is not valid ({e})") from None
            if not 0 <= v <= 1:
                raise AccuracyPredictorError(f"{p}: subnets[{i}].top1 = {v}; must be in [0, 1]")
            self.top1[arch.to_json()] = v

    def save(self) -> None:
        atomic_write_json(self.path, {
            "format": MEASUREMENTS, "version": VERSION, "header": self.header,
            "subnets": [{"arch": json.loads(k), "top1": v} for k, v in self.top1.items()]})

    def collect(self, fitness: Callable[[Sequence[ArchConfig]], list[float]],
                candidates: Sequence[ArchConfig], n: int,
                progress: Callable[[int, int], None] | None = None) -> int:
        """Measure ``candidates`` in order until ``n`` of them are measured (earlier
        measurements count); returns how many were measured now."""
        have = sum(a.to_json() in self.top1 for a in candidates)
        done = 0
        for a in candidates:
            if have >= n:
                break
            k = a.to_json()
            if k in self.top1:
                continue
            self.top1[k] = float(fitness([a])[0])
            self.save()
            have += 1
            done += 1
            if progress is not None:
                progress(have, n)
        return done

    def arrays(self, keys: Sequence[str] | None = None) -> tuple[list[str], np.ndarray,
                                                                 np.ndarray]:
        keys = list(self.top1) if keys is None else list(keys)
        enc = SPACE.encode_many([ArchConfig.from_json(k) for k in keys])
        return keys, enc, np.array([self.top1[k] for k in keys])


def evaluate_split(keys: Sequence[str], enc: np.ndarray, y: np.ndarray, num_classes: int,
                   seed: int = 0, kind: str = "ridge") -> dict:
    """Held-out quality: fit on the subnets not in the fixed test split, score the rest."""
    test = np.array([held_out(k) for k in keys])
    if test.sum() < 5 or (~test).sum() < 10:
        return {"n_train": int((~test).sum()), "n_test": int(test.sum())}
    m = AccuracyPredictor.fit(enc[~test], y[~test], num_classes, seed, kind)
    p = np.asarray(m.predict_encoded(enc[test]))
    err = p - y[test]
    from scipy.stats import spearmanr

    return {"n_train": int((~test).sum()), "n_test": int(test.sum()),
            "kendall_tau": kendall_tau(p, y[test]),
            "spearman": float(spearmanr(p, y[test]).statistic),
            "mae": float(np.abs(err).mean()), "rmse": float(np.sqrt((err ** 2).mean())),
            "max_error": float(np.abs(err).max()), "kind": m.info.get("kind"),
            "test_top1_range": [float(y[test].min()), float(y[test].max())]}


def build(measurements: Measurements, num_classes: int, seed: int = 0,
          kind: str = "auto") -> AccuracyPredictor:
    """Fit on every measured subnet (``kind`` "auto": ridge or the MLP ensemble, whichever
    ranks better in 5-fold cross-validation); the held-out figures (the same kind fit
    without the test split) and the measurement provenance go into ``info``."""
    keys, enc, y = measurements.arrays()
    t0 = time.time()
    model = AccuracyPredictor.fit(enc, y, num_classes, seed, kind,
                                  info={"header": measurements.header})
    model.info["held_out"] = evaluate_split(keys, enc, y, num_classes, seed,
                                            model.info["kind"])
    model.info["fit_s"] = round(time.time() - t0, 2)
    return model


def prepare(evaluator, cost, lo: float, hi: float, n: int, header: dict, space=SPACE,
            seed: int = 0, say: Callable[[str], None] = lambda m: None, bar: bool = True,
            path: str | Path | None = None) -> AccuracyPredictor:
    """Measure (or reuse) ``n`` subnets with cost in [lo, hi], then fit the predictor.

    Candidates are uniform feasible draws from a generator fixed by ``seed``, so an
    interrupted collection, or a later search over the same window, continues with the
    same subnets; measurements of other windows in the same file are used for fitting too.
    """
    from toolkit.search.evolution import _feasible_samples

    path = Path(path) if path is not None else (
        cache_dir() / f"{fitness_key(header['supernet_sha256'], header)}.json")
    meas = Measurements(path, header)
    candidates = _feasible_samples(cost, lo, hi, 4 * n, np.random.default_rng((seed, 4242)),
                                   4096 * 2000, space)
    if not candidates:
        raise AccuracyPredictorError(f"no subnet found in [{lo:.2f}, {hi:.2f}] {cost.unit} to "
                                     "measure for the accuracy predictor")
    inside = sum(a.to_json() in meas.top1 for a in candidates)
    if inside < n:
        say(f"accuracy predictor: measuring {min(n, len(candidates)) - inside} subnets in "
            f"[{lo:.2f}, {hi:.2f}] {cost.unit} ({inside} already measured; resumable, kept "
            f"in {path})")
        t = None
        if bar:
            import sys

            if sys.stderr.isatty():
                from tqdm import tqdm

                t = tqdm(total=min(n, len(candidates)), initial=inside, unit="subnet",
                         desc="measuring", file=sys.stderr)

        def tick(have: int, total: int) -> None:
            if t is not None:
                t.update(1)
            elif have % 25 == 0 or have == total:
                say(f"accuracy predictor: {have}/{total} subnets measured")

        t0 = time.time()
        done = meas.collect(evaluator.evaluate, candidates, n, tick)
        if t is not None:
            t.close()
        say(f"accuracy predictor: measured {done} subnets in {time.time() - t0:.0f} s")
    model = build(meas, evaluator.net.num_classes, seed)
    model.info["measurements"] = str(path)
    model.info["window"] = {"lo": lo, "hi": hi, "unit": cost.unit}
    return model
