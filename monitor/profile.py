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

The profile records the model's features as it sees them (:mod:`monitor.features`: names,
kinds, categories, where missing values are accepted) and what the model answers: a classifier
with ``predict_proba`` (probability margins), with ``decision_function`` only (decision margins),
with labels only (no margins), or a regressor (real values; no decision boundary).

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
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import sklearn
from sklearn.base import clone
from sklearn.model_selection import KFold, StratifiedKFold

from monitor.answers import AnswerCodes
from monitor.detectors.base import HeldOutSplit
from monitor.errors import InvalidInput
from monitor.features import FeatureSchema, FeatureSpace, Rows, model_kind
from monitor.geometry import TreeGeometry

MIN_NULL_MEMBER_VALUES = 100
"""Fewest p-values one drift member of the benign null is built from."""
PROFILE_FORMAT_VERSION = 4
"""Version of the profile folder layout :meth:`Profile.save` writes (4: feature schema, task
and model outputs; readers of 3 would misread categorical, missing-value and regression
profiles)."""
READ_FORMAT_VERSIONS = (2, 3, 4)
"""Layouts :meth:`Profile.load` reads: 2 (fixed calibration arrays) and 3 (per-detector
calibration) are numeric classifiers with ``predict_proba``."""
LEGACY_FORMAT_VERSION = 2
"""The oldest layout still read (fixed calibration arrays)."""


