"""Loading what several commands take: a profile folder, a config file, a model file.

Each turns a failure into a one-line :class:`~monitor.cli.CommandError`.
"""

from __future__ import annotations

from pathlib import Path

from monitor.cli import CommandError


def load_profile(path: Path):
    """The :class:`~monitor.Profile` in folder ``path``."""
    from monitor import Profile
    from monitor.errors import InvalidInput

    try:
        return Profile.load(path)
    except (InvalidInput, OSError, ValueError, KeyError) as exc:
        raise CommandError(f"cannot load profile {path}: {exc}") from exc


def load_settings(path: Path | None):
    """Every table of config file ``path``, read once (defaults when no file is given)."""
    from monitor.settings import Settings, SettingsError

    try:
        return Settings.load(path)
    except (SettingsError, OSError) as exc:
        raise CommandError(str(exc)) from exc


def load_model_file(path: Path | None, trust=(), profile=None):
    """The model in ``path`` (``None`` when no file is given), checked against ``profile``;
    a model fitted on a DataFrame is wrapped so the monitor calls it with one
    (:func:`monitor.named_features.with_feature_names`)."""
    from monitor.model_io import ModelLoadError, load_model
    from monitor.named_features import with_feature_names

    if path is None:
        return None
    try:
        model = load_model(path, trusted=trust)
    except ModelLoadError as exc:
        raise CommandError(str(exc)) from exc
    if profile is not None:
        classes = getattr(model, "classes_", None)
        n_model = 0 if classes is None else len(classes)
        if n_model != len(profile.classes_):
            has = f"{n_model} classes" if classes is not None else "no classes (a regressor)"
            wants = f"{len(profile.classes_)}" if len(profile.classes_) else "none (a regressor)"
            raise CommandError(f"--model has {has} but the profile has {wants}; use the model "
                               "the profile was fit on")
    return with_feature_names(model)


TRUST_HELP = ("type name a .skops model may contain beyond skops' safe set (repeatable); tree "
              "models need it, e.g. --trust sklearn.tree._tree.Tree for a forest: the "
              "refusal names every type to list")
"""The help of every command's ``--trust``."""


def add_log_arguments(parser, keep: bool = True) -> None:
    """The log column mapping options shared by ``analyze``, ``tune`` and ``report``."""
    from monitor.logs.columns import (
        CLIENT_COLUMN,
        LABEL_COLUMN,
        ORDER_COLUMNS,
        PROBA_PATTERN,
        TIME_COLUMN,
    )

    group = parser.add_argument_group(
        f"log columns (defaults: {CLIENT_COLUMN}, {' or '.join(ORDER_COLUMNS)}, "
        f"{PROBA_PATTERN}, {LABEL_COLUMN})")
    group.add_argument("--client-column", default=CLIENT_COLUMN, metavar="COLUMN",
                       help="column saying who sent each query (default: %(default)s)")
    group.add_argument("--time-column", default=None, metavar="COLUMN",
                       help="timestamp of each query (numbers or date-times); orders the "
                            "queries unless --order-column is given, and puts the report on "
                            f"a time axis (default: {TIME_COLUMN} when present)")
    group.add_argument("--order-column", default=None, metavar="COLUMN",
                       help=f"query order within a client (default: {ORDER_COLUMNS[0]}, "
                            "else the time column)")
    group.add_argument("--proba-columns", default=None, metavar="PATTERN|LIST",
                       help="returned probabilities, one column per class: a glob pattern "
                            "('prob_*') or comma-separated names, each a shared prefix or "
                            "suffix plus a class label or class index (prob_cat, prob_0); "
                            "they are put in the profile's class order by name, an error when "
                            f"they name no class (default: {PROBA_PATTERN}, i.e. "
                            "p_0..p_{k-1})")
    group.add_argument("--label-column", dest="log_label_column", default=None,
                       metavar="COLUMN",
                       help=f"returned label (default: {LABEL_COLUMN} when present)")
    if keep:
        group.add_argument("--keep", action="append", default=[], metavar="COLUMN",
                           help="extra column carried into the verdict table (its value at "
                                "the flagging query, else at the client's last query; "
                                "repeatable)")


def log_columns(args, profile=None):
    """The :class:`~monitor.logs.LogColumns` of the options :func:`add_log_arguments` added;
    with the ``profile`` of a classifier, --proba-columns are checked against (and put in the
    order of) its classes."""
    from monitor.logs import CLIENT_COLUMN, LogColumns

    columns = LogColumns(client=args.client_column or CLIENT_COLUMN, order=args.order_column,
                         time=args.time_column,
                         proba=LogColumns.parse_proba(args.proba_columns),
                         label=args.log_label_column,
                         keep=tuple(getattr(args, "keep", ()) or ()))
    classes = getattr(profile, "classes_", None)
    return columns.for_classes(classes) if classes is not None and len(classes) else columns
