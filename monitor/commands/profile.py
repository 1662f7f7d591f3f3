"""Fit the reference profile of a victim model from its training data.

TRAIN and CAL are CSV, JSON lines or Parquet tables holding the feature columns and, optionally,
a label column (--label-column, default "y" when present); every other column is a feature.
Without --calibration the profile is calibrated by cross-fitting on TRAIN.

Security: MODEL is a scikit-learn classifier with predict_proba saved with skops (.skops) or
joblib (.joblib/.pkl/.pickle). Loading a joblib/pickle file means trusting it: it can run any
code. A skops file is checked and refused if it holds types outside skops' safe set unless you
list them with --trust TYPE.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from monitor.cli import CommandError
from monitor.logs import LogError, read_table
from monitor.model_io import ModelLoadError, load_model

DEFAULT_LABEL_COLUMN = "y"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, type=Path,
                        help="fitted classifier (.skops, or .joblib/.pkl: trusted code!)")
    parser.add_argument("--train", required=True, type=Path,
                        help="training data the model was fitted on (CSV/JSON lines/Parquet)")
    parser.add_argument("--calibration", type=Path, default=None,
                        help="held-out data the model did not train on (recommended)")
    parser.add_argument("--label-column", default=None,
                        help=f"label column in TRAIN/CAL (default: {DEFAULT_LABEL_COLUMN!r} "
                             "if present, else none)")
    parser.add_argument("--out", required=True, type=Path, help="profile folder to write")
    parser.add_argument("--trust", action="append", default=[], metavar="TYPE",
                        help="type name a .skops model may contain beyond skops' safe set "
                             "(repeatable)")
    parser.add_argument("--seed", type=int, default=0, help="seed for subsampling and folds")


def split_table(frame: pd.DataFrame, label_column: str | None, explicit: bool, what: str,
                feature_names: list[str] | None = None
                ) -> tuple[np.ndarray, np.ndarray | None, list[str], int]:
    """``(X, y, feature_names, n_dropped)``; rows with non-finite features are dropped."""
    labels = None
    if label_column is not None and label_column in frame.columns:
        labels = frame[label_column]
        frame = frame.drop(columns=[label_column])
    elif explicit:
        raise CommandError(f"{what} has no label column {label_column!r}; "
                           "fix --label-column or omit it")
    frame.columns = [str(c) for c in frame.columns]
    if feature_names is not None:
        missing = [c for c in feature_names if c not in frame.columns]
        if missing:
            raise CommandError(f"{what} is missing feature columns {', '.join(missing[:5])}; "
                               "it needs the same columns as the training data")
        frame = frame[feature_names]
    bad = [c for c in frame.columns if not pd.api.types.is_numeric_dtype(frame[c])
           or pd.api.types.is_bool_dtype(frame[c])]
    if bad:
        raise CommandError(f"{what} has non-numeric columns {', '.join(bad[:5])}; drop them or "
                           "name the label column with --label-column")
    X = frame.to_numpy(dtype=np.float64, na_value=np.nan)
    keep = np.isfinite(X).all(axis=1)
    if labels is not None:
        keep &= labels.notna().to_numpy()
    y = None if labels is None else labels.to_numpy()[keep]
    return X[keep], y, list(frame.columns), int((~keep).sum())


def _read(path: Path) -> pd.DataFrame:
    try:
        return read_table(path)
    except LogError as exc:
        raise CommandError(str(exc)) from exc


def run(args: argparse.Namespace) -> int:
    from monitor.errors import InvalidInput
    from monitor.profile import Profile

    try:
        model = load_model(args.model, trusted=args.trust)
    except ModelLoadError as exc:
        raise CommandError(str(exc)) from exc
    explicit = args.label_column is not None
    label_column = args.label_column if explicit else DEFAULT_LABEL_COLUMN
    X_train, y_train, names, dropped = split_table(
        _read(args.train), label_column, explicit, f"training data {args.train.name}")
    if len(X_train) == 0:
        raise CommandError(f"training data {args.train.name} has no usable rows")
    model_names = getattr(model, "feature_names_in_", None)
    if model_names is not None and list(model_names) != names:
        if sorted(map(str, model_names)) != sorted(names):
            raise CommandError(f"training data columns do not match the model's features "
                               f"({', '.join(map(str, model_names[:5]))}, ...)")
        raise CommandError("training data columns are in a different order than the model's "
                           "features; reorder them")
    n_in = getattr(model, "n_features_in_", None)
    if n_in is not None and n_in != len(names):
        raise CommandError(f"training data has {len(names)} feature columns but the model "
                           f"expects {n_in}; drop extra columns or set --label-column")
    X_cal = y_cal = None
    if args.calibration is not None:
        X_cal, y_cal, _, dropped_cal = split_table(
            _read(args.calibration), label_column, explicit,
            f"calibration data {args.calibration.name}", feature_names=names)
        dropped += dropped_cal
    if dropped:
        print(f"skipped {dropped} rows with NaN/inf or missing values", file=sys.stderr)
    try:
        profile = Profile(seed=args.seed).fit(model, X_train, y_train, X_cal=X_cal, y_cal=y_cal,
                                              feature_names=names)
    except (InvalidInput, ValueError) as exc:
        raise CommandError(f"cannot fit the profile: {exc}") from exc
    profile.save(args.out)
    print(f"profile of {type(model).__name__} ({len(names)} features, "
          f"{len(profile.classes_)} classes, {len(X_train)} training rows, calibrated by "
          f"{profile.calibration_source_}) written to {args.out}")
    return 0