class _fit_method:
    """``Profile().fit(...)`` as in scikit-learn, and ``Profile.fit(...)`` with default parameters."""

    def __init__(self, func) -> None:
        self.func = func
        self.__doc__ = func.__doc__

    def __get__(self, instance, owner):
        target = instance if instance is not None else owner()
        return self.func.__get__(target, owner)


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
        """Fit the profile from the victim ``model`` and its training data.

        ``X_train`` (and ``X_cal``) are arrays, or DataFrames whose columns are mapped by name
        (a model fitted on a DataFrame is called with one); ``model`` is a fitted classifier
        (``predict_proba``, ``decision_function`` or labels only) or regressor.
        """
        from monitor.detectors import REGISTRY, CalibrationData

        self.task_, self.output_kind_ = model_kind(model)
        self.schema_ = FeatureSchema.fit(X_train, model, feature_names)
        train = self.schema_.rows(X_train, "training data")
        X = train.X
        if len(X) < 2:
            raise InvalidInput("training data needs at least 2 rows")
        d = X.shape[1]
        rng = np.random.default_rng(self.seed)

        self.space_ = FeatureSpace.fit(self.schema_, X, seed=[self.seed, 2])
        self.center_, self.scale_ = self.space_.center, self.space_.scale
        self.n_features_ = d
        self.classes_ = np.asarray(model.classes_) if self.task_ == "classification" else \
            np.zeros(0)
        self.feature_names_ = list(self.schema_.names)
        self.tree_ = TreeGeometry.from_model(model)
        self.boundary_kind_ = self._boundary_kind()

        Z_train = self.transform(X)
        self.n_encoded_ = Z_train.shape[1]
        keep = np.sort(rng.permutation(len(Z_train))[: self.max_reference])
        self.reference_ = Z_train[keep].astype(np.float32)

        splits = []
        cal = None
        if X_cal is not None:
            cal = self.schema_.rows(X_cal, "calibration data")
            proba, decision = self._margins(model, cal)
            splits.append(HeldOutSplit(
                X=cal.X, Z=self.transform(cal.X), reference=self.reference_.astype(np.float64),
                proba=proba, tree=self.tree_, source=f"calibration split ({len(cal)} rows)",
                decision=decision, model=model,
                labels=self._answer_codes(model, cal, proba, decision)))
        if self.cross_fit or X_cal is None:
            y = np.asarray(y_train) if y_train is not None else \
                np.asarray(model.predict(train.model_input()))
            splits.extend(self._cross_fit_splits(model, train, Z_train, y, rng))
        data = CalibrationData(splits=splits, k_neighbors=self.k_neighbors, scale=self.scale_,
                               reference=self.reference_.astype(np.float64))
        sources = [s.source for s in splits if s.source.startswith("calibration")]
        if len(splits) > len(sources):
            sources.append(f"{self.n_folds}-fold cross-fitting on the training data "
                           f"({len(X)} rows)")
        self.calibration_source_ = " + ".join(sources)
        self.calibration_ = {name: dict(cls.calibrate(data)) for name, cls in REGISTRY.items()}
        held_out = cal if cal is not None else train
        self._calibrate_drift(data, rng)
        self._calibrate_rounding(data, np.random.default_rng([self.seed, 3]))
        self._calibrate_wiping_grids(data)
        self.exposure_ = {}
        if self.exposure_points > 0:
            from monitor.exposure import ExposureTracker

            answers = np.asarray(model.predict(held_out.model_input()))
            if self.task_ == "classification":
                answers = AnswerCodes(self.classes_).of(answers)
            self.exposure_ = ExposureTracker.calibrate(
                self.transform(held_out.X), answers, np.random.default_rng([self.seed, 1]),
                self.exposure_points, values=self.task_ == "regression")
        self.meta_ = {"model": type(model).__name__, "n_train": int(len(X)),
                      "sklearn": sklearn.__version__, "python": platform.python_version()}
        return self

    def model_calls(self, model, calibration: bool, labels: bool = True,
                    rows: Rows | None = None) -> int:
        """Model calls (fit, predict, predict_proba, decision_function) :meth:`fit` makes
        calibrating with these parameters — what a progress bar over them counts to.
        ``calibration``: a calibration split is given; ``labels``: training labels are
        given (else the model labels the training rows once). The missing-value probes of
        :meth:`FeatureSchema.fit <monitor.features.FeatureSchema.fit>` (one call per probe
        the model answers) are not included: they depend on the data. Nor, unless ``rows``
        (the training and calibration rows, validated) are given or the profile is fitted, are the
        margins on rows rounded to a grid that wipes a column out (one call per split and
        grid, :meth:`_calibrate_wiping_grids`): their decimals decide those grids.

        >>> from sklearn.linear_model import LogisticRegression
        >>> model = LogisticRegression().fit([[0.0], [1.0]], [0, 1])
        >>> Profile(n_folds=5, drift_draws=10).model_calls(model, calibration=True)
        72
        """
        from monitor.features import model_kind

        task, outputs = model_kind(model)
        margins = int(outputs in ("proba", "decision") and TreeGeometry.from_model(model) is None)
        answers = int(task == "classification" and not margins)  # labels without margins
        folds = self.n_folds if (self.cross_fit or not calibration) else 0
        splits = int(calibration) + folds
        if rows is not None:
            from monitor.rounding import GRID_MODES, wiping_grids

            wiping = len(wiping_grids(rows.X, rows.schema.numeric_mask)) * len(GRID_MODES)
        else:
            wiping = sum(len(modes) for modes in getattr(self, "wiped_calibration_", {}).values())
        return (int(calibration) * (margins + answers)  # margins (or labels), calibration split
                + (folds > 0 and not labels)          # the model labels the training rows
                + folds * (1 + margins + answers)     # each fold's clone: fit, margins/labels
                + self.drift_draws * splits * margins  # margins on each drifted split
                + wiping * splits * margins           # margins on each wiping grid's split, per mode
                + int(self.exposure_points > 0))      # labels for exposure accounting

    def _boundary_kind(self) -> str:
        """How the boundary detector measures closeness for this model: ``tree`` (split
        thresholds of a bare tree), ``margin`` (probabilities), ``decision``
        (``decision_function``) or ``none`` (labels only; a regressor that is not a tree)."""
        if self.tree_ is not None:
            return "tree"
        return {"proba": "margin", "decision": "decision"}.get(self.output_kind_, "none")

    def _margins(self, model, rows: Rows) -> tuple[np.ndarray | None, np.ndarray | None]:
        """``(proba, decision)`` of ``model`` on ``rows``: what the boundary detector needs
        (nothing for a tree, labels-only classifier or regressor)."""
        if self.boundary_kind_ == "margin":
            return np.asarray(model.predict_proba(rows.model_input()), np.float64), None
        if self.boundary_kind_ == "decision":
            return None, np.asarray(model.decision_function(rows.model_input()), np.float64)
        return None, None

    def _answer_codes(self, model, rows: Rows, proba: np.ndarray | None,
                      decision: np.ndarray | None) -> np.ndarray | None:
        """Class index (in :attr:`classes_` order, -1 for a class the victim lacks) of what
        ``model`` answers for ``rows``: from the margins already computed, else one
        ``predict`` call (trees, labels-only classifiers); ``None`` for a regressor."""
        if self.task_ != "classification":
            return None
        own = np.asarray(model.classes_)
        if proba is not None:
            answers = own[np.asarray(proba).argmax(axis=1)]
        elif decision is not None:
            decision = np.asarray(decision)
            answers = own[(decision > 0).astype(int)] if decision.ndim == 1 else \
                own[decision.argmax(axis=1)]
        else:
            answers = np.asarray(model.predict(rows.model_input()))
        return AnswerCodes(self.classes_).of(answers)

    def _cross_fit_splits(self, model, train: Rows, Z, y, rng) -> list[HeldOutSplit]:
        """One held-out split per fold: scored by a clone fitted on the other folds, with
        distances measured to (a subsample of) the other folds only."""
        kind = StratifiedKFold if self.task_ == "classification" else KFold
        folds = kind(n_splits=self.n_folds, shuffle=True,
                     random_state=int(rng.integers(2**31)))
        inputs = train.model_input()
        splits = []
        for fit_idx, held_idx in folds.split(train.X, y):
            ref_idx = fit_idx[rng.permutation(len(fit_idx))[: self.max_reference]]
            fold_model = clone(model).fit(_take(inputs, fit_idx), y[fit_idx])
            held = train.take(held_idx)
            proba, decision = self._margins(fold_model, held)
            splits.append(HeldOutSplit(
                X=train.X[held_idx], Z=Z[held_idx], reference=Z[ref_idx], proba=proba,
                tree=TreeGeometry.from_model(fold_model), source="cross-fitting fold",
                decision=decision, model=fold_model,
                labels=self._answer_codes(fold_model, held, proba, decision)))
        return splits

    def _calibrate_drift(self, data, rng) -> None:
        """Each stateless detector's p-values on drifted copies of every held-out split,
        stored as its ``drift_pvalues`` (draws, rows).

        One draw is one drifted client: a per-feature scale in ``drift_scale`` shared by all
        its rows, plus Gaussian noise of ``drift_noise`` x each feature's standard deviation
        (features never negative in the data stay non-negative; missing values stay missing,
        categories stay as they are). Each split's drifted rows are measured exactly as its
        calibration rows were — against the same reference, by the model that did not train
        on them — through each detector's own ``calibrate``.
        """
        from monitor.detectors import REGISTRY, HeldOutSplit

        detectors = {name: cls(self) for name, cls in REGISTRY.items()
                     if not cls.stateful and not getattr(cls, "needs_stream", False)}
        pooled = np.concatenate([split.X for split in data.splits])
        numeric = self.schema_.numeric_mask
        std, non_negative = _spread(pooled)
        pvalues: dict[str, list[np.ndarray]] = {name: [] for name in detectors}
        drifted = []  # each draw's rows, for detectors that calibrate sets of them
        for _ in range(self.drift_draws):
            scale = rng.uniform(*self.drift_scale, size=pooled.shape[1])
            splits = []
            for split in data.splits:
                X = split.X * scale + rng.normal(size=split.X.shape) * (self.drift_noise * std)
                X = np.where(non_negative, np.maximum(X, 0.0), X)
                X = X if numeric.all() else np.where(numeric, X, split.X)
                proba, decision = (self._margins(split.model, Rows(X, self.schema_))
                                   if split.model is not None else (None, None))
                splits.append(HeldOutSplit(
                    X=X, Z=self.transform(X), reference=split.reference, proba=proba,
                    tree=split.tree, source=f"drifted {split.source}", decision=decision))
            drifted.append(data.with_splits(splits))
            for name, p in _member_pvalues(detectors, drifted[-1]).items():
                pvalues[name].append(p)
        for name, cls in REGISTRY.items():  # e.g. block: one drifted client per draw
            if hasattr(cls, "calibrate_drift") and name in self.calibration_:
                self.calibration_[name].update(cls.calibrate_drift(drifted,
                                                                   self.calibration_[name]))
        for name, draws in pvalues.items():
            self.calibration_[name]["drift_pvalues"] = np.asarray(draws, np.float32).reshape(
                len(draws), -1)

    def _calibrate_rounding(self, data, rng) -> None:
        """Each density-type detector's p-values on held-out rows rounded to each kept grid
        (:mod:`monitor.rounding`), plain and after a few draws of the drift model, stored as
        sorted surprises ``rounded_surprise`` (members, rows) and ``rounded_decimals``.
        Detectors that read the model's answers are left out: no model call is made."""
        from monitor.detectors import REGISTRY, HeldOutSplit
        from monitor.rounding import ROUNDED_DRAWS, kept_grids
        from monitor.tails import MIN_PVALUE

        detectors = {name: cls(self) for name, cls in REGISTRY.items()
                     if not cls.stateful and not getattr(cls, "needs_stream", False)
                     and not getattr(cls, "reads_answers", False)}
        pooled = np.concatenate([split.X for split in data.splits])
        numeric = self.schema_.numeric_mask
        grids = kept_grids(pooled, numeric)
        if not detectors or not grids:
            return
        std, non_negative = _spread(pooled)
        surprises: dict[str, list[np.ndarray]] = {name: [] for name in detectors}
        decimals = []
        for r in grids:
            for draw in range(1 + ROUNDED_DRAWS):
                scale = rng.uniform(*self.drift_scale, size=pooled.shape[1]) if draw else 1.0
                splits = []
                for split in data.splits:
                    X = split.X * scale
                    if draw:
                        X = X + rng.normal(size=X.shape) * (self.drift_noise * std)
                        X = np.where(non_negative, np.maximum(X, 0.0), X)
                    X = np.where(numeric, np.round(X, r), split.X)
                    splits.append(HeldOutSplit(
                        X=X, Z=self.transform(X), reference=split.reference, proba=None,
                        tree=split.tree, source=f"rounded {split.source}", decision=None))
                for name, p in _member_pvalues(detectors, data.with_splits(splits)).items():
                    surprises[name].append(np.sort(-np.log(np.maximum(p, MIN_PVALUE))))
                decimals.append(r)
        for name, members in surprises.items():
            self.calibration_[name]["rounded_surprise"] = np.asarray(members, np.float32)
            self.calibration_[name]["rounded_decimals"] = np.asarray(decimals, np.int64)

    def _calibrate_wiping_grids(self, data) -> None:
        """For each grid that wipes a column out (:func:`~monitor.rounding.wiping_grids`) and
        each way of getting onto it (:data:`~monitor.rounding.GRID_MODES`: rounding,
        truncation), the per-query detectors calibrated on held-out rows put on it that way,
        measured against reference rows put on it the same way:
        ``wiped_calibration_[grid][mode][detector]``. The boundary detector reads the margins
        of each split's model on those rows: one model call per split, grid and mode where the
        answers are margins (:meth:`model_calls`)."""
        from monitor.detectors import REGISTRY, CalibrationData, HeldOutSplit
        from monitor.rounding import GRID_MODES, put_on_grid, round_scaled, wiping_grids

        self.wiped_calibration_ = {}
        names = [name for name, cls in REGISTRY.items()
                 if not cls.stateful and not getattr(cls, "needs_stream", False)]
        answered = any(getattr(REGISTRY[name], "reads_answers", False) for name in names)
        pooled = np.concatenate([split.X for split in data.splits])
        numeric = self.schema_.numeric_mask
        for r in wiping_grids(pooled, numeric) if names else []:
            for mode in GRID_MODES:
                splits = []
                for split in data.splits:
                    X = np.where(numeric, put_on_grid(split.X, r, mode), split.X)
                    proba, decision = (self._margins(split.model, Rows(X, self.schema_))
                                       if answered and split.model is not None else (None, None))
                    splits.append(HeldOutSplit(
                        X=X, Z=self.transform(X), proba=proba, tree=split.tree,
                        decision=decision,
                        reference=round_scaled(split.reference, self.space_, r, mode),
                        source=f"{split.source} put on {r} decimals by {mode}"))
                moved = CalibrationData(splits=splits, k_neighbors=data.k_neighbors,
                                        scale=data.scale,
                                        reference=round_scaled(data.reference, self.space_, r,
                                                               mode))
                self.wiped_calibration_.setdefault(r, {})[mode] = {
                    name: dict(REGISTRY[name].calibrate(moved)) for name in names}

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

    # ------------------------------------------------------------------ use
    def transform(self, X: np.ndarray) -> np.ndarray:
        """Coded rows (:meth:`rows`) in the profile's scaled feature space
        (:class:`~monitor.features.FeatureSpace`)."""
        return self.space_.transform(X)

    def rows(self, data, name: str = "rows") -> Rows:
        """``data`` — a DataFrame or named records (mapped by name, any column order), or an
        array / list of rows in the profile's column order (``feature_names_``) — validated and
        coded (:class:`~monitor.features.Rows`); :class:`InvalidInput` saying what to fix."""
        return self.schema_.rows(data, name)

    @property
    def encoded_names_(self) -> list[str]:
        """A name for each coordinate of the scaled space (``age``, ``color=red``, ...)."""
        return self.space_.names()

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
        for grid, modes in self.wiped_calibration_.items():
            arrays.update({f"wiped.{grid}.{mode}.{detector}.{key}": v
                           for mode, detectors in modes.items()
                           for detector, values in detectors.items() for key, v in values.items()})
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
            "task": self.task_, "outputs": self.output_kind_, "schema": self.schema_.to_dict(),
            "novelty": self.space_.novelty,
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
        if version not in READ_FORMAT_VERSIONS:
            raise InvalidInput(f"profile {path} has format version {version}; this release "
                               f"reads versions {', '.join(map(str, READ_FORMAT_VERSIONS))}: "
                               "refit it with `extraction-monitor profile`")
        profile = cls(**meta["params"])
        with np.load(path / "arrays.npz", allow_pickle=False) as arrays:
            for name in cls._ARRAYS:
                setattr(profile, name, arrays[name.rstrip("_")])
            profile.tree_ = TreeGeometry.from_arrays(arrays)
            profile.exposure_ = {key.split(".", 1)[1]: arrays[key] for key in arrays.files
                                 if key.startswith("exposure.")}
            profile.wiped_calibration_ = _wiped_calibration(arrays)
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
        if "schema" in meta:
            profile.schema_ = FeatureSchema.from_dict(meta["schema"])
        else:  # formats 2 and 3: numeric columns, no missing values
            profile.schema_ = FeatureSchema.numeric(profile.feature_names_)
        profile.task_ = meta.get("task", "classification")
        profile.output_kind_ = meta.get("outputs", "proba")
        profile.space_ = FeatureSpace(profile.schema_, profile.center_, profile.scale_,
                                      meta.get("novelty"))
        profile.n_encoded_ = int(profile.reference_.shape[1])
        profile.boundary_kind_ = meta["boundary_kind"]
        profile.calibration_source_ = meta["calibration_source"]
        profile.meta_ = {k: meta[k] for k in ("model", "n_train", "sklearn", "python")}
        return profile


