"""The reference profile: what benign traffic to one victim model looks like.

A :class:`Profile` is fitted once from the victim model and its training data
(and, when the owner has one, a held-out calibration split). It holds the
feature scaling, a compact reference index of the training data, and the
calibration distribution of every per-query statistic the detectors use.

Calibration is honest: statistics are calibrated on data the victim did not
train on. With a calibration split we use it; without one we cross-fit (clones
of the model trained on folds of the training data, distances measured to the
other folds only). Calibrating on the victim's own training points would make
every real held-out input look suspicious.

Saved as a folder of ``profile.json`` + ``arrays.npz``; loading never unpickles.

>>> from sklearn.datasets import load_iris
>>> from sklearn.linear_model import LogisticRegression
>>> X, y = load_iris(return_X_y=True)
>>> model = LogisticRegression(max_iter=500).fit(X[::2], y[::2])
>>> profile = Profile(seed=0).fit(model, X[::2], y[::2], X_cal=X[1::2], y_cal=y[1::2])
>>> profile.n_features_, profile.boundary_kind_, len(profile.calibration_["density"]["statistic"])
(4, 'margin', 150)
"""

from __future__ import annotations

import json
import platform
from pathlib import Path
from typing import Any

import numpy as np
import sklearn
from sklearn.base import clone
from sklearn.model_selection import StratifiedKFold

from monitor.detectors.base import HeldOutSplit
from monitor.errors import InvalidInput
from monitor.geometry import TreeGeometry

MIN_NULL_MEMBER_VALUES = 100
"""Fewest p-values one drift member of the benign null is built from."""
PROFILE_FORMAT_VERSION = 3
"""Version of the profile folder layout :meth:`Profile.save` writes."""
LEGACY_FORMAT_VERSION = 2
"""The previous layout (fixed calibration arrays), still read."""


class _fit_method:
    """``Profile().fit(...)`` as in scikit-learn, and ``Profile.fit(...)`` with default parameters."""

    def __init__(self, func) -> None:
        self.func = func
        self.__doc__ = func.__doc__

    def __get__(self, instance, owner):
        target = instance if instance is not None else owner()
        return self.func.__get__(target, owner)


def _as_matrix(X, name: str, n_features: int | None = None) -> np.ndarray:
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2:
        raise InvalidInput(f"{name} must be a 2-D array of rows, got shape {X.shape}")
    if n_features is not None and X.shape[1] != n_features:
        raise InvalidInput(f"{name} has {X.shape[1]} features, the model expects {n_features}")
    if not np.isfinite(X).all():
        raise InvalidInput(f"{name} contains NaN or infinite values; drop or impute those rows")
    return X


