"""Fit the reference profile of a victim model from its training data.

TRAIN and CAL are CSV, JSON lines or Parquet tables holding the feature columns and, optionally,
a label column (--label-column, default "y" when present; a regressor's target); every other
column is a feature. Text columns are categorical features (for a model fitted on a DataFrame,
e.g. a Pipeline whose ColumnTransformer encodes them); missing values are kept where the model
accepts them (probed on the model) and those rows skipped elsewhere. Without --calibration the
profile is calibrated by cross-fitting on TRAIN.

Calibration knobs (their defaults are the profile's own, shown with each option below):
--folds (cross-fitting folds), --no-cross-fit (calibrate on CAL alone; faster, coarser
p-values), --calibration-rows (a seeded subsample of CAL), --drift-draws (drifted copies of
the held-out rows; 0: no drift model) and --reference-rows (training rows kept in the
reference index). A model fitted on a DataFrame is
called with DataFrames of its feature names throughout (no feature-name warnings).

Security: MODEL is a fitted scikit-learn classifier (predict_proba, decision_function or labels
only) or regressor saved with skops (.skops) or joblib (.joblib/.pkl/.pickle). Loading a joblib/pickle file means trusting it: it can run any
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
from monitor.commands.inputs import TRUST_HELP
from monitor.logs import LogError, read_table
from monitor.model_io import ModelLoadError, load_model
from monitor.threads import default_threads, limit_threads

DEFAULT_LABEL_COLUMN = "y"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    import inspect

    from monitor.profile import Profile

    defaults = {name: p.default for name, p in inspect.signature(Profile).parameters.items()}
    parser.add_argument("--model", required=True, type=Path,
                        help="fitted classifier or regressor (.skops, or .joblib/.pkl: trusted "
                             "code!)")
    parser.add_argument("--train", required=True, type=Path,
                        help="training data the model was fitted on (CSV/JSON lines/Parquet)")
    parser.add_argument("--calibration", type=Path, default=None,
                        help="held-out data the model did not train on (recommended)")
    parser.add_argument("--label-column", default=None,
                        help=f"label column in TRAIN/CAL (default: {DEFAULT_LABEL_COLUMN!r} "
                             "if present, else none)")
    parser.add_argument("--out", required=True, type=Path, help="profile folder to write")
    parser.add_argument("--trust", action="append", default=[], metavar="TYPE",
                        help=TRUST_HELP)
    parser.add_argument("--seed", type=int, default=defaults["seed"],
                        help="seed for subsampling and folds (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=None, metavar="N",
                        help="BLAS/OpenMP threads for fitting and model calls (default: "
                             f"{default_threads()} on this machine: its cores less one; "
                             "more threads than free cores slow HistGradientBoosting down "
                             "many times on a busy machine)")
    group = parser.add_argument_group("calibration")
    group.add_argument("--folds", type=int, default=defaults["n_folds"], metavar="K",
                       help="cross-fitting folds on TRAIN (default: %(default)s)")
    group.add_argument("--no-cross-fit", action="store_true",
                       help="with --calibration, calibrate on it alone (no cross-fitting)")
    group.add_argument("--calibration-rows", type=int, default=None, metavar="N",
                       help="use a seeded subsample of N rows of CAL (default: all)")
    group.add_argument("--drift-draws", type=int, default=defaults["drift_draws"], metavar="N",
                       help="drifted copies of the held-out rows for the drift model "
                            "(default: %(default)s; 0: none)")
    group.add_argument("--reference-rows", type=int, default=defaults["max_reference"],
                       metavar="N",
                       help="training rows kept in the reference index (default: %(default)s)")


def split_table(frame: pd.DataFrame, label_column: str | None, explicit: bool, what: str,
                feature_names: list[str] | None = None
                ) -> tuple[pd.DataFrame, np.ndarray | None, list[str]]:
    """``(features, y, feature_names)``: the feature columns (in ``feature_names`` order when
    given) and the label column's values."""
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
    y = None if labels is None else labels.to_numpy()
    return frame.reset_index(drop=True), y, list(frame.columns)