def _spread(pooled: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each column's standard deviation (0 where undefined) and whether it is never
    negative: what the drift model's noise and clipping are measured against."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return (np.nan_to_num(np.nanstd(pooled, axis=0)),
                ~(np.nanmin(pooled, axis=0) < 0))


def _member_pvalues(detectors: dict, data) -> dict[str, np.ndarray]:
    """Each detector's tail-aware p-values on one changed copy of the held-out splits,
    measured through its own ``calibrate`` against its plain calibration."""
    from monitor.detectors import REGISTRY
    from monitor.tails import tail_pvalues

    return {name: tail_pvalues(REGISTRY[name].calibrate(data)["statistic"],
                               detector.calibration, getattr(detector, "tail", None))
            for name, detector in detectors.items()}


def _take(inputs, index):
    """Rows ``index`` of a model input (a DataFrame or an array)."""
    if hasattr(inputs, "iloc"):
        return inputs.iloc[index]
    return inputs[index]


def _wiped_calibration(arrays) -> dict[int, dict[str, dict[str, dict[str, np.ndarray]]]]:
    """``wiped_calibration_`` from a profile's arrays, ``wiped.{grid}.{mode}.{detector}.{key}``;
    profiles saved before the modes (``wiped.{grid}.{detector}.{key}``) calibrated rounding
    only; profiles saved before wiping grids have none."""
    from monitor.rounding import GRID_MODES

    found: dict[int, dict[str, dict[str, dict[str, np.ndarray]]]] = {}
    for key in arrays.files:
        if not key.startswith("wiped."):
            continue
        _, grid, *parts = key.split(".", 4)
        if parts[0] not in GRID_MODES:  # saved before the modes: wiped.{grid}.{detector}.{key}
            parts = ["round", *".".join(parts).split(".", 1)]
        mode, detector, name = parts
        found.setdefault(int(grid), {}).setdefault(mode, {}).setdefault(detector, {})[name] = \
            arrays[key]
    return found


def _legacy_calibration(arrays) -> dict[str, dict[str, np.ndarray]]:
    """Per-detector calibration from a format-2 profile's fixed arrays."""
    return {
        "density": {"statistic": arrays["cal_density"], "drift_pvalues": arrays["drift_density"]},
        "boundary": {"statistic": arrays["cal_boundary"],
                     "drift_pvalues": arrays["drift_boundary"]},
        "chain": {"statistic": np.sort(-arrays["cal_nearest"])},
    }


__all__ = ["PROFILE_FORMAT_VERSION", "Profile"]