class Profile:
    """Reference profile of a victim model (scikit-learn style estimator).

    Parameters
    ----------
    k_neighbors : neighbours averaged in the training-density statistic.
    max_reference : training rows kept in the reference index (seeded subsample).
    n_folds : folds for cross-fitted calibration when no calibration split is given.
    cross_fit : also calibrate on cross-fitted training folds when a calibration split
        is given (more calibration values give conformal p-values finer resolution).
    drift_noise, drift_scale, drift_draws : the benign drift the monitor must tolerate:
        Gaussian noise of ``drift_noise`` x each feature's standard deviation and a
        per-feature scale drawn uniformly in ``drift_scale``. ``drift_draws`` drifted copies
        of the held-out rows (each one drifted client) give each detector's p-values under
        drift; the window tests are calibrated against them as members of the benign null
        (0 draws: no drift model).
    exposure_points : held-out rows kept, with the victim's labels on them, for exposure
        accounting (:mod:`monitor.exposure`); 0 keeps none.
    seed : random seed for subsampling and folds.
    """

    def __init__(self, k_neighbors: int = 5, max_reference: int = 2000, n_folds: int = 5,
                 cross_fit: bool = True, drift_noise: float = 0.1,
                 drift_scale: tuple[float, float] = (0.9, 1.15), drift_draws: int = 20,
                 exposure_points: int = 256, seed: int = 0) -> None:
        self.k_neighbors = k_neighbors
        self.cross_fit = cross_fit
        self.drift_noise = drift_noise
        self.drift_scale = tuple(drift_scale)
        self.drift_draws = drift_draws
        self.max_reference = max_reference
        self.n_folds = n_folds
        self.exposure_points = exposure_points
        self.seed = seed

    # ------------------------------------------------------------------ fitting
    @_fit_method
    def fit(self, model, X_train, y_train=None, X_cal=None, y_cal=None,
            feature_names: list[str] | None = None) -> Profile:
        """Fit the profile from the victim ``model`` and its training data."""
        from monitor.detectors import REGISTRY, CalibrationData

        if not hasattr(model, "predict_proba"):
            raise InvalidInput("the model must have predict_proba (a scikit-learn classifier)")
        X_train = _as_matrix(X_train, "training data")
        d = X_train.shape[1]
        rng = np.random.default_rng(self.seed)

        std = X_train.std(axis=0)
        positive = std[std > 0]
        floor = 0.25 * float(np.median(positive)) if len(positive) else 1.0
        self.center_ = X_train.mean(axis=0)
        self.scale_ = np.maximum(std, floor)
        self.n_features_ = d
        self.classes_ = np.asarray(model.classes_)
        self.feature_names_ = list(feature_names) if feature_names is not None else [
            f"x_{i}" for i in range(d)]
        self.tree_ = TreeGeometry.from_model(model)
        self.boundary_kind_ = "tree" if self.tree_ is not None else "margin"

        Z_train = self.transform(X_train)
        keep = np.sort(rng.permutation(len(Z_train))[: self.max_reference])
        self.reference_ = Z_train[keep].astype(np.float32)

        splits = []
        if X_cal is not None:
            X_cal = _as_matrix(X_cal, "calibration data", d)
            splits.append(HeldOutSplit(
                X=X_cal, Z=self.transform(X_cal), reference=self.reference_.astype(np.float64),
                proba=model.predict_proba(X_cal), tree=self.tree_,
                source=f"calibration split ({len(X_cal)} rows)", model=model))
        if self.cross_fit or X_cal is None:
            y = np.asarray(y_train) if y_train is not None else model.predict(X_train)
            splits.extend(self._cross_fit_splits(model, X_train, Z_train, y, rng))
        data = CalibrationData(splits=splits, k_neighbors=self.k_neighbors, scale=self.scale_,
                               reference=self.reference_.astype(np.float64))
        sources = [s.source for s in splits if s.source.startswith("calibration")]
        if len(splits) > len(sources):
            sources.append(f"{self.n_folds}-fold cross-fitting on the training data "
                           f"({len(X_train)} rows)")
        self.calibration_source_ = " + ".join(sources)
        self.calibration_ = {name: dict(cls.calibrate(data)) for name, cls in REGISTRY.items()}
        held_out = X_cal if X_cal is not None else X_train
        self._calibrate_drift(data, rng)
        self.exposure_ = {}
        if self.exposure_points > 0:
            from monitor.exposure import ExposureTracker

            labels = np.searchsorted(self.classes_, model.predict(held_out))
            self.exposure_ = ExposureTracker.calibrate(
                self.transform(held_out), labels, np.random.default_rng([self.seed, 1]),
                self.exposure_points)
        self.meta_ = {"model": type(model).__name__, "n_train": int(len(X_train)),
                      "sklearn": sklearn.__version__, "python": platform.python_version()}
        return self

    def _cross_fit_splits(self, model, X, Z, y, rng) -> list[HeldOutSplit]:
        """One held-out split per fold: scored by a clone fitted on the other folds, with
        distances measured to (a subsample of) the other folds only."""
        folds = StratifiedKFold(n_splits=self.n_folds, shuffle=True,
                                random_state=int(rng.integers(2**31)))
        splits = []
        for fit_idx, held_idx in folds.split(X, y):
            ref_idx = fit_idx[rng.permutation(len(fit_idx))[: self.max_reference]]
            fold_model = clone(model).fit(X[fit_idx], y[fit_idx])
            splits.append(HeldOutSplit(
                X=X[held_idx], Z=Z[held_idx], reference=Z[ref_idx],
                proba=fold_model.predict_proba(X[held_idx]),
                tree=TreeGeometry.from_model(fold_model), source="cross-fitting fold",
                model=fold_model))
        return splits

    def _calibrate_drift(self, data, rng) -> None:
        """Each stateless detector's p-values on drifted copies of every held-out split,
        stored as its ``drift_pvalues`` (draws, rows).

        One draw is one drifted client: a per-feature scale in ``drift_scale`` shared by all
        its rows, plus Gaussian noise of ``drift_noise`` x each feature's standard deviation
        (features never negative in the data stay non-negative). Each split's drifted rows
        are measured exactly as its calibration rows were — against the same reference, by
        the model that did not train on them — through each detector's own ``calibrate``.
        """
        from monitor.detectors import REGISTRY, HeldOutSplit
        from monitor.tails import tail_pvalues

        detectors = {name: cls(self) for name, cls in REGISTRY.items()
                     if not cls.stateful and not getattr(cls, "needs_stream", False)}
        pooled = np.concatenate([split.X for split in data.splits])
        std = pooled.std(axis=0)
        non_negative = pooled.min(axis=0) >= 0
        pvalues: dict[str, list[np.ndarray]] = {name: [] for name in detectors}
        for _ in range(self.drift_draws):
            scale = rng.uniform(*self.drift_scale, size=pooled.shape[1])
            splits = []
            for split in data.splits:
                X = split.X * scale + rng.normal(size=split.X.shape) * (self.drift_noise * std)
                X = np.where(non_negative, np.maximum(X, 0.0), X)
                splits.append(HeldOutSplit(
                    X=X, Z=self.transform(X), reference=split.reference,
                    proba=split.model.predict_proba(X) if split.model is not None else None,
                    tree=split.tree, source=f"drifted {split.source}"))
            drifted = data.with_splits(splits)
            for name, detector in detectors.items():
                stats = REGISTRY[name].calibrate(drifted)["statistic"]
                pvalues[name].append(tail_pvalues(stats, detector.calibration,
                                                  getattr(detector, "tail", None)))
        for name, draws in pvalues.items():
            self.calibration_[name]["drift_pvalues"] = np.asarray(
                draws, np.float32).reshape(len(draws), len(pooled))

    def unit_radius(self) -> float:
        """The evidence-unit radius (:mod:`monitor.units`): a low quantile of held-out rows'
        distances to their nearest training row, from the ``chain`` calibration."""
        from monitor.units import calibrate_radius

        nearest = -np.asarray(self.calibration_.get("chain", {}).get("statistic", []))
        return calibrate_radius(nearest)

    def null_members(self, detector: str) -> list[np.ndarray]:
        """The benign p-value samples beyond uniform that ``detector``'s window tests must
        tolerate: the detector's p-values on drifted copies of the held-out rows (the drift
        model), each copy a member — or, when the held-out data is small, a few copies pooled
        so every member has at least :data:`MIN_NULL_MEMBER_VALUES` values (a member of 36
        rows is too lumpy to stand for a drifted client's distribution). Empty without a
        drift model."""
        draws = self.calibration_.get(detector, {}).get("drift_pvalues", np.zeros((0, 0)))
        draws = np.asarray(draws, dtype=np.float64)
        if draws.ndim != 2 or draws.size == 0:
            return []
        per_member = int(np.ceil(MIN_NULL_MEMBER_VALUES / draws.shape[1]))
        return [draws[i:i + per_member].ravel() for i in range(0, len(draws), per_member)]

    def drift_rate(self, detector: str, level: float) -> float:
        """The largest rate, over the drift draws, of p <= ``level`` for ``detector``.

        0.0 when there is no drift model or no such detector in it.
        """
        pvalues = self.calibration_.get(detector, {}).get("drift_pvalues")
        if pvalues is None or len(pvalues) == 0:
            return 0.0
        return float((pvalues <= level).mean(axis=1).max())

    # ------------------------------------------------------------------ use
    def transform(self, X: np.ndarray) -> np.ndarray:
        """Rows in the profile's scaled feature space."""
        return (np.asarray(X, dtype=np.float64) - self.center_) / self.scale_

    def check_rows(self, X, name: str = "rows") -> np.ndarray:
        """``X`` as an ``(n, d)`` float array, or :class:`InvalidInput` saying what is wrong."""
        X = np.asarray(X, dtype=np.float64) if not isinstance(X, np.ndarray) else X
        if X.ndim == 1:
            X = X[None, :]
        return _as_matrix(X, name, self.n_features_)

    # ------------------------------------------------------------------ persistence
    _ARRAYS = ("center_", "scale_", "classes_", "reference_")

    def save(self, path: str | Path) -> Path:
        """Write the profile to folder ``path`` (``profile.json`` + ``arrays.npz``)."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        arrays = {name.rstrip("_"): getattr(self, name) for name in self._ARRAYS}
        for detector, values in self.calibration_.items():
            arrays.update({f"calibration.{detector}.{key}": v for key, v in values.items()})
        arrays.update({f"exposure.{key}": v for key, v in self.exposure_.items()})
        if self.tree_ is not None:
            arrays.update(self.tree_.to_arrays())
        np.savez_compressed(path / "arrays.npz", **arrays)
        meta: dict[str, Any] = {
            "format_version": PROFILE_FORMAT_VERSION,
            "params": {"k_neighbors": self.k_neighbors, "max_reference": self.max_reference,
                       "n_folds": self.n_folds, "cross_fit": self.cross_fit,
                       "drift_noise": self.drift_noise, "drift_scale": list(self.drift_scale),
                       "drift_draws": self.drift_draws,
                       "exposure_points": self.exposure_points, "seed": self.seed},
            "n_features": self.n_features_, "feature_names": self.feature_names_,
            "boundary_kind": self.boundary_kind_, "calibration_source": self.calibration_source_,
            "detectors": sorted(self.calibration_),
            **self.meta_,
        }
        (path / "profile.json").write_text(json.dumps(meta, indent=2) + "\n")
        return path

    @classmethod
    def load(cls, path: str | Path) -> Profile:
        """Read a profile folder written by :meth:`save` (no pickle involved).

        Profiles of format version 2 (before per-detector calibration) are converted.
        """
        path = Path(path)
        meta_file = path / "profile.json"
        if not meta_file.exists():
            raise InvalidInput(f"{path} is not a profile folder (no profile.json); "
                               "create one with `extraction-monitor profile`")
        meta = json.loads(meta_file.read_text())
        version = meta.get("format_version")
        if version not in (LEGACY_FORMAT_VERSION, PROFILE_FORMAT_VERSION):
            raise InvalidInput(f"profile {path} has format version {version}; this release "
                               f"reads versions {LEGACY_FORMAT_VERSION} and "
                               f"{PROFILE_FORMAT_VERSION}: refit it with "
                               "`extraction-monitor profile`")
        profile = cls(**meta["params"])
        with np.load(path / "arrays.npz", allow_pickle=False) as arrays:
            for name in cls._ARRAYS:
                setattr(profile, name, arrays[name.rstrip("_")])
            profile.tree_ = TreeGeometry.from_arrays(arrays)
            profile.exposure_ = {key.split(".", 1)[1]: arrays[key] for key in arrays.files
                                 if key.startswith("exposure.")}
            if version == LEGACY_FORMAT_VERSION:
                profile.calibration_ = _legacy_calibration(arrays)
            else:
                profile.calibration_ = {}
                for key in arrays.files:
                    if key.startswith("calibration."):
                        _, detector, name = key.split(".", 2)
                        profile.calibration_.setdefault(detector, {})[name] = arrays[key]
        profile.n_features_ = int(meta["n_features"])
        profile.feature_names_ = list(meta["feature_names"])
        profile.boundary_kind_ = meta["boundary_kind"]
        profile.calibration_source_ = meta["calibration_source"]
        profile.meta_ = {k: meta[k] for k in ("model", "n_train", "sklearn", "python")}
        return profile


def _legacy_calibration(arrays) -> dict[str, dict[str, np.ndarray]]:
    """Per-detector calibration from a format-2 profile's fixed arrays."""
    return {
        "density": {"statistic": arrays["cal_density"], "drift_pvalues": arrays["drift_density"]},
        "boundary": {"statistic": arrays["cal_boundary"],
                     "drift_pvalues": arrays["drift_boundary"]},
        "chain": {"statistic": np.sort(-arrays["cal_nearest"])},
    }


__all__ = ["PROFILE_FORMAT_VERSION", "Profile"]