def usable_rows(schema, frame: pd.DataFrame, y) -> np.ndarray:
    """Rows the profile can use: every feature usable by the model (no inf, missing values
    only where it accepts them, numbers in numeric columns) and a label when there are
    labels."""
    _, bad, _ = schema.encode(schema.by_name(frame))
    keep = ~bad
    if y is not None:
        keep &= pd.notna(y)
    return keep


LABEL_HINTS = ("label", "target", "class", "y", "outcome", "category")


def guess_label(frame: pd.DataFrame, model_names=None) -> str | None:
    """The column of ``frame`` most likely to be the label: the one the model does not use,
    else one named like a label, else a column of few integer values.

    >>> guess_label(pd.DataFrame({"a": [0.1, 0.2], "target": [0, 1]}))
    'target'
    """
    columns = [str(c) for c in frame.columns]
    if model_names is not None:
        unused = [c for c in columns if c not in set(map(str, model_names))]
        if len(unused) == 1:
            return unused[0]
    named = [c for c in columns if c.lower() in LABEL_HINTS or c.lower().endswith("_label")]
    if named:
        return named[0]
    for c in reversed(columns):
        values = frame[c]
        if pd.api.types.is_integer_dtype(values) and values.nunique() <= 20:
            return c
    return None


def _label_hint(frame: pd.DataFrame, model_names=None) -> str:
    label = guess_label(frame, model_names)
    return (f"; if {label!r} is the label, pass --label-column {label}" if label
            else "; name the label column with --label-column")


def _read(path: Path) -> pd.DataFrame:
    try:
        return read_table(path)
    except LogError as exc:
        raise CommandError(str(exc)) from exc


def run(args: argparse.Namespace) -> int:
    from monitor.errors import InvalidInput
    from monitor.logs import nearest_column
    from monitor.named_features import count_calls, with_feature_names
    from monitor.profile import Profile
    from monitor.progress import Progress

    for flag in ("folds", "calibration_rows", "reference_rows"):
        value = getattr(args, flag)
        if value is not None and value < (2 if flag == "folds" else 1):
            raise CommandError(f"--{flag.replace('_', '-')} must be at least "
                               f"{2 if flag == 'folds' else 1}, got {value}")
    if args.drift_draws < 0:
        raise CommandError(f"--drift-draws must be >= 0, got {args.drift_draws}")
    try:
        model = load_model(args.model, trusted=args.trust)
    except ModelLoadError as exc:
        raise CommandError(str(exc)) from exc
    explicit = args.label_column is not None
    label_column = args.label_column if explicit else DEFAULT_LABEL_COLUMN
    train = _read(args.train)
    model_names = getattr(model, "feature_names_in_", None)
    X_train, y_train, names = split_table(
        train.copy(), label_column, explicit, f"training data {args.train.name}")
    no_label = not explicit and label_column not in train.columns
    if model_names is not None and list(model_names) != names:
        wanted = [str(n) for n in model_names]
        missing = [c for c in wanted if c not in names]
        unused = [c for c in names if c not in wanted]
        if missing:
            near = nearest_column(missing[0], unused)
            raise CommandError(
                f"training data lacks the model's feature column {missing[0]!r}"
                + (f" (nearest: {near!r})" if near else "")
                + f"; it needs the columns the model was fitted on ({_short(wanted)})")
        if unused:
            hint = _label_hint(train, model_names) if no_label else \
                "; drop them (the model does not use them)"
            raise CommandError(f"training data has column(s) {_short(unused)} the model was "
                               f"not fitted on{hint}")
        X_train, names = X_train[wanted], wanted  # columns are mapped by name
    text = [c for c in names if not pd.api.types.is_numeric_dtype(X_train[c])]
    if text and model_names is None:
        raise CommandError(f"training data has non-numeric columns {', '.join(text[:5])}; a "
                           "model fitted on arrays takes numbers only: drop them or name the "
                           "label column with --label-column")
    n_in = getattr(model, "n_features_in_", None)
    if n_in is not None and n_in != len(names):
        hint = _label_hint(train) if no_label and len(names) == n_in + 1 else \
            "; drop extra columns or set --label-column"
        raise CommandError(f"training data has {len(names)} feature columns but the model "
                           f"expects {n_in}{hint}")
    try:
        from monitor.features import FeatureSchema, model_kind

        model_kind(model)
        probes = []  # the missing-value probes the model answers (Profile.fit repeats them)
        with count_calls(probes.append) as key:
            schema = FeatureSchema.fit(X_train, with_feature_names(model, calls=key))
    except InvalidInput as exc:
        raise CommandError(f"cannot fit the profile: {exc}") from exc
    keep = usable_rows(schema, X_train, y_train)
    dropped = int((~keep).sum())
    X_train = X_train[keep].reset_index(drop=True)
    y_train = None if y_train is None else y_train[keep]
    if len(X_train) == 0:
        raise CommandError(f"training data {args.train.name} has no usable rows")
    X_cal = y_cal = None
    if args.calibration is not None:
        X_cal, y_cal, _ = split_table(
            _read(args.calibration), label_column, explicit,
            f"calibration data {args.calibration.name}", feature_names=names)
        keep = usable_rows(schema, X_cal, y_cal)
        dropped += int((~keep).sum())
        X_cal = X_cal[keep].reset_index(drop=True)
        y_cal = None if y_cal is None else y_cal[keep]
        if args.calibration_rows is not None and args.calibration_rows < len(X_cal):
            keep = np.sort(np.random.default_rng([args.seed, 7]).permutation(len(X_cal))[
                :args.calibration_rows])
            X_cal = X_cal.iloc[keep].reset_index(drop=True)
            y_cal = None if y_cal is None else y_cal[keep]
    elif args.no_cross_fit:
        raise CommandError("--no-cross-fit needs --calibration (held-out data to calibrate on)")
    if dropped:
        print(f"skipped {dropped} rows with NaN/inf or missing values", file=sys.stderr)
    cross_fit = not args.no_cross_fit
    params = {"n_folds": args.folds, "cross_fit": cross_fit, "drift_draws": args.drift_draws,
              "max_reference": args.reference_rows, "seed": args.seed}
    pooled = X_train if X_cal is None else pd.concat([X_train, X_cal], ignore_index=True)
    total = len(probes) + Profile(**params).model_calls(
        model, calibration=X_cal is not None, labels=y_train is not None,
        rows=schema.rows(pooled, "training and calibration data"))
    try:
        with Progress("fitting the profile", total=total, unit="model calls") as bar, \
                count_calls(lambda kind: bar.advance()) as key, \
                limit_threads(args.threads or default_threads()):
            wrapped = with_feature_names(model, calls=key)
            profile = Profile(**params).fit(wrapped, X_train, y_train, X_cal=X_cal,
                                            y_cal=y_cal, feature_names=names)
    except (InvalidInput, ValueError) as exc:
        raise CommandError(f"cannot fit the profile: {exc}") from exc
    profile.meta_["model"] = type(model).__name__
    profile.save(args.out)
    what = "a regressor" if profile.task_ == "regression" else \
        f"{len(profile.classes_)} classes"
    print(f"profile of {type(model).__name__} ({len(names)} features, {what}, "
          f"{len(X_train)} training rows, calibrated by {profile.calibration_source_}) "
          f"written to {args.out}")
    for note in _model_notes(profile):
        print(f"note: {note}", file=sys.stderr)
    return 0


def _model_notes(profile) -> list[str]:
    """What the profile cannot do for this model (said once, when it is written)."""
    from monitor.detectors import evidence_notes

    if profile.boundary_kind_ == "none":
        return evidence_notes(profile, ["boundary"], "labels", has_model=True)
    if profile.boundary_kind_ == "decision":
        return ["boundary: the model has no predict_proba; its decision_function margins need "
                "the model at serving and analysis time (--model)"]
    return []


def _short(names, limit: int = 4) -> str:
    shown = ", ".join(repr(n) for n in list(names)[:limit])
    return shown + (f" (+{len(names) - limit} more)" if len(names) > limit else "")
